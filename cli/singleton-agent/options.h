// singleton-agent's command line: parsed in one place and tested (tests/unit/agent/agent_options_test.cc).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "util/clock.h"
#include "util/log.h"
#include "util/result.h"

namespace singleton::cli {

struct AgentOptions {
  std::string kubeconfig;     // empty: in-cluster config (kube::loadDefault)
  std::string workload;       // $SINGLETON_WORKLOAD
  std::string pod_name;       // $POD_NAME
  std::string pod_namespace;  // $POD_NAMESPACE
  std::string pod_uid;        // $POD_UID
  util::Millis renew_deadline{10'000};
  util::Millis renew_interval{5'000};
  // Between SIGTERM and SIGKILL of the command. Default (unset): what the Lease's duration leaves, like
  // singleton-elect's (election::defaultGracePeriod); checked against the Lease's duration when it is first seen.
  util::Millis grace_period{0};
  bool grace_period_set = false;
  std::string role_dir;
  std::string listen = "127.0.0.1:0";
  std::string listen_host = "127.0.0.1";  // "" = every interface (":PORT")
  int listen_port = 0;
  // Logs on stderr; text by default, since people read these binaries' stderr (--log-format json for a collector).
  log::Format log_format = log::Format::kText;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::vector<std::string> command;  // after "--"; empty: sidecar mode
  bool help = false;
  bool version = false;

  std::string leaseName() const { return workload + "-leader"; }
};

// Flags over environment: `env` supplies SINGLETON_WORKLOAD, POD_NAME, POD_NAMESPACE and POD_UID when their flags are
// absent. Errors are one line (exit 2); a missing identity names its environment variable.
util::Result<AgentOptions> parseAgentOptions(const std::vector<std::string>& args,
                                             const std::map<std::string, std::string>& env);
// The environment variables parseAgentOptions reads, from this process's environment.
std::map<std::string, std::string> agentEnvironment();
std::string agentUsage();

}  // namespace singleton::cli
