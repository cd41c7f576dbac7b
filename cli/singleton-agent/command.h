// COMMAND's supervision behind a small interface, so the agent's decisions can be unit-tested with a fake.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::agent {

class Command {
 public:
  using Env = std::vector<std::pair<std::string, std::string>>;
  virtual ~Command() = default;

  // Starts COMMAND with `env` added to the agent's environment; an error when it cannot be run.
  virtual util::Status start(const Env& env) = 0;
  virtual bool running() const = 0;
  virtual long pid() const = 0;  // while running
  // Its exit status once it ended by itself (then it is not running any more), without blocking.
  virtual std::optional<int> poll() = 0;
  // SIGTERM, SIGKILL after `grace`, reaped: returns only once it has stopped, with its exit status.
  virtual int stop(util::Millis grace) = 0;
};

// A real process (process::Child: own process group, death signal, bounded stop), as singleton-elect runs its own.
std::unique_ptr<Command> makeProcessCommand(std::vector<std::string> argv);

}  // namespace singleton::agent
