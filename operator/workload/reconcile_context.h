// What one reconcile knows about one workload: the observed objects (updated in place by every write it makes, so
// later steps and the status see the result), and what it found on the way. Internal to the reconciler.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/events.h"
#include "controller/write_gate.h"
#include "kube/lease.h"
#include "operator/workload/workload.h"

namespace singleton::op {

inline const std::string kMetricFailoverDuration = "singleton_failover_duration_seconds";
inline const std::string kHelpFailoverDuration =
    "Seconds from the first sign that a workload's leader is unhealthy (or a switchover/rollout decision) to its "
    "successor being labelled leader.";
inline const std::string kMetricFailovers = "singleton_failovers_total";
inline const std::string kHelpFailovers = "Leadership moves from one pod to another, by reason.";
inline const std::string kMetricPromotions = "singleton_promotions_total";
inline const std::string kHelpPromotions =
    "Pods labelled leader, by how the other pods' labels were checked first: cache (complete up to this replica's "
    "leadership and its own label writes) or api (each pod read again).";
inline const std::string kMetricFencingToken = "singleton_workload_fencing_token";
inline const std::string kHelpFencingToken = "The fencing token (leaseTransitions) of each workload's Lease.";
// Error.reason of the self-fencing refusal.
inline const std::string kReasonStaleTerm = "StaleOperatorTerm";
// Error.reason of a fenced pod write the apiserver refused (its `test` failed): the pod is not as this term left it.
inline const std::string kReasonFenced = "FencedWriteRefused";

struct Context {
  Context(const controller::WriteGate& g, Workload w)
      : gate(g), workload(std::move(w)), wait_for_stop(workload.effectiveHandoff() == HandoffMode::kWaitForStop) {}

  const controller::WriteGate& gate;
  Workload workload;
  std::string workload_version;  // metadata.resourceVersion as observed
  // Every pod labelled singleton.dev/workload=<name>, ours or not, by name.
  std::map<std::string, Json> pods;
  std::optional<kube::Lease> lease;
  std::optional<Json> service;
  // Revisions that decide whether `pods` can be trusted for leader labels without reading the API (promote()): the
  // pod cache's position before `pods` was read from it, and that of this replica's last leader-label write on the
  // workload's pods before this reconcile (0 = unknown / none).
  std::uint64_t pods_cache_revision = 0;
  std::uint64_t labels_written_at = 0;
  // A label write of ours on the workload had an unknown outcome (no answer, a timeout, a 5xx): it may have been
  // applied, and no read from the API has shown the pods since. The cache cannot be trusted for leader labels.
  bool labels_unconfirmed = false;
  // Pods whose entry in `pods` is an answer of the API to this reconcile (a read, a stamp, a demotion): fresh, and
  // not changed since by an earlier operator term (the label fence).
  std::set<std::string> confirmed;

  // Hand-off (reconcile_handoff.cc): whether the successor's label waits for the previous holder to stop, and
  // whether the Lease's hand-off is still incomplete after this reconcile tried to complete it.
  bool wait_for_stop = false;
  bool handoff_pending = false;
  // Look again after this long (the earliest instant a decision changes by itself, e.g. a lease expiry).
  std::optional<util::Millis> requeue_after;

  // Findings.
  std::string leader;            // the pod labelled leader when the labels step finished; "" = none
  std::string released_holder;   // the holder this reconcile took the Lease from, leaving nobody leading
  bool created_pods = false;     // this pass created pods: their first changes are moments away
  bool status_deferred = false;  // so the status was left for the next pass
  std::string problem_reason;    // a spec problem for the Ready condition (e.g. PodCreateFailed)
  std::string problem_message;
  std::optional<util::Error> deferred_error;  // finish the reconcile (status), then retry with backoff
  struct PendingEvent {
    controller::EventType type;
    std::string reason;
    std::string message;
  };
  std::vector<PendingEvent> events;  // sent when the reconcile ends

  const Json* pod(const std::string& name) const {
    const auto it = pods.find(name);
    return it == pods.end() ? nullptr : &it->second;
  }
  std::string holder() const { return lease ? lease->spec.holder_identity.value_or("") : ""; }
  long long token() const { return lease ? lease->spec.lease_transitions.value_or(0) : 0; }
  long long term() const { return gate.term().value(); }
  std::string leaderUid() const { return lease ? annotationOf(lease->raw, kAnnotationLeaderUid).value_or("") : ""; }
  // A pod this workload controls (ownerReference to its uid).
  bool owns(const Json& pod_object) const { return isControlledBy(pod_object, workload.uid); }
  // Ordinal within spec.replicas.
  bool wanted(const std::string& name) const {
    const auto ordinal = ordinalOf(name, workload.name);
    return ordinal && *ordinal < workload.replicas;
  }
  bool current(const Json& pod_object) const {
    return annotationOf(pod_object, kAnnotationTemplateHash).value_or("") == workload.template_hash;
  }
  void requeueAfter(util::Millis after) {
    if (!requeue_after || after < *requeue_after) requeue_after = after;
  }
  void problem(std::string reason, std::string message) {
    if (!problem_reason.empty()) return;  // the first problem is the one to fix first
    problem_reason = std::move(reason);
    problem_message = std::move(message);
  }
};

// The operator term a workload Lease records (0 when absent or unreadable).
long long operatorTermOf(const kube::Lease& lease);

}  // namespace singleton::op
