// The hand-off protocol between the operator and the in-pod agent (singleton-agent), as pure functions over the
// workload's Lease `<workload>-leader`. docs/handoff.md has the protocol and its safety argument.
//
// The operator moves the Lease to a successor in one compare-and-swap that also names the previous holder, who must
// stop first (handoff-from, handoff-from-uid). The hand-off is complete when nobody must stop first, or when someone
// recorded, for the current token, that the previous holder has stopped (handoff-acked = leaseTransitions, and
// handoff-acked-by = who). A pod may run the leader's work only while it holds the Lease and the hand-off is complete.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::election {

inline constexpr const char* kLeaderUidAnnotation = "singleton.dev/leader-uid";
inline constexpr const char* kHandoffFromAnnotation = "singleton.dev/handoff-from";
inline constexpr const char* kHandoffFromUidAnnotation = "singleton.dev/handoff-from-uid";
inline constexpr const char* kHandoffAckedAnnotation = "singleton.dev/handoff-acked";
inline constexpr const char* kHandoffAckedByAnnotation = "singleton.dev/handoff-acked-by";

// Who completed a hand-off (the value of handoff-acked-by).
enum class AckedBy {
  kAgent,                 // the previous holder's agent, after its command stopped
  kPodGone,               // the operator: the previous holder's pod (that UID) no longer exists
  kContainersTerminated,  // the operator: every container of the previous holder's pod has terminated
  kLeaseExpired,          // the operator: lease duration passed since its CAS answer arrived, without an ack
};
const char* ackedByName(AckedBy by);  // "agent", "pod-gone", "containers-terminated", "lease-expired"

// What a Lease says about its holder and the hand-off to it. Absent fields read as empty / 0.
struct HandoffView {
  std::string holder;              // spec.holderIdentity: the leader pod's name
  std::string holder_uid;          // annotation singleton.dev/leader-uid
  long long token = 0;             // spec.leaseTransitions: the fencing token
  std::string from;                // annotation singleton.dev/handoff-from: who must stop first ("" = nobody)
  std::string from_uid;            // annotation singleton.dev/handoff-from-uid
  std::string acked_by;            // annotation singleton.dev/handoff-acked-by (informational)
  bool acked = false;              // handoff-acked equals the decimal token: an ack of *this* hand-off
  bool complete = false;           // from is empty, or acked
  int lease_duration_seconds = 0;  // spec.leaseDurationSeconds (0 = absent)
  std::string resource_version;    // metadata.resourceVersion, the CAS precondition of an ack
};

// Never fails: whatever is missing or of the wrong type reads as absent.
HandoffView parseHandoff(const nlohmann::json& lease);

// The pod may run the leader's work: it is the holder (name and UID; an empty UID never matches) and the hand-off to
// it is complete.
bool mayBeActive(const HandoffView& view, const std::string& pod_name, const std::string& pod_uid);
// The pod is the previous holder of an incomplete hand-off (name and UID; an empty UID never matches): once its work
// has stopped it must acknowledge.
bool mustAck(const HandoffView& view, const std::string& pod_name, const std::string& pod_uid);

// The acknowledgement as a JSON merge patch (application/merge-patch+json) that carries metadata.resourceVersion,
// so the apiserver applies it only to the version `view` was read from (409 Conflict otherwise), and that changes
// only handoff-acked (= the view's token) and handoff-acked-by.
nlohmann::json ackMergePatch(const HandoffView& view, AckedBy by);
// The same as a JSON patch (application/json-patch+json): `test` of metadata.resourceVersion, then the two
// annotations (the view of an incomplete hand-off has annotations, so they are added one by one).
nlohmann::json ackJsonPatch(const HandoffView& view, AckedBy by);

// The agent's safety bound, the same inequality as the elector's (timings.h), with the Lease's own duration:
//   renew_deadline + stop_bound + driftMargin(lease_duration) <= lease_duration
// kInvalidArgument naming the numbers when it fails.
util::Status checkAgentTimings(util::Millis lease_duration, util::Millis renew_deadline, util::Millis stop_bound);

}  // namespace singleton::election
