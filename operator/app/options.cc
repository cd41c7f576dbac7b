#include "operator/app/options.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "controller/http_server.h"
#include "election/leader_elector.h"
#include "election/timing_flags.h"
#include "kube/config.h"
#include "util/flags.h"

namespace singleton::op {
namespace {

util::Error usageError(const std::string& message) {
  return util::makeError(util::ErrorCode::kInvalidArgument, util::printable(message));
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

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// Fills what the flags left empty, from the pod's environment.
void applyDefaults(Options& options, const Environment& env) {
  if (options.leader_election_namespace.empty()) {
    options.leader_election_namespace = !env.pod_namespace.empty()          ? env.pod_namespace
                                        : !env.in_cluster_namespace.empty() ? env.in_cluster_namespace
                                                                            : kDefaultLeaderElectionNamespace;
  }
  // $POD_NAME is unique in a cluster. Elsewhere the host name is shared by every replica on the host, so it gets a
  // per-process suffix, like controller-runtime's <hostname>_<uuid>.
  if (options.identity.empty() && !env.pod_name.empty()) options.identity = env.pod_name;
  if (options.identity.empty() && !env.hostname.empty()) {
    options.identity = env.instance_suffix.empty() ? env.hostname : env.hostname + "_" + env.instance_suffix;
  }
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
  if (auto s =
          election::validateTimings(election::Timings{options.lease_duration, options.renew_deadline,
                                                      options.retry_period, options.renew_interval, util::Millis(0)});
      !s.ok()) {
    return usageError(s.error().message);
  }
  return {};
}

// The log settings as given, parsed into Options after the flags.
struct LogFlags {
  std::string format = "json";
  std::string level = "info";
};

// The flags, bound to options and log_flags; the same set parses and documents them.
util::FlagSet operatorFlags(Options& options, LogFlags& log_flags) {
  util::FlagSet flags({.dashed_value_is_missing = true});
  auto bind_address = [](std::string& target) {
    return [&target](const std::string& value) -> util::Status {
      if (value != kDisabledAddress) {
        if (auto a = controller::parseBindAddress(value); !a.ok()) return std::move(a).takeError();
      }
      target = value;
      return {};
    };
  };
  flags.addString("kubeconfig", options.kubeconfig, "FILE",
                  "kubeconfig to use; default: $KUBECONFIG, then the in-cluster service account, then ~/.kube/config");
  flags.addString("context", options.context, "NAME", "kubeconfig context; default: the current context");
  flags.addString("namespace", options.watch_namespace, "NS", "watch only this namespace; default: all namespaces");
  flags.addString("leader-election-namespace", options.leader_election_namespace, "NS",
                  "namespace of the leader-election Lease; default: $POD_NAMESPACE, then the in-cluster service "
                  "account's namespace, then " +
                      std::string(kDefaultLeaderElectionNamespace));
  flags.addString("leader-election-id", options.leader_election_id, "NAME",
                  "name of the leader-election Lease (default {default})");
  flags.addString(
      "identity", options.identity, "ID",
      "this replica's identity in the Lease, unique per process; default: $POD_NAME, else <host name>_<random>");
  election::addTimingFlags(flags, options.lease_duration, options.renew_deadline, options.retry_period);
  election::addRenewIntervalFlag(flags, options.renew_interval);
  flags.addFunc("metrics-bind-address", bind_address(options.metrics_bind_address), "ADDR",
                "where /metrics is served (default " + options.metrics_bind_address + "; \"0\" disables)");
  flags.addFunc(
      "health-probe-bind-address", bind_address(options.health_probe_bind_address), "ADDR",
      "where /healthz and /readyz are served (default " + options.health_probe_bind_address + "; \"0\" disables)");
  flags.addString("log-format", log_flags.format, "FORMAT",
                  "json (one object per line) or text (default {default}); logs go to stderr");
  flags.addString("log-level", log_flags.level, "LEVEL", "trace, debug, info, warn, error, off (default {default})");
  flags.addInt("workers", options.workers, 1, 64, "N",
               "concurrent reconciles while leading, 1 to 64 (default {default})");
  return flags;
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
  e.instance_suffix = randomInstanceSuffix();
  return e;
}

std::string randomInstanceSuffix() {
  constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  constexpr int kLength = 10;  // 36^10: collisions among a host's processes are out of the question
  std::random_device device;
  std::uniform_int_distribution<std::size_t> pick(0, kAlphabet.size() - 1);
  std::string suffix;
  for (int i = 0; i < kLength; ++i) suffix += kAlphabet[pick(device)];
  return suffix;
}

std::string usage() {
  Options defaults;
  LogFlags log_defaults;
  return R"(singleton-operator: the SingletonWorkload controller. Runs as several replicas; the one holding the
leader-election Lease reconciles, the others keep warm caches and take over when it goes.

Usage:
  singleton-operator [flags]

Flags:
)" + operatorFlags(defaults, log_defaults).help() +
         R"(
Durations are Go-style: 500ms, 4s, 1m30s. Addresses are HOST:PORT or :PORT (all interfaces).

Losing the Lease is not fatal: the replica stops writing at its renew deadline, stops its workers, keeps its caches
warm and campaigns again.

Endpoints: /healthz answers 500 only when the process is wedged (it leads but its elector has not renewed the Lease
for lease-duration + 20s, or a finished term's workers have not stopped for as long); /readyz answers 503 until the
informers have listed everything once; /metrics is in the Prometheus text format.

Exit status: 0 stopped by SIGTERM or SIGINT (the Lease is released); 1 a runtime failure (a supervisor restarts it);
2 bad flags or configuration, including another process using this replica's identity on the Lease.
)";
}

util::Result<Options> parseOptions(const std::vector<std::string>& args, const Environment& env) {
  Options options;
  LogFlags log_flags;
  auto parsed = operatorFlags(options, log_flags).parse(args);
  if (!parsed.ok()) return std::move(parsed).takeError();
  options.help = parsed->help;
  options.version = parsed->version;
  if (options.help || options.version) return options;

  auto format = log::parseFormat(log_flags.format);
  if (!format.ok()) return usageError("--log-format: " + format.error().message);
  options.log_format = *format;
  auto level = log::parseLevel(log_flags.level);
  if (!level.ok()) return usageError("--log-level: " + level.error().message);
  options.log_level = *level;

  applyDefaults(options, env);
  if (auto s = validate(options); !s.ok()) return std::move(s).takeError();
  return options;
}

}  // namespace singleton::op
