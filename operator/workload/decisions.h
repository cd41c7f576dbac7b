// The reconciler's decisions, as pure functions of what it sees (no API, no clock, no memory): the steps in
// reconcile_*.cc read the Writer's current view, ask these, and then write. decisions.cc holds the election, labels,
// pods and hand-off; decisions_status.cc the Service and the status.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "election/handoff.h"
#include "kube/lease.h"
#include "operator/workload/findings.h"
#include "operator/workload/observation.h"
#include "util/result.h"

namespace singleton::op {

// --- Election (docs/design.md steps 3-5) --------------------------------------------------------------------------

enum class Health { kHealthy, kNone, kDeleted, kReplaced, kTerminating, kExited, kNotReady, kScaledDown };
// The reason label of singleton_failovers_total ("deleted", "replaced", ..., "election").
const char* failoverReason(Health health);
// For log lines and Events: "was deleted", "is not Ready", ...
const char* describe(Health health);

// Step 3: the holder named by the Lease exists as the incarnation the Lease recorded, and can lead.
Health holderHealth(const WorkloadView& view);
// A wanted pod of this workload, with a uid, that is available.
bool canLead(const WorkloadView& view, const std::string& name, const Json& pod);
// Step 4: a Ready standby with the current template, lowest ordinal first; else any Ready standby (unless
// `current_only`). `exclude_uid` is the incarnation that is leader now. "" when none.
std::string chooseSuccessor(const WorkloadView& view, const std::string& exclude_uid, bool current_only);
// A pod labelled leader that can lead (the one to keep when the Lease must be written again), else "".
std::string labelledLeaderThatCanLead(const WorkloadView& view);
// Step 7's hand-over: the leader runs an outdated template and every standby has already been replaced.
bool rolloutMovesLeader(const WorkloadView& view);
// The highest fencing token in sight: the Lease's, `remembered` (this replica's memory; -1 = none), the workload's
// status, the pods' annotations. -1 when none.
long long highestTokenSeen(const WorkloadView& view, long long remembered);

// What to do with the singleton.dev/switchover-to request.
struct SwitchoverDecision {
  std::string successor;  // move the Lease to it (the annotation goes once the Lease has moved)
  bool already_leader = false;
  std::string rejection;        // why the request cannot be honoured; "" when it can or there is none
  bool remove_request = false;  // the request is done with (already leader, or rejected)
};
SwitchoverDecision decideSwitchover(const WorkloadView& view, bool holder_healthy);

// --- Labels (step 6) ----------------------------------------------------------------------------------------------

// Which pod should carry the leader label, which pods lose it, whether the target needs its label or token.
struct LabelPlan {
  std::string target;
  std::vector<std::string> demote;
  bool promote = false;
};
// `hold_successor`: WaitForStop with the hand-off still pending, so the holder is not labelled yet (the Service
// follows the label). `released_holder` is demoted even when the view does not show its label.
LabelPlan planLabels(const WorkloadView& view, bool hold_successor, const std::string& released_holder);
// The pods of the workload other than `name` that carry the leader label or a fencing token.
std::vector<std::string> otherLeaderLabelled(const WorkloadView& view, const std::string& name);
// `pod` already is the incarnation `uid`, labelled leader with `token`.
bool labelledLeader(const Json& pod, const std::string& uid, long long token);

// --- Pods (steps 2 and 7) -----------------------------------------------------------------------------------------

// The ordinals below spec.replicas that have no pod of their name (in any state).
std::vector<int> missingOrdinals(const WorkloadView& view);
// Owned pods beyond spec.replicas to delete, highest ordinal first; never the holder (it goes last, once the
// election step has moved the Lease off it).
std::vector<std::string> scaleDownOrder(const WorkloadView& view);
// The rolling update's next deletion, if any: one pod at a time, never fewer Ready standbys than at the start.
struct RolloutStep {
  std::string pod;
  std::string why;
};
std::optional<RolloutStep> nextRolloutStep(const WorkloadView& view);
// The apiserver refused the request itself (invalid, forbidden): retrying it soon will not help.
bool isSpecProblem(util::ErrorCode code);

// --- Hand-off (docs/handoff.md) -----------------------------------------------------------------------------------

// Writes handoff-from/-uid into `next` (the move from `before` to `successor_uid`, "" for a release): the pod that
// must stop first, or "" when nobody can be running as the previous leader or `wait_for_stop` is off.
void recordHandoff(const std::optional<kube::Lease>& before, bool wait_for_stop, const std::string& successor_uid,
                   kube::Lease& next);
// What `pod` (as the API or the cache shows it) proves about the incarnation `from_uid`: gone (another uid), or
// stopped for good; nullopt when it may still run.
std::optional<election::AckedBy> stopEvidence(const Json& pod, const std::string& from_uid);
// The log line and Event of a completed hand-off.
std::string handoffCompleteMessage(const election::HandoffView& handoff, election::AckedBy by);

// --- Service and status (step 8, decisions_status.cc) -------------------------------------------------------------

// The Service to create for spec.service.
Json desiredService(const Workload& workload);
// `service` with what spec.service wants (node ports kept), or nullopt when it already matches.
std::optional<Json> serviceUpdate(const Json& service, const Workload& workload);

struct StatusPlan {
  Json status;                // the whole status as it should be
  bool leader_lost = false;   // the workload showed a leader, now has none, and no hand-off explains it
  bool rollout_done = false;  // the workload showed a rolling update that is over
};
// `now` stamps conditions whose status changed.
StatusPlan desiredStatus(const WorkloadView& view, const Findings& findings, bool wait_for_stop,
                         const std::string& now);
// A pass that created pods leaves the status for the next one, unless leadership moved.
bool deferStatus(const Findings& findings, const Json& desired, const Json& current);
// The merge patch from `current` to `desired` (keys no longer set go as null), or nullopt when equal.
std::optional<Json> statusPatch(const Json& desired, const Json& current);

}  // namespace singleton::op
