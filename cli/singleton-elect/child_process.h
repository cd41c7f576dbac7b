// The command singleton-elect runs while leading: started in its own process group (so a shell's children get the
// signals too), stopped with SIGTERM and, after a grace period, SIGKILL.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::cli {

class ChildProcess {
 public:
  // Runs argv[0] (searched in PATH) with the current environment plus `extra_env`.
  static util::Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                          const std::vector<std::pair<std::string, std::string>>& extra_env);

  // The exit status if the process has ended (128 + signal when killed by one), without blocking.
  std::optional<int> poll();
  // Polls until the process ends or `stop` is requested.
  std::optional<int> waitUntilExitOr(std::stop_token stop);
  // SIGTERM to the process group, SIGKILL after `grace`; returns the exit status.
  int terminate(util::Millis grace);
  pid_t pid() const { return pid_; }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> status_;
};

}  // namespace singleton::cli
