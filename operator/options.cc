#include "operator/options.h"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "election/leader_elector.h"
#include "kube/config.h"
#include "operator/http_server.h"
#include "util/duration.h"

namespace singleton::op {
namespace {

using Setter = std::function<util::Status(const std::string&)>;

util::Error usageError(const std::string& message) {
  return util::makeError(util::ErrorCode::kInvalidArgument, message);
}

bool isDnsLabel(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  return s.size() <= 63 && std::regex_match(s, re);
}

bool isDnsSubdomain(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*");
  return s.size() <= 253 && std::regex_match(s, re);
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string trim(std::string text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

Setter stringFlag(std::string& target) {
  return [&target](const std::string& value) -> util::Status {
    target = value;
    return {};
  };
}

Setter durationFlag(util::Millis& target, const std::string& name) {
  return [&target, name](const std::string& value) -> util::Status {
    auto d = util::parseDuration(value);
    if (!d.ok()) return usageError("--" + name + ": " + d.error().message);
    target = *d;
    return {};
  };
}

Setter bindAddressFlag(std::string& target, const std::string& name) {
  return [&target, name](const std::string& value) -> util::Status {
    if (value != kDisabledAddress) {
      if (auto a = parseBindAddress(value); !a.ok()) return usageError("--" + name + ": " + a.error().message);
    }
    target = value;
    return {};
  };
}

Setter workersFlag(int& target) {
  return [&target](const std::string& value) -> util::Status {
    int n = 0;
    const auto parsed = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || parsed.ec != std::errc() || parsed.ptr != value.data() + value.size() || n < 1 || n > 64) {
      return usageError("--workers: \"" + value + "\" is not a number from 1 to 64");
    }
    target = n;
    return {};
  };
}

// Fills what the flags left empty, from the pod's environment.
void applyDefaults(Options& options, const Environment& env) {
  if (options.leader_election_namespace.empty()) {
    options.leader_election_namespace = !env.pod_namespace.empty()          ? env.pod_namespace
                                        : !env.in_cluster_namespace.empty() ? env.in_cluster_namespace
                                                                            : kDefaultLeaderElectionNamespace;
  }
  if (options.identity.empty()) options.identity = !env.pod_name.empty() ? env.pod_name : env.hostname;
}

util::Status validate(const Options& options) {
  if (!options.watch_namespace.empty() && !isDnsLabel(options.watch_namespace)) {
    return usageError("--namespace: \"" + options.watch_namespace + "\" is not a valid namespace name");
  }
  if (!isDnsLabel(options.leader_election_namespace)) {
    return usageError("--leader-election-namespace: \"" + options.leader_election_namespace +
                      "\" is not a valid namespace name");
  }
  if (!isDnsSubdomain(options.leader_election_id)) {
    return usageError("--leader-election-id: \"" + options.leader_election_id +
                      "\" is not a valid Lease name (lower-case DNS subdomain)");
  }
  if (options.identity.empty()) {
    return usageError("--identity is empty and neither $POD_NAME nor the host name is set");
  }
  if (auto s = election::validateTimings(options.lease_duration, options.renew_deadline, options.retry_period);
      !s.ok()) {
    return usageError(s.error().message);
  }
  return {};
}

}  // namespace

Environment readEnvironment() {
  Environment e;
  e.pod_namespace = env("POD_NAMESPACE");
  e.pod_name = env("POD_NAME");
  if (std::ifstream file(kube::InClusterPaths{}.namespace_file); file) {
    std::stringstream text;
    text << file.rdbuf();
    e.in_cluster_namespace = trim(text.str());
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) e.hostname = host;
  return e;
}

std::string usage() {
  return R"(singleton-operator: the SingletonWorkload controller. Runs as several replicas; the one holding the
leader-election Lease reconciles, the others keep warm caches and take over when it goes.

Usage:
  singleton-operator [flags]

Flags:
  --kubeconfig FILE                   kubeconfig to use; default: $KUBECONFIG, then the in-cluster service
                                      account, then ~/.kube/config
  --context NAME                      kubeconfig context; default: the current context
  --namespace NS                      watch only this namespace; default: all namespaces
  --leader-election-namespace NS      namespace of the leader-election Lease; default: $POD_NAMESPACE, then the
                                      in-cluster service account's namespace, then singleton-system
  --leader-election-id NAME           name of the leader-election Lease (default singleton-operator)
  --identity ID                       this replica's identity in the Lease; default: $POD_NAME, then the host name
  --lease-duration D                  how long followers wait after the leader's last renewal (default 15s)
  --renew-deadline D                  how long the leader retries renewing before it steps down (default 10s)
  --retry-period D                    interval between renewals (default 2s)
                                      (need lease-duration > renew-deadline > 1.2 x retry-period)
  --metrics-bind-address ADDR         where /metrics is served (default :8080; "0" disables)
  --health-probe-bind-address ADDR    where /healthz and /readyz are served (default :8081; "0" disables)
  --log-format FORMAT                 json (one object per line) or text (default json); logs go to stderr
  --log-level LEVEL                   trace, debug, info, warn, error, off (default info)
  --workers N                         concurrent reconciles while leading, 1 to 64 (default 2)
  -h, --help                          this text
  --version                           the version

Durations are Go-style: 500ms, 4s, 1m30s. Addresses are HOST:PORT or :PORT (all interfaces).

Endpoints: /healthz answers 500 when this replica leads but its elector has not renewed the Lease for
lease-duration + 20s; /readyz answers 503 until the informers have listed everything once; /metrics is in the
Prometheus text format.

Exit status: 0 stopped by SIGTERM or SIGINT (the Lease is released); 1 lost leadership or a runtime failure (a
supervisor restarts it); 2 bad flags or configuration.
)";
}

util::Result<Options> parseOptions(const std::vector<std::string>& args, const Environment& env) {
  Options options;
  std::string log_format = "json";
  std::string log_level = "info";
  std::map<std::string, Setter> flags;
  flags["kubeconfig"] = stringFlag(options.kubeconfig);
  flags["context"] = stringFlag(options.context);
  flags["namespace"] = stringFlag(options.watch_namespace);
  flags["leader-election-namespace"] = stringFlag(options.leader_election_namespace);
  flags["leader-election-id"] = stringFlag(options.leader_election_id);
  flags["identity"] = stringFlag(options.identity);
  flags["lease-duration"] = durationFlag(options.lease_duration, "lease-duration");
  flags["renew-deadline"] = durationFlag(options.renew_deadline, "renew-deadline");
  flags["retry-period"] = durationFlag(options.retry_period, "retry-period");
  flags["metrics-bind-address"] = bindAddressFlag(options.metrics_bind_address, "metrics-bind-address");
  flags["health-probe-bind-address"] = bindAddressFlag(options.health_probe_bind_address, "health-probe-bind-address");
  flags["log-format"] = stringFlag(log_format);
  flags["log-level"] = stringFlag(log_level);
  flags["workers"] = workersFlag(options.workers);

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      return options;
    }
    if (arg == "--version") {
      options.version = true;
      return options;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) return usageError("unexpected argument \"" + arg + "\"");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto flag = flags.find(name);
    if (flag == flags.end()) return usageError("unknown flag --" + name + " (see --help)");
    if (!value) {
      // "--namespace --workers 3" is a forgotten value, not a namespace called "--workers".
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)
        return usageError("flag --" + name + " needs a value");
      value = args[++i];
    }
    if (auto s = flag->second(*value); !s.ok()) return std::move(s).takeError();
  }

  auto format = log::parseFormat(log_format);
  if (!format.ok()) return usageError("--log-format: " + format.error().message);
  options.log_format = *format;
  auto level = log::parseLevel(log_level);
  if (!level.ok()) return usageError("--log-level: " + level.error().message);
  options.log_level = *level;

  applyDefaults(options, env);
  if (auto s = validate(options); !s.ok()) return std::move(s).takeError();
  return options;
}

}  // namespace singleton::op
