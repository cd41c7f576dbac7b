#include "process/child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace singleton::process {
namespace {

// Signals the supervisor handles itself and the watcher must ignore (a terminal's ^C reaches the supervisor's whole
// process group, watcher included); the command gets them back at their defaults.
constexpr int kHandledSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE};

int decodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

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

// Reads exactly `size` bytes unless the other end closes first; returns how many were read.
std::size_t readFully(int fd, void* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, static_cast<char*>(data) + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

void writeFully(int fd, const void* data, std::size_t size) {
  std::size_t put = 0;
  while (put < size) {
    const ssize_t n = ::write(fd, static_cast<const char*>(data) + put, size - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    put += static_cast<std::size_t>(n);
  }
}

// The command, between fork and exec: system calls only (we were forked from a multi-threaded process).
[[noreturn]] void execCommand(pid_t watcher, const char* path, char* const* argv, char* const* envp, int error_fd) {
  ::setpgid(0, 0);
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  for (int sig : kHandledSignals) ::sigaction(sig, &defaults, nullptr);
  ::sigaction(SIGCHLD, &defaults, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Race-free: if the watcher died before the death signal was armed, getppid() no longer names it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != watcher) ::_exit(127);
  ::execve(path, argv, envp);
  const int error = errno;
  writeFully(error_fd, &error, sizeof error);
  ::_exit(127);
}

// The watcher: forks the command, reports its pid, then waits for whichever comes first: the command's end (it kills
// what the command left in its group and exits with the command's status) or ours (EOF on the life pipe: it kills the
// whole group). System calls only.
[[noreturn]] void watch(int life_fd, int info_fd, const char* path, char* const* argv, char* const* envp,
                        int error_fd) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (int sig : kHandledSignals) ::sigaction(sig, &ignore, nullptr);
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &defaults, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  const pid_t self = ::getpid();
  const pid_t command = ::fork();
  if (command == 0) {
    ::close(life_fd);
    ::close(info_fd);
    execCommand(self, path, argv, envp, error_fd);
  }
  ::close(error_fd);
  const pid_t reported = command;
  writeFully(info_fd, &reported, sizeof reported);
  ::close(info_fd);
  if (command < 0) ::_exit(127);
  ::setpgid(command, command);  // also from this side, so the group exists before anyone signals it
  // Keep nothing of the supervisor's but the life pipe: its sockets and pipes must close when it closes them (or
  // dies), not when this watcher exits.
  for (int fd = 0; fd < 3; ++fd) ::close(fd);
  const auto life = static_cast<unsigned>(life_fd);
  if ((life > 3U && ::syscall(SYS_close_range, 3U, life - 1U, 0U) != 0) ||
      ::syscall(SYS_close_range, life + 1U, ~0U, 0U) != 0) {
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd != life_fd) ::close(fd);
    }
  }

  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, command, 0));
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(command), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == command) {
      ::kill(-command, SIGKILL);  // before reaping: the group id cannot have been reused yet
      int status = 0;
      while (::waitpid(command, &status, 0) < 0 && errno == EINTR) {
      }
      ::_exit(decodeStatus(status));
    }
    pollfd fds[2] = {{life_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    // Without a pidfd (old kernels) the command's end is noticed within 20 ms.
    const int ready = ::poll(fds, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 20);
    if (ready > 0 && fds[0].revents != 0) {
      char byte = 0;
      if (::read(life_fd, &byte, 1) <= 0) {  // the supervisor is gone
        ::kill(-command, SIGKILL);
        ::_exit(128 + SIGKILL);
      }
    }
  }
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

  int life[2], info[2], error[2];
  if (::pipe2(life, O_CLOEXEC) != 0) return bad(std::strerror(errno));
  if (::pipe2(info, O_CLOEXEC) != 0) {
    ::close(life[0]);
    ::close(life[1]);
    return bad(std::strerror(errno));
  }
  if (::pipe2(error, O_CLOEXEC) != 0) {
    for (int fd : {life[0], life[1], info[0], info[1]}) ::close(fd);
    return bad(std::strerror(errno));
  }
  const pid_t watcher = ::fork();
  if (watcher == 0) {
    ::close(life[1]);
    ::close(info[0]);
    ::close(error[0]);
    watch(life[0], info[1], path->c_str(), args.data(), envp.data(), error[1]);
  }
  ::close(life[0]);
  ::close(info[1]);
  ::close(error[1]);
  if (watcher < 0) {
    const int e = errno;
    for (int fd : {life[1], info[0], error[0]}) ::close(fd);
    return bad(std::strerror(e));
  }
  pid_t command = -1;
  const bool got_pid = readFully(info[0], &command, sizeof command) == sizeof command && command > 0;
  ::close(info[0]);
  int exec_error = 0;
  const bool exec_failed = readFully(error[0], &exec_error, sizeof exec_error) == sizeof exec_error;
  ::close(error[0]);
  Child child(watcher, got_pid ? command : -1, life[1]);
  if (!got_pid || exec_failed) {
    child.terminate(util::Millis(0));
    return bad(std::strerror(exec_failed ? exec_error : EAGAIN));
  }
  return child;
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
  status_ = decodeStatus(raw_status);
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
