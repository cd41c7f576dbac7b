#include "process_runtime.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kube/object.h"
#include "process/spawn.h"
#include "util/log.h"

namespace singleton::sim {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const log::Logger kLog("runtime");

// How often the loop looks at its processes when nothing wakes it: the delay of noticing an exit.
constexpr util::Millis kTick{20};
// A run this long resets the restart backoff (the kubelet's rule: twice the cap).
constexpr util::Millis kBackoffReset{600'000};
// On our own exit: SIGTERM to every process, SIGKILL this much later.
constexpr util::Millis kShutdownGrace{2'000};

// The steps of a container's own between fork and exec (the service-account mount), after lib/process's.
enum MountStep : int { kUnshare = process::kFirstCallerStep, kPrivate, kBind, kReadOnly };

const char* stepName(int step) {
  switch (step) {
    case process::kSpawnFork:
      return "fork";
    case process::kSpawnDeathSignal:
      return "prctl(PR_SET_PDEATHSIG)";
    case kUnshare:
      return "unshare(CLONE_NEWNS) for the service-account mount";
    case kPrivate:
      return "mount --make-rprivate /";
    case kBind:
      return "bind mount of the service-account token directory";
    case kReadOnly:
      return "read-only remount of the service-account token";
    case process::kSpawnChdir:
      return "chdir to workingDir";
    case process::kSpawnExec:
      return "exec";
    default:
      return "start";
  }
}

// In the container's process before exec (system calls only): the token directory bind-mounted read-only on
// kServiceAccountDir, in a mount namespace of its own.
int mountServiceAccount(const void* token_dir_arg) {
  const char* token_dir = static_cast<const char*>(token_dir_arg);
  if (::unshare(CLONE_NEWNS) != 0) return kUnshare;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return kPrivate;
  if (::mount(token_dir, kServiceAccountDir, nullptr, MS_BIND, nullptr) != 0) return kBind;
  if (::mount(nullptr, kServiceAccountDir, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) return kReadOnly;
  return 0;
}

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is the path
  EnvList env;
  std::string workdir;
  std::string log_path;   // stdout and stderr (appended); empty: /dev/null
  std::string token_dir;  // bind-mounted on kServiceAccountDir in a mount namespace of its own; empty: none
};

// A started command: `pid` (the command, also its process group) runs under `watcher`, our child, which we reap.
struct Spawned {
  pid_t watcher = -1;
  pid_t pid = -1;
};

// Starts the command under lib/process's watcher (process/spawn.h): in a process group of its own, killed with its
// whole group when we end, however we end (`life_fd` is the read end of our life pipe). An error names the step that
// failed (the mount namespace, chdir, exec) with its errno text.
util::Result<Spawned> spawnProcess(const SpawnRequest& request, int life_fd) {
  if (request.argv.empty()) return util::makeError(util::ErrorCode::kInvalidArgument, "no command");
  std::vector<char*> argv;
  for (const std::string& arg : request.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_text;
  env_text.reserve(request.env.size());
  for (const auto& [key, value] : request.env) env_text.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (const std::string& entry : env_text) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  const char* workdir = request.workdir.empty() ? "/" : request.workdir.c_str();

  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int out_fd = request.log_path.empty()
                         ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                         : ::open(request.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (null_fd < 0 || out_fd < 0) {
    const int error = errno;
    for (int fd : {null_fd, out_fd}) {
      if (fd >= 0) ::close(fd);
    }
    return util::makeError(
        util::ErrorCode::kInternal,
        "opening " + (request.log_path.empty() ? "/dev/null" : request.log_path) + ": " + std::strerror(error));
  }
  process::WatchedSpawn spawn;
  spawn.path = argv[0];
  spawn.argv = argv.data();
  spawn.envp = envp.data();
  spawn.life_fd = life_fd;
  if (!request.token_dir.empty()) {
    spawn.pre_exec = mountServiceAccount;
    spawn.pre_exec_arg = request.token_dir.c_str();
  }
  spawn.stdio_fds[0] = null_fd;
  spawn.stdio_fds[1] = out_fd;
  spawn.stdio_fds[2] = out_fd;
  spawn.close_other_fds = true;  // nothing of ours survives into the container
  spawn.workdir = workdir;
  const process::WatchedProcess started = process::spawnWatched(spawn);
  ::close(null_fd);
  ::close(out_fd);
  if (started.started()) return Spawned{started.watcher, started.pid};
  if (started.failed_step == process::kSpawnFork) {
    return util::makeError(util::ErrorCode::kInternal, std::string("fork: ") + std::strerror(started.error));
  }
  std::string what = stepName(started.failed_step);
  if (started.failed_step == process::kSpawnExec) what += " " + request.argv[0];
  if (started.failed_step == process::kSpawnChdir) what += " " + std::string(workdir);
  return util::makeError(util::ErrorCode::kInvalidArgument, what + ": " + std::strerror(started.error));
}

// The watcher's exit status (the command's) if it has ended (then it is reaped), else nullopt. The watcher has
// killed what the command left in its group.
std::optional<int> reapIfExited(const Spawned& process) {
  int status = 0;
  const pid_t got = ::waitpid(process.watcher, &status, WNOHANG);
  if (got != process.watcher) return std::nullopt;
  return process::exitCode(status);
}

void killAndReap(const Spawned& process) {
  ::kill(-process.pid, SIGKILL);
  ::kill(process.watcher, SIGKILL);  // it would kill the group and exit anyway; do not wait for it to notice
  int status = 0;
  while (::waitpid(process.watcher, &status, 0) < 0 && errno == EINTR) {
  }
}

// command[0] looked up in the container's PATH when it has no '/'.
std::string resolveCommand(const std::string& name, const EnvList& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& [key, value] : env) {
    if (key == "PATH") path = value;
  }
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find(':', start), path.size());
    const std::string candidate = path.substr(start, end - start) + "/" + name;
    if (hostExecutable(candidate)) return candidate;
    start = end + 1;
  }
  return name;
}

// A tcpSocket (path empty) or httpGet probe on 127.0.0.1:port: connected (and, for HTTP, a status 200..399) within
// the timeout.
bool checkSocket(int port, const std::string& path, bool http, int timeout_seconds) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval timeout{timeout_seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  if (ok && http) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nUser-Agent: kube-probe/1.20\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    ok = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
    std::string answer;
    char buffer[256];
    while (ok && answer.find("\r\n") == std::string::npos && answer.size() < 4096) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      answer.append(buffer, static_cast<std::size_t>(n));
    }
    // "HTTP/1.1 200 OK"
    int code = 0;
    const std::size_t space = answer.find(' ');
    if (answer.rfind("HTTP/", 0) == 0 && space != std::string::npos) code = std::atoi(answer.c_str() + space + 1);
    ok = ok && code >= 200 && code < 400;
  }
  ::close(fd);
  return ok;
}

std::string containerId(pid_t pid) { return "process://" + std::to_string(pid); }

bool writeFileAtomic(const fs::path& path, const std::string& text) {
  const fs::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out << text;
    if (!out.flush()) return false;
  }
  std::error_code error;
  fs::permissions(temp, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read,
                  error);
  fs::rename(temp, path, error);
  return !error;
}

}  // namespace

struct ProcessRuntime::Container {
  std::string name;
  std::vector<std::string> argv;
  EnvList env;
  std::string workdir;
  std::optional<Probe> probe;
  std::string config_error;  // CreateContainerConfigError: never started
  std::string log_path;
  ContainerRun run;
  Spawned process;  // the current run; pid -1 when none
  bool ever_started = false;
  util::MonoTime started_mono{};
  util::MonoTime next_start{};
  int backoff_restarts = 0;
  // The readiness probe.
  util::MonoTime next_probe{};
  int successes = 0;
  int failures = 0;
  Spawned probe_process;  // an exec probe in flight; pid -1 when none
  util::MonoTime probe_deadline{};
  std::optional<std::future<bool>> socket_probe;
};

struct ProcessRuntime::Pod {
  std::string key;
  std::string uid;
  std::string ns;
  std::string name;
  std::string service_account;
  bool automount = true;
  std::string restart_policy;
  std::vector<Container> containers;
  bool deleting = false;
  bool term_sent = false;
  bool stopped = false;
  bool forgotten = false;
  util::Millis grace{30'000};
  util::MonoTime term_at{};
  util::MonoTime kill_at{};
  std::string token_dir;
  bool token_ok = false;
  std::string token_error;
  util::MonoTime token_refresh{};
  util::MonoTime token_retry{};
};

ProcessRuntime::ProcessRuntime(kube::Client& client, Config config, Changed changed)
    : client_(client), config_(std::move(config)), changed_(std::move(changed)) {
  int life[2] = {-1, -1};
  if (::pipe2(life, O_CLOEXEC) == 0) {
    life_read_ = life[0];
    life_write_ = life[1];
  }
  std::error_code error;
  fs::create_directories(config_.log_dir, error);
  fs::create_directories(config_.state_dir, error);
  // The mount point must exist on the host for the bind mount inside each container's namespace.
  fs::create_directories(kServiceAccountDir, error);
  mount_point_ok_ = !error && fs::is_directory(kServiceAccountDir, error);
  if (!mount_point_ok_) {
    mount_point_error_ = std::string("cannot create the mount point ") + kServiceAccountDir + ": " + error.message();
    kLog.warn("process pods that mount a service-account token will fail to start", {.err = mount_point_error_});
  }
}

ProcessRuntime::~ProcessRuntime() {
  std::lock_guard lock(mutex_);
  for (auto& [uid, pod] : pods_) killAll(*pod, SIGKILL);
  for (int fd : {life_read_, life_write_}) {
    if (fd >= 0) ::close(fd);
  }
}

void ProcessRuntime::killAll(Pod& pod, int sig) {
  for (Container& container : pod.containers) {
    if (container.probe_process.pid > 0) {
      killAndReap(container.probe_process);
      container.probe_process = {};
    }
    if (container.process.pid > 0) {
      if (sig == SIGKILL) {
        killAndReap(container.process);
        container.process = {};
      } else {
        ::kill(-container.process.pid, sig);
      }
    }
  }
}

void ProcessRuntime::sync(const Json& pod, const std::string& pod_ip) {
  const std::string uid = kube::uidOf(pod);
  const Json* deletion = field(objectField(pod, "metadata"), "deletionTimestamp");
  const bool deleting = deletion != nullptr && !deletion->is_null();
  {
    std::lock_guard lock(mutex_);
    auto it = pods_.find(uid);
    if (it == pods_.end()) {
      if (deleting) return;  // nothing of it runs
      auto state = std::make_unique<Pod>();
      state->uid = uid;
      state->ns = kube::namespaceOf(pod);
      state->name = kube::nameOf(pod);
      state->key = state->ns + "/" + state->name;
      state->service_account = serviceAccountName(pod);
      state->automount = automountToken(pod);
      state->restart_policy = stringField(objectField(pod, "spec"), "restartPolicy");
      state->token_dir = (fs::path(config_.state_dir) / uid / "serviceaccount").string();
      const fs::path log_dir = fs::path(config_.log_dir) / (state->ns + "_" + state->name + "_" + uid);
      std::error_code error;
      fs::create_directories(log_dir, error);
      const EnvFacts facts{pod_ip, config_.host_ip, config_.service_host, config_.service_port};
      for (const Json& spec : arrayField(objectField(pod, "spec"), "containers")) {
        Container container;
        container.name = stringField(spec, "name");
        container.run.name = container.name;
        container.log_path = (log_dir / (container.name + ".log")).string();
        container.workdir = stringField(spec, "workingDir");
        if (!isProcessContainer(spec)) {
          container.config_error = "command[0] is not an absolute path to an executable on this host";
        } else if (auto env = containerEnv(pod, spec, facts); !env.ok()) {
          container.config_error = env.error().message;
        } else if (auto probe = readinessProbe(spec); !probe.ok()) {
          container.config_error = probe.error().message;
        } else {
          container.env = std::move(*env);
          container.argv = containerArgv(spec, container.env);
          container.probe = std::move(*probe);
        }
        // A pod that already ran under an earlier kubelet (its processes died with it): this start is a restart.
        for (const Json& old : arrayField(objectField(pod, "status"), "containerStatuses")) {
          if (stringField(old, "name") != container.name || stringField(old, "containerID").empty()) continue;
          container.ever_started = true;
          container.run.restart_count = objectField(old, "state").is_object() ? old.value("restartCount", 0) : 0;
        }
        state->containers.push_back(std::move(container));
      }
      kLog.info("running the containers as processes",
                {.object = log::objectRef(state->key),
                 .values = {{"containers", state->containers.size()}, {"log_dir", log_dir.string()}}});
      it = pods_.emplace(uid, std::move(state)).first;
    }
    Pod& state = *it->second;
    if (deleting) {
      const util::Millis grace = std::chrono::seconds(terminationGraceSeconds(pod));
      if (!state.deleting) {
        state.deleting = true;
        state.grace = grace;
      } else if (state.term_sent && state.term_at + grace < state.kill_at) {
        state.kill_at = state.term_at + grace;  // deleted again with a shorter grace
      }
    }
    wake_requested_ = true;
  }
  wake_.notify_all();
}

void ProcessRuntime::forget(const std::string& uid) {
  std::unique_ptr<Pod> pod;
  {
    std::lock_guard lock(mutex_);
    auto it = pods_.find(uid);
    if (it == pods_.end()) return;
    pod = std::move(it->second);
    pods_.erase(it);
    killAll(*pod, SIGKILL);
  }
  std::error_code error;
  fs::remove_all(fs::path(config_.state_dir) / uid, error);
}

bool ProcessRuntime::known(const std::string& uid) const {
  std::lock_guard lock(mutex_);
  return pods_.contains(uid);
}

std::optional<PodRun> ProcessRuntime::status(const std::string& uid) const {
  std::lock_guard lock(mutex_);
  auto it = pods_.find(uid);
  if (it == pods_.end()) return std::nullopt;
  PodRun out;
  out.stopped = it->second->stopped;
  for (const Container& container : it->second->containers) out.containers.push_back(container.run);
  return out;
}

bool ProcessRuntime::stopped(const std::string& uid) const {
  std::lock_guard lock(mutex_);
  auto it = pods_.find(uid);
  if (it == pods_.end()) return true;
  for (const Container& container : it->second->containers) {
    if (container.process.pid > 0) return false;
  }
  return it->second->stopped || !it->second->deleting;
}

void ProcessRuntime::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    std::vector<std::string> changed;
    {
      std::unique_lock lock(mutex_);
      for (auto& [uid, pod] : pods_) step(*pod, changed);
      wake_requested_ = false;
      clock_.waitUntil(lock, wake_, clock_.now() + kTick, stop, [this] { return wake_requested_; });
    }
    for (const std::string& key : changed) changed_(key);
  }
  // Our processes must not outlive us: TERM, a short grace, KILL.
  std::unique_lock lock(mutex_);
  int running = 0;
  for (auto& [uid, pod] : pods_) {
    killAll(*pod, SIGTERM);
    for (const Container& container : pod->containers) running += container.process.pid > 0 ? 1 : 0;
  }
  if (running > 0) kLog.info("stopping the container processes", {.values = {{"processes", running}}});
  const util::MonoTime deadline = clock_.now() + kShutdownGrace;
  while (clock_.now() < deadline) {
    bool any = false;
    for (auto& [uid, pod] : pods_) {
      for (Container& container : pod->containers) {
        if (container.process.pid > 0 && reapIfExited(container.process)) container.process = {};
        any = any || container.process.pid > 0;
      }
    }
    if (!any) break;
    std::this_thread::sleep_for(kTick);
  }
  for (auto& [uid, pod] : pods_) {
    killAll(*pod, SIGKILL);
    std::error_code error;
    fs::remove_all(fs::path(config_.state_dir) / uid, error);
  }
}

void ProcessRuntime::step(Pod& pod, std::vector<std::string>& changed) {
  const util::MonoTime now = clock_.now();
  if (pod.deleting) {
    if (!pod.term_sent) {
      pod.term_sent = true;
      pod.term_at = now;
      pod.kill_at = now + pod.grace;
      int signalled = 0;
      for (Container& container : pod.containers) {
        if (container.probe_process.pid > 0) {
          killAndReap(container.probe_process);
          container.probe_process = {};
        }
        if (container.process.pid > 0) {
          ::kill(-container.process.pid, SIGTERM);
          ++signalled;
        }
      }
      kLog.info("deleted: SIGTERM to the container process groups, SIGKILL after the grace period",
                {.object = log::objectRef(pod.key),
                 .values = {{"process_groups", signalled}, {"grace_period_s", pod.grace.count() / 1000}}});
    }
    if (now >= pod.kill_at) {
      for (Container& container : pod.containers) {
        if (container.process.pid > 0) ::kill(-container.process.pid, SIGKILL);
      }
    }
    bool any = false;
    for (Container& container : pod.containers) {
      reap(pod, container, changed);
      any = any || container.process.pid > 0;
    }
    if (!any && !pod.stopped) {
      pod.stopped = true;
      kLog.info("every container process has ended", {.object = log::objectRef(pod.key)});
      changed.push_back(pod.key);
    }
    return;
  }
  if (pod.automount && pod.token_ok && now >= pod.token_refresh) {
    std::string error;
    ensureToken(pod, error);
  }
  for (Container& container : pod.containers) {
    reap(pod, container, changed);
    if (container.process.pid < 0 && !container.run.final && now >= container.next_start) {
      startContainer(pod, container, changed);
    }
    if (container.process.pid > 0) probe(pod, container, changed);
  }
}

bool ProcessRuntime::ensureToken(Pod& pod, std::string& error) {
  const util::MonoTime now = clock_.now();
  if (pod.token_ok && now < pod.token_refresh) return true;
  if (!pod.token_ok && now < pod.token_retry) {
    error = pod.token_error;
    return false;
  }
  const Json request = {
      {"apiVersion", "authentication.k8s.io/v1"},
      {"kind", "TokenRequest"},
      {"spec",
       {{"expirationSeconds", config_.token_seconds},
        {"boundObjectRef", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod.name}, {"uid", pod.uid}}}}}};
  const std::string path = "/api/v1/namespaces/" + pod.ns + "/serviceaccounts/" + pod.service_account + "/token";
  auto answer = client_.raw("POST", path, request.dump());
  std::string token;
  if (answer.ok()) {
    const Json parsed = Json::parse(*answer, nullptr, false);
    token = stringField(objectField(parsed, "status"), "token");
    if (token.empty()) error = "TokenRequest answered without a token";
  } else {
    error = "TokenRequest for service account " + pod.ns + "/" + pod.service_account +
            " failed: " + answer.error().describe();
  }
  if (token.empty()) {
    if (pod.token_ok) {
      // The current token is still valid for a fifth of its life: keep it and try again soon.
      kLog.warn("refreshing the service-account token failed; retrying in 10 s",
                {.err = error, .object = log::objectRef(pod.key)});
      pod.token_refresh = now + 10s;
      return true;
    }
    pod.token_error = error;
    pod.token_retry = now + 1s;
    return false;
  }
  std::error_code fs_error;
  fs::create_directories(pod.token_dir, fs_error);
  const fs::path dir(pod.token_dir);
  if (!writeFileAtomic(dir / "token", token) || !writeFileAtomic(dir / "ca.crt", config_.ca_pem) ||
      !writeFileAtomic(dir / "namespace", pod.ns)) {
    error = "cannot write the service-account files in " + pod.token_dir;
    pod.token_error = error;
    pod.token_retry = now + 1s;
    return pod.token_ok;
  }
  pod.token_ok = true;
  pod.token_refresh = now + (config_.token_refresh > util::Millis(0)
                                 ? config_.token_refresh
                                 : util::Millis(std::chrono::seconds(config_.token_seconds * 4 / 5)));
  kLog.debug("service-account token written",
             {.object = log::objectRef(pod.key), .values = {{"service_account", pod.service_account}}});
  return true;
}

void ProcessRuntime::startContainer(Pod& pod, Container& container, std::vector<std::string>& changed) {
  ContainerRun& run = container.run;
  const util::MonoTime now = clock_.now();
  auto wait = [&](const std::string& reason, const std::string& message) {
    if (run.state != ContainerRun::State::kWaiting || run.waiting_reason != reason || run.waiting_message != message) {
      run.state = ContainerRun::State::kWaiting;
      run.waiting_reason = reason;
      run.waiting_message = message;
      changed.push_back(pod.key);
    }
  };
  if (!container.config_error.empty()) {
    if (run.waiting_reason != "CreateContainerConfigError") {
      kLog.warn("container config error", {.err = container.config_error,
                                           .object = log::objectRef(pod.key),
                                           .values = {{"container", container.name}}});
    }
    wait("CreateContainerConfigError", container.config_error);
    container.next_start = now + std::chrono::hours(24 * 365);
    return;
  }
  std::string error;
  if (pod.automount && !mount_point_ok_) {
    error = mount_point_error_;
  } else if (pod.automount && !ensureToken(pod, error)) {
    wait("ContainerCreating", error);
    container.next_start = now + 1s;
    return;
  }
  util::Result<Spawned> spawned = util::makeError(util::ErrorCode::kInternal, error);
  if (error.empty()) {
    spawned = spawnProcess({container.argv, container.env, container.workdir, container.log_path,
                            pod.automount ? pod.token_dir : std::string()},
                           life_read_);
  }
  if (container.ever_started) ++run.restart_count;
  container.ever_started = true;
  const util::WallTime wall = clock_.wallNow();
  if (!spawned.ok()) {
    kLog.warn(
        "container failed to start",
        {.err = spawned.error().message, .object = log::objectRef(pod.key), .values = {{"container", container.name}}});
    ContainerRun::Terminated failed{128, 0, "StartError", spawned.error().message, wall, wall, ""};
    container.started_mono = now;
    // Handled as an exit: restartPolicy and backoff apply.
    container.process = {};
    run.ready = false;
    run.started = false;
    if (!shouldRestart(pod.restart_policy, failed.exit_code)) {
      run.state = ContainerRun::State::kTerminated;
      run.current = failed;
      run.final = true;
    } else {
      run.last = failed;
      const util::Millis delay = restartDelay(++container.backoff_restarts, config_.restart_base, config_.restart_cap);
      container.next_start = now + delay;
      run.state = ContainerRun::State::kWaiting;
      run.waiting_reason = "CrashLoopBackOff";
      run.waiting_message = "back-off " + std::to_string(delay.count() / 1000) +
                            "s restarting failed container=" + container.name + " pod=" + pod.name;
    }
    changed.push_back(pod.key);
    return;
  }
  const pid_t pid = spawned->pid;
  container.process = *spawned;
  container.started_mono = now;
  run.state = ContainerRun::State::kRunning;
  run.started_at = wall;
  run.container_id = containerId(pid);
  run.started = true;
  run.ready = !container.probe.has_value();
  run.waiting_reason.clear();
  run.waiting_message.clear();
  container.successes = 0;
  container.failures = 0;
  if (container.probe) container.next_probe = now + std::chrono::seconds(container.probe->initial_delay_seconds);
  kLog.info("container started",
            {.object = log::objectRef(pod.key),
             .values = {{"container", container.name}, {"pid", pid}, {"restart", run.restart_count}}});
  changed.push_back(pod.key);
}

void ProcessRuntime::reap(Pod& pod, Container& container, std::vector<std::string>& changed) {
  if (container.process.pid <= 0) return;
  const std::optional<int> exit = reapIfExited(container.process);
  if (!exit) return;
  const pid_t pid = container.process.pid;
  const util::MonoTime now = clock_.now();
  ContainerRun& run = container.run;
  ContainerRun::Terminated ended{
      *exit, 0, *exit == 0 ? "Completed" : "Error", "", run.started_at, clock_.wallNow(), containerId(pid)};
  kLog.info("container exited", {.object = log::objectRef(pod.key),
                                 .values = {{"container", container.name}, {"pid", pid}, {"exit_code", *exit}}});
  container.process = {};
  if (container.probe_process.pid > 0) {
    killAndReap(container.probe_process);
    container.probe_process = {};
  }
  container.socket_probe.reset();
  run.ready = false;
  run.started = false;
  if (pod.deleting || !shouldRestart(pod.restart_policy, *exit)) {
    run.state = ContainerRun::State::kTerminated;
    run.current = ended;
    run.final = true;
  } else {
    if (now - container.started_mono >= kBackoffReset) container.backoff_restarts = 0;
    run.last = ended;
    const util::Millis delay = restartDelay(container.backoff_restarts++, config_.restart_base, config_.restart_cap);
    container.next_start = now + delay;
    run.state = ContainerRun::State::kWaiting;
    run.waiting_reason = delay > util::Millis(0) ? "CrashLoopBackOff" : "ContainerCreating";
    run.waiting_message = delay > util::Millis(0)
                              ? "back-off " + std::to_string(delay.count() / 1000) +
                                    "s restarting failed container=" + container.name + " pod=" + pod.name
                              : "";
  }
  changed.push_back(pod.key);
}

void ProcessRuntime::probe(Pod& pod, Container& container, std::vector<std::string>& changed) {
  if (!container.probe) return;
  const Probe& probe = *container.probe;
  const util::MonoTime now = clock_.now();
  std::optional<bool> result;
  std::string why;  // of a failure, for the log
  if (container.probe_process.pid > 0) {
    if (const std::optional<int> exit = reapIfExited(container.probe_process)) {
      result = *exit == 0;
      why = "exit status " + std::to_string(*exit);
      container.probe_process = {};
    } else if (now >= container.probe_deadline) {
      killAndReap(container.probe_process);
      container.probe_process = {};
      result = false;
      why = "timed out after " + std::to_string(probe.timeout_seconds) + "s";
    }
  } else if (container.socket_probe) {
    if (container.socket_probe->wait_for(0s) == std::future_status::ready) {
      result = container.socket_probe->get();
      container.socket_probe.reset();
    }
  } else if (now >= container.next_probe) {
    container.next_probe = now + std::chrono::seconds(probe.period_seconds);
    if (probe.kind == Probe::Kind::kExec) {
      std::vector<std::string> argv = probe.command;
      argv[0] = resolveCommand(argv[0], container.env);
      auto spawned =
          spawnProcess({argv, container.env, container.workdir, "", pod.automount ? pod.token_dir : ""}, life_read_);
      if (spawned.ok()) {
        container.probe_process = *spawned;
        container.probe_deadline = now + std::chrono::seconds(probe.timeout_seconds);
      } else {
        kLog.debug("readiness probe failed to start", {.err = spawned.error().message,
                                                       .object = log::objectRef(pod.key),
                                                       .values = {{"container", container.name}}});
        result = false;
        why = "failed to start";
      }
    } else {
      const bool http = probe.kind == Probe::Kind::kHttpGet;
      container.socket_probe =
          std::async(std::launch::async, checkSocket, probe.port, probe.path, http, probe.timeout_seconds);
    }
  }
  if (!result) return;
  ContainerRun& run = container.run;
  bool ready = run.ready;
  if (*result) {
    container.failures = 0;
    if (++container.successes >= probe.success_threshold) ready = true;
  } else {
    container.successes = 0;
    if (++container.failures >= probe.failure_threshold) ready = false;
  }
  if (ready != run.ready) {
    run.ready = ready;
    log::Values values{{"container", container.name}};
    if (!ready) values.push_back({"reason", why.empty() ? std::string("failed") : why});
    kLog.info(ready ? "readiness probe: ready" : "readiness probe: not ready",
              {.object = log::objectRef(pod.key), .values = std::move(values)});
    changed.push_back(pod.key);
  }
}

}  // namespace singleton::sim
