#include "support/elect_candidate.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "support/cluster_fixture.h"

namespace singleton::testing {

std::string electBinary() {
  const char* override_binary = std::getenv("SINGLETON_ELECT_BINARY");
  return override_binary != nullptr ? override_binary : std::string(SINGLETON_BINARY_DIR) + "/cli/singleton-elect";
}

std::unique_ptr<Process> electCandidate(const std::string& lease, const std::string& identity,
                                        const std::vector<std::string>& command, const std::string& kubeconfig,
                                        const ElectTimings& timings) {
  std::vector<std::string> argv = {electBinary(),
                                   "--lease",
                                   lease,
                                   "--kubeconfig",
                                   kubeconfig.empty() ? cluster().kubeconfigPath().string() : kubeconfig,
                                   "--lease-duration",
                                   timings.lease_duration,
                                   "--renew-deadline",
                                   timings.renew_deadline,
                                   "--retry-period",
                                   timings.retry_period};
  if (!identity.empty()) {
    argv.push_back("--identity");
    argv.push_back(identity);
  }
  if (!command.empty()) {
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
  }
  return std::make_unique<Process>(argv);
}

bool isElectEvent(const std::string& line, const std::string& event) {
  const auto j = nlohmann::json::parse(line, nullptr, false);
  return j.is_object() && j.value("event", "") == event;
}

}  // namespace singleton::testing
