// The start of a supervised command, shared by process::Child (singleton-elect's and singleton-agent's COMMAND) and
// the simulated kubelet's containers: the command in a process group of its own, under a small watcher process
// forked from us that SIGKILLs the whole group when the supervisor's life pipe closes (child.h says why this holds
// however the supervisor ends).
//
// Everything the forked processes use is prepared by the caller before the call: after fork they run system calls
// only (the supervisor is multi-threaded, so another thread may hold the allocator's lock).
#pragma once

#include <sys/types.h>

namespace singleton::process {

// Where a start failed. Steps from kFirstCallerStep up are the pre_exec hook's own.
enum SpawnStep : int {
  kSpawnStarted = 0,
  kSpawnFork,         // fork of the watcher or of the command
  kSpawnDeathSignal,  // prctl(PR_SET_PDEATHSIG) towards the watcher
  kSpawnChdir,        // chdir to `workdir`
  kSpawnExec,         // execve
  kFirstCallerStep = 16,
};

struct WatchedSpawn {
  const char* path = nullptr;  // the executable, already resolved
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  // The read end of a pipe whose write ends only the supervisor holds: EOF tells the watcher the supervisor is gone.
  int life_fd = -1;

  // In the command, before exec, in this order (each optional):
  // A hook (system calls only): 0 to go on, else a step >= kFirstCallerStep, with errno set.
  int (*pre_exec)(const void* arg) = nullptr;
  const void* pre_exec_arg = nullptr;
  int stdio_fds[3] = {-1, -1, -1};  // dup2'ed onto 0, 1, 2 when >= 0; else inherited
  bool close_other_fds = false;     // close every descriptor above 2: the command inherits nothing else of ours
  const char* workdir = nullptr;    // chdir
};

struct WatchedProcess {
  pid_t watcher = -1;  // our child: reap it (its exit status is the command's, 128 + signal when a signal ended it)
  pid_t pid = -1;      // the command, also its process group
  int failed_step = kSpawnStarted;  // a SpawnStep; watcher and pid are -1 (the watcher is reaped) when not started
  int error = 0;                    // errno of the failed step
  bool started() const { return failed_step == kSpawnStarted; }
};

WatchedProcess spawnWatched(const WatchedSpawn& spawn);

// A waitpid status as an exit code: the code, or 128 + the signal that ended the process.
int exitCode(int wait_status);

}  // namespace singleton::process
