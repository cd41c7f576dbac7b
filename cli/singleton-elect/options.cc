#include "cli/singleton-elect/options.h"

#include <algorithm>
#include <regex>

#include "election/leader_elector.h"
#include "election/timing_flags.h"
#include "util/flags.h"

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
  flags.addString("identity", options.identity, "ID", "this candidate's unique identity (e.g. the pod name); required");
  flags.addString("kubeconfig", options.kubeconfig, "FILE",
                  "kubeconfig to use; default: $KUBECONFIG, then the in-cluster service account, then ~/.kube/config");
  flags.addString("context", options.context, "NAME", "kubeconfig context; default: the current context");
  election::addTimingFlags(flags, options.lease_duration, options.renew_deadline, options.retry_period);
  flags.addDuration("grace-period", options.grace_period, "D",
                    "after SIGTERM, how long COMMAND may take before SIGKILL (default {default})");
  flags.addString("log-level", options.log_level, "LEVEL",
                  "trace, debug, info, warn, error (default {default}); logs go to stderr");
  return flags;
}

}  // namespace

std::string electUsage() {
  ElectOptions defaults;
  std::string lease;
  return R"(singleton-elect: run for leader of a Kubernetes Lease; optionally run a command only while leading.

Usage:
  singleton-elect --lease NAMESPACE/NAME --identity ID [flags] [-- COMMAND [ARGS...]]

Flags:
)" + electFlags(defaults, lease).help() +
         R"(
Durations are Go-style: 500ms, 4s, 1m30s.

Output: one JSON object per line on stdout per event:
  {"ts":"2026-01-02T15:04:05.123Z","event":"started_leading|stopped_leading|new_leader",
   "identity":"<own id>","leader":"<holder>","token":<fencing token>}

With -- COMMAND: the command runs only while this candidate leads, with SINGLETON_FENCING_TOKEN (and
SINGLETON_IDENTITY, SINGLETON_LEASE) in its environment. On loss of leadership it gets SIGTERM (SIGKILL after
the grace period) and singleton-elect exits 1 so a supervisor restarts it. If the command exits on its own,
the lease is released and singleton-elect exits with the command's status.

Signals: SIGTERM or SIGINT stops the command (if any), releases the lease if leading, and exits 0.
Exit status: 0 stopped by signal; 1 lost leadership or a runtime failure; 2 bad flags or configuration;
otherwise the command's own status.
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
  if (options.identity.empty()) return usageError("--identity is required (e.g. the pod or host name)");
  static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(levels.begin(), levels.end(), options.log_level) == levels.end()) {
    return usageError("--log-level: \"" + options.log_level + "\" is not one of trace, debug, info, warn, error, off");
  }
  if (auto s = election::validateTimings(options.lease_duration, options.renew_deadline, options.retry_period);
      !s.ok()) {
    return usageError(s.error().message);
  }
  return options;
}

}  // namespace singleton::cli
