// singleton-elect: leader election on a Kubernetes Lease from the command line. See --help.
#include <atomic>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/singleton-elect/options.h"
#include "election/leader_elector.h"
#include "election/lease_lock.h"
#include "election/timings.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "process/child.h"
#include "util/duration.h"
#include "util/flags.h"
#include "util/log.h"
#include "util/signals.h"
#include "util/time_format.h"

namespace {

using namespace singleton;

constexpr const char* kProgram = "singleton-elect";
constexpr int kExitUsage = 2;
constexpr int kExitLostLeadership = 1;
constexpr int kExitIdentityConflict = 3;

const log::Logger kLog("elect");

// One JSON object per line on stdout; lines never interleave.
class EventPrinter {
 public:
  explicit EventPrinter(std::string identity) : identity_(std::move(identity)) {}
  void print(const char* event, const std::string& leader, fencing::FencingToken token) {
    nlohmann::ordered_json line = {{"ts", util::formatMillisTime(util::systemClock().wallNow())},
                                   {"event", event},
                                   {"identity", identity_},
                                   {"leader", leader},
                                   {"token", token.value()}};
    std::lock_guard guard(mutex_);
    std::fputs((line.dump() + "\n").c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  std::string identity_;
  std::mutex mutex_;
};

int fail(int code, const std::string& message) { return util::fail(kProgram, code, message); }

}  // namespace

int main(int argc, char** argv) {
  util::TerminationSignals signals;  // before any other thread exists

  auto parsed = cli::parseElectOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const cli::ElectOptions& options = *parsed;
  if (auto exit_code = util::answerHelpOrVersion(kProgram, options.help, options.version, cli::electUsage))
    return *exit_code;

  log::setup(options.log_format, options.log_level, nullptr, kProgram);

  auto config = kube::loadDefault(kube::KubeconfigOptions{options.kubeconfig, options.context});
  if (!config.ok()) return fail(kExitUsage, config.error().message);
  auto transport = kube::makeBeastTransport(*config);  // no I/O threads, no cpprestsdk: a small resident size
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  const std::string ns = options.lease_namespace.empty() ? config->default_namespace : options.lease_namespace;

  auto lock = std::make_shared<election::LeaseLock>(
      *transport, election::LeaseLockOptions{ns, options.lease_name, options.identity, nlohmann::json::object()});

  EventPrinter printer(options.identity);
  const log::ObjectRef lease{.ns = ns, .name = options.lease_name};
  kLog.info("candidate", {.object = lease, .values = {{"identity", options.identity}}});
  std::stop_source stop_all;
  std::atomic<int> command_status{-1};
  std::atomic<bool> led{false};
  std::atomic<long long> led_token{0};

  election::ElectorConfig elector_config;
  elector_config.lock = lock;
  elector_config.lease_duration = options.lease_duration;
  elector_config.renew_deadline = options.renew_deadline;
  elector_config.retry_period = options.retry_period;
  elector_config.renew_interval = options.renew_interval;
  // The command's whole stop: the grace period, then SIGKILL and the reap (options.cc keeps it within the budget).
  if (!options.command.empty()) {
    elector_config.stop_bound =
        options.grace_period + election::killWait(options.lease_duration, options.renew_deadline);
  }
  elector_config.callbacks.on_new_leader = [&](const std::string& holder, fencing::FencingToken token) {
    printer.print("new_leader", holder, token);
  };
  elector_config.callbacks.on_started_leading = [&](fencing::FencingToken token, std::stop_token stop) {
    led = true;
    led_token = token.value();
    printer.print("started_leading", options.identity, token);
    if (options.command.empty()) return;
    auto child = process::Child::spawn({options.command,
                                        {{"SINGLETON_FENCING_TOKEN", token.str()},
                                         {"SINGLETON_IDENTITY", options.identity},
                                         {"SINGLETON_LEASE", ns + "/" + options.lease_name}}});
    if (!child.ok()) {
      kLog.error("cannot start the command", {.err = child.error().message, .object = lease});
      command_status = 127;
      stop_all.request_stop();
      return;
    }
    kLog.info("started command", {.object = lease, .values = {{"pid", child->pid()}, {"token", token.value()}}});
    if (auto status = child->waitUntilExitOr(stop)) {
      kLog.info("command exited; releasing the lease", {.object = lease, .values = {{"status", *status}}});
      command_status = *status;
      stop_all.request_stop();
      return;
    }
    // `stop` comes the moment the elector gives up (or is told to stop); the stop starts here, at once.
    const auto stop_started = std::chrono::steady_clock::now();
    kLog.info("stopping command: SIGTERM, SIGKILL after the grace period",
              {.object = lease,
               .values = {{"pid", child->pid()}, {"grace_period", util::formatDuration(options.grace_period)}}});
    const int status = child->terminate(options.grace_period);
    const auto took = std::chrono::duration_cast<util::Millis>(std::chrono::steady_clock::now() - stop_started);
    kLog.info("command stopped", {.object = lease, .values = {{"status", status}, {"took_ms", took.count()}}});
  };
  elector_config.callbacks.on_stopped_leading = [&] {
    if (led) printer.print("stopped_leading", options.identity, fencing::FencingToken(led_token));
  };
  auto elector = election::LeaderElector::create(elector_config);
  if (!elector.ok()) return fail(kExitUsage, elector.error().message);

  std::atomic<bool> signalled{false};
  signals.start([&](int sig) {
    kLog.info("received signal; stopping", {.values = {{"signal", util::TerminationSignals::name(sig)}}});
    signalled = true;
    stop_all.request_stop();
  });

  using Outcome = election::LeaderElector::Outcome;
  Outcome outcome = (*elector)->run(stop_all.get_token());
  // Without a command, losing leadership is normal: campaign again (a command's supervisor restarts us instead).
  while (outcome == Outcome::kLostLeadership && options.command.empty() && !stop_all.stop_requested()) {
    kLog.warn("lost leadership; campaigning again", {.object = lease});
    led = false;
    outcome = (*elector)->run(stop_all.get_token());
  }
  signals.stop();

  if (command_status >= 0 && !signalled) return command_status;
  if (signalled) return 0;
  if (outcome == Outcome::kIdentityConflict) {
    kLog.error(
        "another process is writing under this identity; exiting (give each candidate its own --identity, or leave "
        "it out for a unique default)",
        {.object = lease, .values = {{"identity", options.identity}}});
    return kExitIdentityConflict;
  }
  if (outcome == Outcome::kLostLeadership) {
    kLog.error("lost leadership", {.object = lease});
    return kExitLostLeadership;
  }
  return 0;
}
