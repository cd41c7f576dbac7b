#include "process/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <initializer_list>

namespace singleton::process {
namespace {

// Signals the supervisor handles itself and the watcher must ignore (a terminal's ^C reaches the supervisor's whole
// process group, watcher included); the command gets them back at their defaults.
constexpr int kHandledSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE};

struct Failure {
  int step = kSpawnStarted;
  int error = 0;
};

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

[[noreturn]] void fail(int error_fd, int step) {
  const Failure failure{step, errno};
  writeFully(error_fd, &failure, sizeof failure);
  ::_exit(127);
}

// Closes every descriptor above 2 but `keep`.
void closeAllBut(int keep) {
  const auto kept = static_cast<unsigned>(keep);
  if ((kept > 3U && ::syscall(SYS_close_range, 3U, kept - 1U, 0U) != 0) ||
      ::syscall(SYS_close_range, kept + 1U, ~0U, 0U) != 0) {
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd != keep) ::close(fd);
    }
  }
}

// The command, between fork and exec. `error_fd` is close-on-exec: EOF on it tells the parent exec succeeded.
[[noreturn]] void execCommand(const WatchedSpawn& spawn, pid_t watcher, int error_fd) {
  ::setpgid(0, 0);
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  for (int sig : kHandledSignals) ::sigaction(sig, &defaults, nullptr);
  ::sigaction(SIGCHLD, &defaults, nullptr);
  // Race-free: if the watcher died before the death signal was armed, getppid() no longer names it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != watcher) fail(error_fd, kSpawnDeathSignal);
  if (spawn.pre_exec != nullptr) {
    if (const int step = spawn.pre_exec(spawn.pre_exec_arg); step != 0) fail(error_fd, step);
  }
  for (int target = 0; target < 3; ++target) {
    if (spawn.stdio_fds[target] >= 0) ::dup2(spawn.stdio_fds[target], target);
  }
  if (spawn.close_other_fds) closeAllBut(error_fd);
  if (spawn.workdir != nullptr && ::chdir(spawn.workdir) != 0) fail(error_fd, kSpawnChdir);
  ::execve(spawn.path, spawn.argv, spawn.envp);
  fail(error_fd, kSpawnExec);
}

// The watcher: forks the command, reports its pid, then waits for whichever comes first: the command's end (it kills
// what the command left in its group and exits with the command's status) or ours (EOF on the life pipe: it kills the
// whole group). System calls only.
[[noreturn]] void watch(const WatchedSpawn& spawn, int info_fd, int error_fd) {
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
    ::close(spawn.life_fd);
    ::close(info_fd);
    execCommand(spawn, self, error_fd);
  }
  if (command < 0) fail(error_fd, kSpawnFork);
  ::close(error_fd);
  writeFully(info_fd, &command, sizeof command);
  ::close(info_fd);
  ::setpgid(command, command);  // also from this side, so the group exists before anyone signals it
  // Keep nothing of the supervisor's but the life pipe: its sockets and pipes must close when it closes them (or
  // dies), not when this watcher exits.
  for (int fd = 0; fd < 3; ++fd) ::close(fd);
  closeAllBut(spawn.life_fd);

  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, command, 0));
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(command), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == command) {
      ::kill(-command, SIGKILL);  // before reaping: the group id cannot have been reused yet
      int status = 0;
      while (::waitpid(command, &status, 0) < 0 && errno == EINTR) {
      }
      ::_exit(exitCode(status));
    }
    pollfd fds[2] = {{spawn.life_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    // Without a pidfd (old kernels) the command's end is noticed within 20 ms.
    const int ready = ::poll(fds, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 20);
    if (ready > 0 && fds[0].revents != 0) {
      char byte = 0;
      if (::read(spawn.life_fd, &byte, 1) <= 0) {  // the supervisor is gone
        ::kill(-command, SIGKILL);
        ::_exit(128 + SIGKILL);
      }
    }
  }
}

}  // namespace

int exitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

WatchedProcess spawnWatched(const WatchedSpawn& spawn) {
  WatchedProcess result;
  int info[2] = {-1, -1};
  int error[2] = {-1, -1};
  if (::pipe2(info, O_CLOEXEC) != 0 || ::pipe2(error, O_CLOEXEC) != 0) {
    result.failed_step = kSpawnFork;
    result.error = errno;
    for (int fd : {info[0], info[1], error[0], error[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return result;
  }
  const pid_t watcher = ::fork();
  if (watcher == 0) {
    ::close(info[0]);
    ::close(error[0]);
    watch(spawn, info[1], error[1]);
  }
  const int fork_error = errno;
  ::close(info[1]);
  ::close(error[1]);
  if (watcher < 0) {
    ::close(info[0]);
    ::close(error[0]);
    result.failed_step = kSpawnFork;
    result.error = fork_error;
    return result;
  }
  pid_t command = -1;
  const bool got_pid = readFully(info[0], &command, sizeof command) == sizeof command && command > 0;
  ::close(info[0]);
  Failure failure;
  const bool failed = readFully(error[0], &failure, sizeof failure) == sizeof failure;  // EOF once exec succeeded
  ::close(error[0]);
  if (got_pid && !failed) {
    result.watcher = watcher;
    result.pid = command;
    return result;
  }
  // The command (or the watcher's fork of it) failed: the watcher exits on its own at once; reap it.
  int status = 0;
  while (::waitpid(watcher, &status, 0) < 0 && errno == EINTR) {
  }
  result.failed_step = failed ? failure.step : kSpawnFork;
  result.error = failed ? failure.error : EAGAIN;
  return result;
}

}  // namespace singleton::process
