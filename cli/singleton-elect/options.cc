#include "cli/singleton-elect/options.h"

#include <functional>
#include <map>
#include <regex>

#include "election/leader_elector.h"
#include "util/duration.h"

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

}  // namespace

std::string electUsage() {
  return R"(singleton-elect: run for leader of a Kubernetes Lease; optionally run a command only while leading.

Usage:
  singleton-elect --lease NAMESPACE/NAME --identity ID [flags] [-- COMMAND [ARGS...]]

Flags:
  --lease NAMESPACE/NAME  the coordination.k8s.io/v1 Lease to elect on (created if missing); a bare NAME uses
                          the kubeconfig context's namespace
  --identity ID           this candidate's unique identity (e.g. the pod name); required
  --kubeconfig FILE       kubeconfig to use; default: $KUBECONFIG, then the in-cluster service account,
                          then ~/.kube/config
  --context NAME          kubeconfig context; default: the current context
  --lease-duration D      how long followers wait after the leader's last renewal (default 15s)
  --renew-deadline D      how long the leader retries renewing before it steps down (default 10s)
  --retry-period D        interval between renewals (default 2s)
                          (need lease-duration > renew-deadline > 1.2 x retry-period)
  --grace-period D        after SIGTERM, how long COMMAND may take before SIGKILL (default 10s)
  --log-level LEVEL       trace, debug, info, warn, error (default info); logs go to stderr
  -h, --help              this text
  --version               the version

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
  std::map<std::string, std::function<util::Status(const std::string&)>> with_value;
  auto duration_flag = [](util::Millis& target, const std::string& name) {
    return [&target, name](const std::string& value) -> util::Status {
      auto d = util::parseDuration(value);
      if (!d.ok()) return usageError("--" + name + ": " + d.error().message);
      target = *d;
      return {};
    };
  };
  auto string_flag = [](std::string& target) {
    return [&target](const std::string& value) -> util::Status {
      target = value;
      return {};
    };
  };
  with_value["lease"] = string_flag(lease);
  with_value["identity"] = string_flag(options.identity);
  with_value["kubeconfig"] = string_flag(options.kubeconfig);
  with_value["context"] = string_flag(options.context);
  with_value["log-level"] = string_flag(options.log_level);
  with_value["lease-duration"] = duration_flag(options.lease_duration, "lease-duration");
  with_value["renew-deadline"] = duration_flag(options.renew_deadline, "renew-deadline");
  with_value["retry-period"] = duration_flag(options.retry_period, "retry-period");
  with_value["grace-period"] = duration_flag(options.grace_period, "grace-period");

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      options.command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      if (options.command.empty()) return usageError("-- must be followed by a command");
      break;
    }
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      return options;
    }
    if (arg == "--version") {
      options.version = true;
      return options;
    }
    if (arg.rfind("--", 0) != 0) return usageError("unexpected argument \"" + arg + "\" (a command goes after --)");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto flag = with_value.find(name);
    if (flag == with_value.end()) return usageError("unknown flag --" + name + " (see --help)");
    if (!value) {
      if (i + 1 >= args.size()) return usageError("flag --" + name + " needs a value");
      value = args[++i];
    }
    if (auto s = flag->second(*value); !s.ok()) return std::move(s).takeError();
  }

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
