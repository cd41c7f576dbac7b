#include "cli/singleton-elect/options.h"

#include <algorithm>
#include <regex>

#include "election/identity.h"
#include "election/leader_elector.h"
#include "election/timing_flags.h"
#include "util/duration.h"
#include "util/flags.h"
#include "util/log.h"

namespace singleton::cli {
namespace {

util::Error usageError(const std::string& message) {
  return util::makeError(util::ErrorCode::kInvalidArgument, message);
}

bool isDnsSubdomain(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

bool isDnsLabel(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  return !s.empty() && s.size() <= 63 && std::regex_match(s, re);
}

// The flags, bound to options and lease (--lease before it is split); the same set parses and documents them.
util::FlagSet electFlags(ElectOptions& options, std::string& lease) {
  util::FlagSet flags({.command_after_dashes = true, .unexpected_hint = "a command goes after --"});
  flags.addString("lease", lease, "NAMESPACE/NAME",
                  "the coordination.k8s.io/v1 Lease to elect on (created if missing); a bare NAME uses the kubeconfig "
                  "context's namespace");
  flags.addString("identity", options.identity, "ID",
                  "this candidate's identity, unique per process; default: <hostname>_<random>");
  flags.addString("kubeconfig", options.kubeconfig, "FILE",
                  "kubeconfig to use; default: $KUBECONFIG, then the in-cluster service account, then ~/.kube/config");
  flags.addString("context", options.context, "NAME", "kubeconfig context; default: the current context");
  election::addTimingFlags(flags, options.lease_duration, options.renew_deadline, options.retry_period);
  election::addRenewIntervalFlag(flags, options.renew_interval);
  election::addGracePeriodFlag(
      flags, options.grace_period, options.grace_period_set,
      "after SIGTERM, how long COMMAND may take before SIGKILL; default: what the timings leave, lease-duration - "
      "renew-deadline - 10% of lease-duration - the wait for the reap (3s at 15s/10s)\n(need renew-deadline + "
      "grace-period + reap wait + 10% of lease-duration <= lease-duration)");
  log::addFlags(flags, options.log_format, options.log_level);
  return flags;
}

}  // namespace

std::string electUsage() {
  ElectOptions defaults;
  std::string lease;
  return R"(singleton-elect: run for leader of a Kubernetes Lease; optionally run a command only while leading.

Usage:
  singleton-elect --lease NAMESPACE/NAME [--identity ID] [flags] [-- COMMAND [ARGS...]]

Flags:
)" + electFlags(defaults, lease).help() +
         R"(
Durations are Go-style: 500ms, 4s, 1m30s.

Output: one JSON object per line on stdout per event:
  {"ts":"2026-01-02T15:04:05.123Z","event":"started_leading|stopped_leading|new_leader",
   "identity":"<own id>","leader":"<holder>","token":<fencing token>}

Logs (not events) go to stderr: text by default, for people; --log-format json gives one object per line
({"ts","level","logger","msg"}, the Lease as "object", errors as "err", the rest as fields) for a log collector.

Without COMMAND: campaigns until stopped; after losing leadership it campaigns again.

With -- COMMAND: the command runs only while this candidate leads, with SINGLETON_FENCING_TOKEN (and
SINGLETON_IDENTITY, SINGLETON_LEASE) in its environment, in a process group of its own. The moment leadership is
lost (renew-deadline passed without a renewal, the Lease taken or deleted) the group gets SIGTERM, SIGKILL after the
grace period, and singleton-elect exits 1 so a supervisor restarts it. The whole stop ends before any other
candidate may acquire the Lease. If the command exits on its own, the lease is released and singleton-elect exits
with the command's status. If singleton-elect dies in any way (even SIGKILL), the command's group is killed.

Identity: another process writing the Lease under this identity is detected; singleton-elect then stops leading
(without releasing), says so, and exits 3.

Signals: SIGTERM or SIGINT stops the command (if any), releases the lease if leading, and exits 0.
Exit status: 0 stopped by signal; 1 lost leadership or a runtime failure; 2 bad flags or configuration;
3 identity conflict; otherwise the command's own status.
)";
}

util::Result<ElectOptions> parseElectOptions(const std::vector<std::string>& args) {
  ElectOptions options;
  std::string lease;
  auto parsed = electFlags(options, lease).parse(args);
  if (!parsed.ok()) return std::move(parsed).takeError();
  options.help = parsed->help;
  options.version = parsed->version;
  if (options.help || options.version) return options;
  options.command = std::move(parsed->command);

  if (lease.empty()) return usageError("--lease NAMESPACE/NAME is required");
  if (auto slash = lease.find('/'); slash != std::string::npos) {
    options.lease_namespace = lease.substr(0, slash);
    options.lease_name = lease.substr(slash + 1);
    if (!isDnsLabel(options.lease_namespace)) {
      return usageError("--lease: \"" + options.lease_namespace + "\" is not a valid namespace name");
    }
  } else {
    options.lease_name = lease;
  }
  if (!isDnsSubdomain(options.lease_name)) {
    return usageError("--lease: \"" + options.lease_name + "\" is not a valid Lease name (lower-case DNS subdomain)");
  }
  if (options.identity.empty()) options.identity = election::uniqueIdentity();
  election::Timings timings{options.lease_duration, options.renew_deadline, options.retry_period,
                            options.renew_interval, util::Millis(0)};
  if (auto s = election::validateTimings(timings); !s.ok()) return usageError(s.error().message);
  // The command's whole stop must end before a rival may acquire (election/timings.h).
  const util::Millis kill_wait = election::killWait(options.lease_duration, options.renew_deadline);
  if (!options.grace_period_set) {
    options.grace_period = election::defaultGracePeriod(options.lease_duration, options.renew_deadline);
  } else if (options.grace_period + kill_wait > election::stopBudget(options.lease_duration, options.renew_deadline)) {
    return usageError(
        "--grace-period " + util::formatDuration(options.grace_period) + " is too long: renew deadline (" +
        util::formatDuration(options.renew_deadline) + ") + grace period + reap wait (" +
        util::formatDuration(kill_wait) + ") + drift margin (" +
        util::formatDuration(election::driftMargin(options.lease_duration)) +
        ", 10% of the lease) must not exceed lease duration (" + util::formatDuration(options.lease_duration) +
        "); at most " +
        util::formatDuration(election::defaultGracePeriod(options.lease_duration, options.renew_deadline)));
  }
  return options;
}

}  // namespace singleton::cli
