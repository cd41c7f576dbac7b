// The names tests use to command the simulated kubelet (the contract is described in README.md).
#pragma once

namespace singleton::sim {

inline constexpr const char* kReadyAnnotation = "sim.singleton.dev/ready";          // on a pod: "false" fails readiness
inline constexpr const char* kPhaseAnnotation = "sim.singleton.dev/phase";          // on a pod: "Failed" | "Succeeded"
inline constexpr const char* kHeartbeatAnnotation = "sim.singleton.dev/heartbeat";  // on a Node: "stopped"
inline constexpr const char* kManagedLabel = "sim.singleton.dev/kubelet";           // on our Nodes: "true"
inline constexpr const char* kSimulatedFailure = "SimulatedFailure";                // reason of failed conditions

}  // namespace singleton::sim
