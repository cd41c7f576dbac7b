// singleton-operator: the SingletonWorkload controller with its own leader election. See --help.
#include <iostream>
#include <stop_token>

#include "operator/app/manager.h"
#include "operator/app/options.h"
#include "util/flags.h"
#include "util/log.h"
#include "util/signals.h"

namespace {

using namespace singleton;

constexpr const char* kProgram = "singleton-operator";
constexpr int kExitFailure = 1;  // a runtime failure (an endpoint cannot be bound): the supervisor restarts us
constexpr int kExitUsage = 2;    // a configuration error, including an identity another process also uses

int fail(int code, const std::string& message) { return util::fail(kProgram, code, message); }

}  // namespace

int main(int argc, char** argv) {
  util::TerminationSignals signals;  // before any other thread exists

  auto parsed = op::parseOptions(std::vector<std::string>(argv + 1, argv + argc), op::readEnvironment());
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const op::Options& options = *parsed;
  if (auto exit_code = util::answerHelpOrVersion(kProgram, options.help, options.version, op::usage)) return *exit_code;
  log::setup(options.log_format, options.log_level);

  auto transport = op::connect(options);
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  auto manager = op::Manager::create(options, *transport);
  if (!manager.ok()) return fail(kExitUsage, manager.error().message);

  std::stop_source stop;
  signals.start([&](int sig) {
    log::info("received signal; stopping", {.values = {{"signal", util::TerminationSignals::name(sig)}}});
    stop.request_stop();
  });

  auto outcome = (*manager)->run(stop.get_token());
  signals.stop();
  if (!outcome.ok()) {
    log::error("cannot run", {.err = outcome.error().describe()});
    return kExitFailure;
  }
  // Losing the Lease does not end run(): the replica campaigns again. It ends on a signal or a configuration error.
  return *outcome == op::Manager::Outcome::kIdentityConflict ? kExitUsage : 0;
}
