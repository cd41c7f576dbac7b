// A supervised child process that cannot outlive its supervisor.
//
// The command runs in a process group of its own (so whatever it spawns gets the same signals), under a small
// watcher process forked from us (no exec: it runs only system calls). The watcher holds the read end of a pipe whose
// only write end is ours; when this process ends, however it ends (return, exit, crash, SIGKILL), the kernel closes
// that end and the watcher SIGKILLs the command's whole group at once. The command itself has PR_SET_PDEATHSIG
// (SIGKILL) towards the watcher, set race-free (it checks its parent after setting it), so it dies too if the watcher
// is killed. The watcher, not us, is the parent the death signal refers to: PR_SET_PDEATHSIG fires when the parent
// *thread* ends, and our spawning thread may end before the command.
//
// What remains: a process that leaves the group (setsid, setpgid) escapes the group kill, and a supervisor that is
// stopped (SIGSTOP, a frozen VM) cannot stop its child: that is what fencing tokens are for.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::process {

struct ChildOptions {
  std::vector<std::string> argv;                               // argv[0] is searched in PATH unless it contains a '/'
  std::vector<std::pair<std::string, std::string>> extra_env;  // added to (or replacing in) our environment
};

class Child {
 public:
  // Starts the command; an error (kInvalidArgument) when it cannot be run, e.g. not found or not executable.
  static util::Result<Child> spawn(const ChildOptions& options);

  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // SIGKILLs the group and reaps, if the command is still running: no exit path leaves it behind.
  ~Child();

  // The exit status once the command has ended (128 + signal when a signal ended it), without blocking. When it
  // ends, whatever it left in its group is killed.
  std::optional<int> poll();
  // Polls until the command ends or `stop` is requested.
  std::optional<int> waitUntilExitOr(std::stop_token stop);
  // SIGTERM to the group; SIGKILL to the group after `grace`; returns the exit status once the command is reaped.
  // The whole stop takes grace + the time the kernel needs to kill and reap (bounded by kill_wait in practice; the
  // call still waits beyond it, since returning earlier would claim a stop that has not happened).
  int terminate(util::Millis grace);
  void signalGroup(int sig) const;

  pid_t pid() const { return pid_; }  // the command, also its process group
  pid_t watcherPid() const { return watcher_; }

 private:
  Child(pid_t watcher, pid_t pid, int life_fd) : watcher_(watcher), pid_(pid), life_fd_(life_fd) {}
  void finish(int raw_status);

  pid_t watcher_ = -1;
  pid_t pid_ = -1;
  int life_fd_ = -1;  // our end of the watcher's pipe: closing it (or dying) makes the watcher kill the group
  std::optional<int> status_;
};

}  // namespace singleton::process
