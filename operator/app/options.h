// singleton-operator's command line, parsed and validated in one place (and tested), like controller-runtime's flags.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/result.h"

namespace singleton::op {

struct Options {
  std::string kubeconfig;                 // empty: $KUBECONFIG, then in-cluster, then ~/.kube/config
  std::string context;                    // empty: the kubeconfig's current context
  std::string watch_namespace;            // empty: all namespaces
  std::string leader_election_namespace;  // defaulted from the environment (see Environment)
  std::string leader_election_id = "singleton-operator";
  std::string identity;  // defaulted from the environment
  util::Millis lease_duration{15'000};
  util::Millis renew_deadline{10'000};
  util::Millis retry_period{2'000};
  util::Millis renew_interval{0};                   // 0: election::defaultRenewInterval(), a third of the lease
  std::string metrics_bind_address = ":8080";       // "0" disables
  std::string health_probe_bind_address = ":8081";  // "0" disables
  log::Format log_format = log::Format::kJson;
  spdlog::level::level_enum log_level = spdlog::level::info;
  int workers = 2;
  bool help = false;
  bool version = false;
};

// What the defaults are drawn from; read once from the process, given directly in tests.
struct Environment {
  std::string pod_namespace;         // $POD_NAMESPACE (downward API)
  std::string pod_name;              // $POD_NAME (downward API)
  std::string in_cluster_namespace;  // the service account's namespace file, "" when absent
  std::string hostname;
  // Random, drawn once per process: with the host name it makes the default identity unique per process where
  // $POD_NAME is not set (several replicas on one VM or laptop must not share an identity).
  std::string instance_suffix;
};
Environment readEnvironment();

inline constexpr const char* kDefaultLeaderElectionNamespace = "singleton-system";
inline constexpr const char* kDisabledAddress = "0";

// A random suffix of lower-case letters and digits, for Environment::instance_suffix.
std::string randomInstanceSuffix();

// Accepts "--flag value" and "--flag=value". An error is one readable line naming the flag.
util::Result<Options> parseOptions(const std::vector<std::string>& args, const Environment& env);
std::string usage();

}  // namespace singleton::op
