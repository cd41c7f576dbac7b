#include "cli/singleton-elect/child_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace singleton::cli {
namespace {

int decodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

util::Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv,
                                               const std::vector<std::pair<std::string, std::string>>& extra_env) {
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    bool overridden = false;
    for (const auto& [k, v] : extra_env) overridden |= entry.rfind(k + "=", 0) == 0;
    if (!overridden) env_storage.push_back(entry);
  }
  for (const auto& [k, v] : extra_env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = argv;
  std::vector<char*> args;
  for (auto& a : argv_storage) args.push_back(a.data());
  args.push_back(nullptr);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The parent blocks its termination signals to handle them on one thread; the child must get them normally.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return util::makeError(util::ErrorCode::kInvalidArgument, "cannot run \"" + argv[0] + "\": " + std::strerror(rc));
  }
  return ChildProcess(pid);
}

std::optional<int> ChildProcess::poll() {
  if (status_) return status_;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) status_ = decodeStatus(status);
  if (r < 0 && errno == ECHILD) status_ = 1;  // reaped elsewhere: treat as a failure, never hang
  return status_;
}

std::optional<int> ChildProcess::waitUntilExitOr(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (auto s = poll()) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return poll();
}

int ChildProcess::terminate(util::Millis grace) {
  if (auto s = poll()) return *s;
  ::kill(-pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto s = poll()) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = decodeStatus(status);
  return *status_;
}

}  // namespace singleton::cli
