// singleton-operator: the SingletonWorkload controller with its own leader election. See --help.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <stop_token>
#include <thread>

#include "operator/logging.h"
#include "operator/manager.h"
#include "operator/options.h"

namespace {

using namespace singleton;

constexpr int kExitFailure = 1;  // lost leadership or a runtime failure: the supervisor restarts us
constexpr int kExitUsage = 2;

int fail(int code, const std::string& message) {
  std::cerr << "singleton-operator: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Termination signals are taken by one thread with sigtimedwait; block them before any other thread exists, so
  // every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto parsed = op::parseOptions(std::vector<std::string>(argv + 1, argv + argc), op::readEnvironment());
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const op::Options& options = *parsed;
  if (options.help) {
    std::cout << op::usage();
    return 0;
  }
  if (options.version) {
    std::cout << "singleton-operator 0.1.0\n";
    return 0;
  }
  op::log::setup(options.log_format, options.log_level);

  auto transport = op::connect(options);
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  auto manager = op::Manager::create(options, *transport);
  if (!manager.ok()) return fail(kExitUsage, manager.error().message);

  std::stop_source stop;
  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 100'000'000};
    while (!done) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig == SIGTERM || sig == SIGINT) {
        op::log::info("received signal; stopping", {.values = {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}}});
        stop.request_stop();
      }
    }
  });

  auto outcome = (*manager)->run(stop.get_token());
  done = true;
  signal_thread.join();
  if (!outcome.ok()) {
    op::log::error("cannot run", {.err = outcome.error().describe()});
    return kExitFailure;
  }
  return *outcome == op::Manager::Outcome::kLostLeadership ? kExitFailure : 0;
}
