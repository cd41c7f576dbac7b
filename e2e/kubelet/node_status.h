// The Node objects the simulated kubelet registers and the status it reports, as pure functions of the node's
// current state, so the contract is unit-tested without a cluster.
#pragma once

#include <optional>
#include <string>

#include "contract.h"
#include "json_util.h"
#include "kube/lease.h"
#include "util/clock.h"

namespace singleton::sim {

inline constexpr const char* kNodeLeaseNamespace = "kube-node-lease";
inline constexpr int kNodeLeaseDurationSeconds = 40;  // what the kubelet writes

// A complete Node for POST, status included (the apiserver keeps a Node's status on create, as kubelets rely on).
Json nodeObject(const std::string& name, util::WallTime now);
// Every status field we own, for a merge patch of nodes/status. Conditions keep their lastTransitionTime from
// `current` (the node as last seen, may be null) when their status is unchanged; lastHeartbeatTime is `now`.
Json nodeStatus(const std::string& name, const Json& current, util::WallTime now);
// The node's taints without not-ready and unreachable (set by the node-lifecycle controller and admission while
// the node was not Ready), or nullopt when it has none of them.
std::optional<Json> taintsWithoutNotReady(const Json& node);
// The node carries sim.singleton.dev/heartbeat: "stopped".
bool heartbeatStopped(const Json& node);
// The node's Lease in kube-node-lease, owned by the Node (so the garbage collector removes it with the Node).
kube::Lease nodeLease(const std::string& name, const std::string& node_uid, util::WallTime now);

}  // namespace singleton::sim
