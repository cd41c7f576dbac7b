#include "cli/singleton-agent/command.h"

#include "process/child.h"

namespace singleton::agent {
namespace {

class ProcessCommand final : public Command {
 public:
  explicit ProcessCommand(std::vector<std::string> argv) : argv_(std::move(argv)) {}

  util::Status start(const Env& env) override {
    auto spawned = process::Child::spawn({argv_, env});
    if (!spawned.ok()) return spawned.error();
    child_.emplace(std::move(*spawned));
    return {};
  }
  bool running() const override { return child_.has_value(); }
  long pid() const override { return child_ ? child_->pid() : -1; }
  std::optional<int> poll() override {
    if (!child_) return std::nullopt;
    auto status = child_->poll();
    if (status) child_.reset();
    return status;
  }
  int stop(util::Millis grace) override {
    if (!child_) return 0;
    const int status = child_->terminate(grace);
    child_.reset();
    return status;
  }

 private:
  std::vector<std::string> argv_;
  std::optional<process::Child> child_;
};

}  // namespace

std::unique_ptr<Command> makeProcessCommand(std::vector<std::string> argv) {
  return std::make_unique<ProcessCommand>(std::move(argv));
}

}  // namespace singleton::agent
