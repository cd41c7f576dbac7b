#include "cluster_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <system_error>

// CMake passes the repository root as a string literal, e.g.
//   target_compile_definitions(<target> PRIVATE SINGLETON_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
#ifndef SINGLETON_SOURCE_DIR
#error "SINGLETON_SOURCE_DIR must be defined (the repository root, as a string literal)"
#endif

extern char** environ;

namespace singleton::testing {
namespace {

std::filesystem::path clusterScript() {
  return std::filesystem::path(SINGLETON_SOURCE_DIR) / "e2e" / "cluster" / "cluster.sh";
}

bool keepCluster() {
  const char* keep = std::getenv("SINGLETON_KEEP_CLUSTER");
  return keep != nullptr && *keep != '\0' && std::string_view(keep) != "0";
}

[[noreturn]] void throwErrno(const std::string& what, int error) {
  throw std::system_error(error, std::generic_category(), what);
}

// Closes a pipe end once, on scope exit as well.
struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::invalid_argument("runCommand: empty argv");
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  std::array<Fd, 2> out, err;  // [0] read end, [1] write end
  for (auto* p : {&out, &err}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throwErrno("pipe2", errno);
    (*p)[0].fd = fds[0];
    (*p)[1].fd = fds[1];
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1].fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1].fd, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throwErrno("cannot start " + argv[0], rc);
  out[1].reset();
  err[1].reset();

  CommandResult result;
  std::array<pollfd, 2> fds{pollfd{out[0].fd, POLLIN, 0}, pollfd{err[0].fd, POLLIN, 0}};
  std::array<std::string*, 2> sinks{&result.out, &result.err};
  std::array<char, 8192> buf{};
  int open = 2;
  while (open > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      throwErrno("poll", errno);
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
      if (n > 0) {
        sinks[i]->append(buf.data(), static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // EOF (or error): stop polling it; Fd closes it
        --open;
      }
    }
  }

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throwErrno("waitpid", errno);
  }
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::unique_ptr<LocalCluster> LocalCluster::start() { return start(Options{}); }

std::unique_ptr<LocalCluster> LocalCluster::start(const Options& options) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/singleton-cluster-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throwErrno("mkdtemp " + templ, errno);

  std::unique_ptr<LocalCluster> cluster(new LocalCluster(templ));
  const CommandResult up = cluster->script({"up", templ, "--owner-pid", std::to_string(::getpid()),
                                            "--node-monitor-grace-period", options.nodeMonitorGracePeriod});
  if (!up.ok()) {  // up.err ends with the failing component's log tail
    cluster->stop();
    throw std::runtime_error("cluster.sh up " + templ + " failed with exit code " + std::to_string(up.exitCode) +
                             (keepCluster() ? "" : " (set SINGLETON_KEEP_CLUSTER=1 to keep its logs)") + ":\n" +
                             up.err);
  }
  std::cerr << up.err << std::flush;  // progress and timings
  cluster->loadEnv();
  return cluster;
}

LocalCluster::LocalCluster(std::filesystem::path dir) : dir_(std::move(dir)) {}

LocalCluster::~LocalCluster() { stop(); }

std::string LocalCluster::env(const std::string& key) const {
  const auto it = env_.find(key);
  return it == env_.end() ? std::string() : it->second;
}

CommandResult LocalCluster::kubectl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"kubectl", "--kubeconfig=" + kubeconfigPath().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv);
}

namespace {
std::vector<std::string> scriptArgs(const char* command, const std::filesystem::path& dir, bool kill) {
  std::vector<std::string> args{command, dir.string()};
  if (kill) args.emplace_back("--kill");
  return args;
}
}  // namespace

void LocalCluster::restartApiserver(bool kill) { scriptOrThrow(scriptArgs("restart-apiserver", dir_, kill)); }
void LocalCluster::stopApiserver(bool kill) { scriptOrThrow(scriptArgs("stop-apiserver", dir_, kill)); }
void LocalCluster::startApiserver() { scriptOrThrow({"start-apiserver", dir_.string()}); }
void LocalCluster::restartEtcd(bool kill) { scriptOrThrow(scriptArgs("restart-etcd", dir_, kill)); }
void LocalCluster::stopEtcd(bool kill) { scriptOrThrow(scriptArgs("stop-etcd", dir_, kill)); }
void LocalCluster::startEtcd() { scriptOrThrow({"start-etcd", dir_.string()}); }

void LocalCluster::signalComponent(const std::string& component, int sig) const {
  const std::string key = component == "etcd" ? "ETCD_PID" : component == "kube-apiserver" ? "APISERVER_PID" : "";
  if (key.empty()) throw std::runtime_error("signalComponent: unknown component " + component);
  const std::string pid = env(key);
  if (pid.empty() || ::kill(static_cast<pid_t>(std::stol(pid)), sig) != 0) {
    throw std::runtime_error("signalComponent: " + component + " (pid '" + pid + "') does not run");
  }
}

void LocalCluster::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  try {
    std::vector<std::string> args{"down", dir_.string()};
    if (keepCluster()) args.emplace_back("--keep");
    const CommandResult down = script(args);
    if (!down.ok()) std::cerr << "cluster.sh down " << dir_ << " failed:\n" << down.err << std::flush;
    if (keepCluster()) {
      std::cerr << "cluster: kept " << dir_ << " (SINGLETON_KEEP_CLUSTER is set)\n" << std::flush;
    } else {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);  // also when `up` failed before the directory was marked
    }
  } catch (const std::exception& e) {
    std::cerr << "cluster: stopping " << dir_ << " failed: " << e.what() << '\n' << std::flush;
  }
}

CommandResult LocalCluster::script(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"bash", clusterScript().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv);
}

void LocalCluster::scriptOrThrow(const std::vector<std::string>& args) {
  const CommandResult r = script(args);
  if (!r.ok()) {
    throw std::runtime_error("cluster.sh " + args.front() + " failed with exit code " + std::to_string(r.exitCode) +
                             ":\n" + r.err);
  }
  loadEnv();  // pids change on (re)start
}

void LocalCluster::loadEnv() {
  std::ifstream in(dir_ / "env");
  if (!in) throw std::runtime_error("cannot read " + (dir_ / "env").string());
  std::map<std::string, std::string> env;
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (line.empty() || line.front() == '#' || eq == std::string::npos) continue;
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  env_ = std::move(env);
}

namespace {
std::mutex g_mutex;
std::unique_ptr<LocalCluster> g_cluster;
std::string g_startError;  // a failed start is not retried by every test
}  // namespace

LocalCluster& cluster() {
  std::lock_guard lock(g_mutex);
  if (!g_cluster) {
    if (!g_startError.empty()) throw std::runtime_error(g_startError);
    try {
      g_cluster = LocalCluster::start();
    } catch (const std::exception& e) {
      g_startError = e.what();
      throw;
    }
  }
  return *g_cluster;
}

void ClusterEnvironment::SetUp() {
  try {
    cluster();
  } catch (const std::exception& e) {
    GTEST_FAIL() << "could not start the local Kubernetes control plane: " << e.what();
  }
}

void ClusterEnvironment::TearDown() {
  std::lock_guard lock(g_mutex);
  g_cluster.reset();
}

}  // namespace singleton::testing
