// singleton-elect candidates for integration tests, on the shared local cluster with short timings (4s/3s/1s, which
// keep the suites fast and the timing bounds valid).
//
//   auto a = electCandidate("default/my-lease", "cand-a");                              // no command
//   auto b = electCandidate("default/my-lease", "cand-b", {"sh", "-c", "exec sleep 100"});
//   b->waitForLine([](auto& l) { return isElectEvent(l, "started_leading"); }, 20s);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace singleton::testing {

// The elector's timings as singleton-elect flags. The short default keeps suites fast; a test that asserts that a
// leader is never deposed uses kSteadyTimings, since under a loaded sanitizer run one apiserver answer can take longer
// than a second (the request budget at a 1 s retry period) and a 3 s renew deadline then ends a healthy term.
struct ElectTimings {
  std::string lease_duration = "4s";
  std::string renew_deadline = "3s";
  std::string retry_period = "1s";
};
inline const ElectTimings kSteadyTimings{"10s", "8s", "2s"};

// ${SINGLETON_BINARY_DIR}/cli/singleton-elect, or $SINGLETON_ELECT_BINARY (to show another build, e.g. main's, fail).
std::string electBinary();

// A candidate on `lease` (NAMESPACE/NAME). An empty `identity` leaves --identity out (the default identity); an empty
// `kubeconfig` is the cluster's own; `command` runs while it leads (none when empty).
std::unique_ptr<Process> electCandidate(const std::string& lease, const std::string& identity,
                                        const std::vector<std::string>& command = {},
                                        const std::string& kubeconfig = "", const ElectTimings& timings = {});

// Whether `line` is singleton-elect's JSON event line of that kind ("started_leading", "new_leader", ...).
bool isElectEvent(const std::string& line, const std::string& event);

}  // namespace singleton::testing
