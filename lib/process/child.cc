#include "process/child.h"

#include "process/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace singleton::process {
namespace {

std::optional<std::string> resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
  const std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string_view dir = end > start ? dirs.substr(start, end - start) : std::string_view(".");
    std::string candidate;
    candidate.reserve(dir.size() + 1 + name.size());
    candidate.append(dir).append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

}  // namespace

util::Result<Child> Child::spawn(const ChildOptions& options) {
  auto bad = [&](const std::string& why) {
    return util::makeError(util::ErrorCode::kInvalidArgument,
                           "cannot run \"" + (options.argv.empty() ? std::string() : options.argv[0]) + "\": " + why);
  };
  if (options.argv.empty()) return bad("no command");
  const auto path = resolve(options.argv[0]);
  if (!path) return bad(std::strerror(ENOENT));

  // Everything the forked processes use is prepared here: after fork they may not allocate.
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    bool overridden = false;
    for (const auto& [k, v] : options.extra_env) overridden |= entry.rfind(k + "=", 0) == 0;
    if (!overridden) env_storage.push_back(entry);
  }
  for (const auto& [k, v] : options.extra_env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = options.argv;
  std::vector<char*> args;
  for (auto& a : argv_storage) args.push_back(a.data());
  args.push_back(nullptr);

  int life[2];
  if (::pipe2(life, O_CLOEXEC) != 0) return bad(std::strerror(errno));
  WatchedSpawn spawn;
  spawn.path = path->c_str();
  spawn.argv = args.data();
  spawn.envp = envp.data();
  spawn.life_fd = life[0];
  const WatchedProcess started = spawnWatched(spawn);
  ::close(life[0]);  // the watcher holds its own copy
  if (!started.started()) {
    ::close(life[1]);
    const std::string why = std::strerror(started.error);
    switch (started.failed_step) {
      case kSpawnExec:
        return bad(why);
      case kSpawnDeathSignal:
        return bad("prctl(PR_SET_PDEATHSIG): " + why);
      default:
        return bad("fork: " + why);
    }
  }
  return Child(started.watcher, started.pid, life[1]);
}

Child::Child(Child&& other) noexcept
    : watcher_(std::exchange(other.watcher_, -1)),
      pid_(std::exchange(other.pid_, -1)),
      life_fd_(std::exchange(other.life_fd_, -1)),
      status_(other.status_) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    this->~Child();
    watcher_ = std::exchange(other.watcher_, -1);
    pid_ = std::exchange(other.pid_, -1);
    life_fd_ = std::exchange(other.life_fd_, -1);
    status_ = other.status_;
  }
  return *this;
}

Child::~Child() {
  if (watcher_ > 0 && !status_) terminate(util::Millis(0));
  if (life_fd_ >= 0) ::close(life_fd_);
}

void Child::signalGroup(int sig) const {
  if (pid_ > 0 && !status_) ::kill(-pid_, sig);
}

void Child::finish(int raw_status) {
  status_ = exitCode(raw_status);
  if (life_fd_ >= 0) {
    ::close(life_fd_);
    life_fd_ = -1;
  }
}

std::optional<int> Child::poll() {
  if (status_ || watcher_ <= 0) return status_;
  int status = 0;
  const pid_t r = ::waitpid(watcher_, &status, WNOHANG);
  if (r == watcher_) finish(status);
  if (r < 0 && errno == ECHILD) status_ = 1;  // reaped elsewhere: treat as a failure, never hang
  return status_;
}

std::optional<int> Child::waitUntilExitOr(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (auto s = poll()) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return poll();
}

int Child::terminate(util::Millis grace) {
  if (auto s = poll()) return *s;
  if (grace > util::Millis(0)) {
    signalGroup(SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto s = poll()) return *s;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  signalGroup(SIGKILL);  // the watcher sees the command's end, kills what is left of the group, and exits
  int status = 0;
  while (::waitpid(watcher_, &status, 0) < 0 && errno == EINTR) {
  }
  finish(status);
  return *status_;
}

}  // namespace singleton::process
