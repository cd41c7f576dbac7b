// The election, label, pod and hand-off decisions (decisions.h). Pure: the steps that act on them are in
// reconcile_*.cc.
#include "operator/workload/decisions.h"

#include <algorithm>
#include <climits>
#include <utility>

namespace singleton::op {
namespace {

void eraseAcks(Json& annotations) {
  annotations.erase(election::kHandoffAckedAnnotation);
  annotations.erase(election::kHandoffAckedByAnnotation);
}

// No process of `pod` can run as the previous leader, and none will start: a Failed or Succeeded pod never runs a
// container again, and a terminating pod's containers are not restarted, so all of them terminated is final. All
// terminated in a pod that is neither does not count: with restartPolicy Always the kubelet restarts them, and a
// restart it has begun but not reported may run an agent that read the Lease before the move (that agent acks at
// once after the move instead). What remains: a restart begun before the deletion and not yet reported when the
// kubelet reports the others terminated (docs/handoff.md).
bool stoppedForGood(const Json& pod) { return hasExited(pod) || (isTerminating(pod) && containersTerminated(pod)); }

}  // namespace

const char* failoverReason(Health health) {
  switch (health) {
    case Health::kDeleted:
      return "deleted";
    case Health::kReplaced:
      return "replaced";
    case Health::kTerminating:
      return "terminating";
    case Health::kExited:
      return "failed";
    case Health::kNotReady:
      return "notready";
    case Health::kScaledDown:
      return "scaledown";
    default:
      return "election";
  }
}

const char* describe(Health health) {
  switch (health) {
    case Health::kDeleted:
      return "was deleted";
    case Health::kReplaced:
      return "was replaced by another pod of the same name";
    case Health::kTerminating:
      return "is terminating";
    case Health::kExited:
      return "has exited";
    case Health::kNotReady:
      return "is not Ready";
    case Health::kScaledDown:
      return "is being scaled down";
    default:
      return "is healthy";
  }
}

Health holderHealth(const WorkloadView& view) {
  const std::string holder = view.holder();
  if (holder.empty()) return Health::kNone;
  const Json* pod = view.pod(holder);
  if (!pod) return Health::kDeleted;
  const std::string uid = metaString(*pod, "uid");
  if (!view.owns(*pod) || uid.empty() || uid != view.leaderUid()) return Health::kReplaced;
  if (isTerminating(*pod)) return Health::kTerminating;
  if (hasExited(*pod)) return Health::kExited;
  if (!isReady(*pod)) return Health::kNotReady;
  if (!view.wanted(holder)) return Health::kScaledDown;
  return Health::kHealthy;
}

bool canLead(const WorkloadView& view, const std::string& name, const Json& pod) {
  return view.owns(pod) && !metaString(pod, "uid").empty() && view.wanted(name) && isAvailable(pod);
}

std::string chooseSuccessor(const WorkloadView& view, const std::string& exclude_uid, bool current_only) {
  std::string best;
  int best_ordinal = INT_MAX;
  bool best_current = false;
  for (const auto& [name, pod] : view.pods) {
    if (!canLead(view, name, pod) || metaString(pod, "uid") == exclude_uid) continue;
    const bool current = view.current(pod);
    if (current_only && !current) continue;
    const int ordinal = *ordinalOf(name, view.workload.name);
    if (best.empty() || (current && !best_current) || (current == best_current && ordinal < best_ordinal)) {
      best = name;
      best_ordinal = ordinal;
      best_current = current;
    }
  }
  return best;
}

std::string labelledLeaderThatCanLead(const WorkloadView& view) {
  std::string labelled;
  for (const auto& [name, pod] : view.pods) {
    if (labelOf(pod, kLabelRole) == kRoleLeader && canLead(view, name, pod)) labelled = name;
  }
  return labelled;
}

bool rolloutMovesLeader(const WorkloadView& view) {
  const Json* holder = view.pod(view.holder());
  if (!holder || view.current(*holder)) return false;
  for (int i = 0; i < view.workload.replicas; ++i) {
    const std::string name = view.workload.podName(i);
    if (name == view.holder()) continue;
    const Json* pod = view.pod(name);
    if (!pod || !view.owns(*pod) || !view.current(*pod)) return false;
  }
  return true;
}

long long highestTokenSeen(const WorkloadView& view, long long remembered) {
  long long highest = view.lease ? view.token() : -1;
  highest = std::max(highest, remembered);
  if (const auto it = view.workload.status.find("fencingToken");
      it != view.workload.status.end() && it->is_number_integer()) {
    highest = std::max(highest, it->get<long long>());
  }
  for (const auto& [name, pod] : view.pods) {
    if (const auto token = integerAnnotationOf(pod, kAnnotationFencingToken)) highest = std::max(highest, *token);
  }
  return highest;
}

SwitchoverDecision decideSwitchover(const WorkloadView& view, bool holder_healthy) {
  SwitchoverDecision decision;
  const std::string& target = view.workload.switchover_to;
  if (target.empty()) return decision;
  if (holder_healthy && target == view.holder()) {
    decision.already_leader = true;
  } else if (const Json* pod = view.pod(target); !pod) {
    decision.rejection = "no pod " + target + " belongs to this workload";
  } else if (!view.owns(*pod) || !view.wanted(target)) {
    decision.rejection = target + " is not a replica of this workload";
  } else if (!isAvailable(*pod)) {
    decision.rejection = target + " is not Ready";
  } else {
    decision.successor = target;
    return decision;
  }
  decision.remove_request = true;
  return decision;
}

LabelPlan planLabels(const WorkloadView& view, bool hold_successor, const std::string& released_holder) {
  LabelPlan plan;
  const std::string holder = view.holder();
  const Json* holder_pod = view.pod(holder);
  // WaitForStop: the successor is labelled only once the previous holder is known stopped (the Service follows the
  // label, so it must not reach the successor while the old leader may still serve).
  if (holder_pod && view.owns(*holder_pod) && metaString(*holder_pod, "uid") == view.leaderUid() &&
      isAvailable(*holder_pod) && !hold_successor) {
    plan.target = holder;
  }
  for (const auto& [name, pod] : view.pods) {
    if (name == plan.target) continue;
    const std::string role = labelOf(pod, kLabelRole);
    const bool leaderish = role == kRoleLeader || annotationOf(pod, kAnnotationFencingToken).has_value();
    if (leaderish || (view.owns(pod) && role != kRoleStandby) || name == released_holder) plan.demote.push_back(name);
  }
  if (!plan.target.empty()) {
    const Json& pod = *view.pod(plan.target);
    plan.promote =
        labelOf(pod, kLabelRole) != kRoleLeader ||
        annotationOf(pod, kAnnotationFencingToken) != std::optional<std::string>(std::to_string(view.token()));
  }
  return plan;
}

std::vector<std::string> otherLeaderLabelled(const WorkloadView& view, const std::string& name) {
  std::vector<std::string> others;
  for (const auto& [item_name, item] : view.pods) {
    if (item_name == name || labelOf(item, kLabelWorkload) != view.workload.name) continue;
    if (labelOf(item, kLabelRole) == kRoleLeader || annotationOf(item, kAnnotationFencingToken)) {
      others.push_back(item_name);
    }
  }
  return others;
}

bool labelledLeader(const Json& pod, const std::string& uid, long long token) {
  return metaString(pod, "uid") == uid && labelOf(pod, kLabelRole) == kRoleLeader &&
         annotationOf(pod, kAnnotationFencingToken) == std::optional<std::string>(std::to_string(token));
}

std::vector<int> missingOrdinals(const WorkloadView& view) {
  std::vector<int> missing;
  for (int i = 0; i < view.workload.replicas; ++i) {
    // A pod of that name in any state counts: a terminating one is replaced once it is gone (its deletion event
    // brings us back), so two incarnations never run at once.
    if (!view.pods.contains(view.workload.podName(i))) missing.push_back(i);
  }
  return missing;
}

std::vector<std::string> scaleDownOrder(const WorkloadView& view) {
  std::vector<std::pair<int, std::string>> excess;
  for (const auto& [name, pod] : view.pods) {
    if (!view.owns(pod) || isTerminating(pod) || view.wanted(name) || name == view.holder()) continue;
    excess.emplace_back(ordinalOf(name, view.workload.name).value_or(INT_MAX), name);
  }
  std::sort(excess.rbegin(), excess.rend());
  std::vector<std::string> names;
  for (auto& [ordinal, name] : excess) names.push_back(std::move(name));
  return names;
}

std::optional<RolloutStep> nextRolloutStep(const WorkloadView& view) {
  const Workload& w = view.workload;
  const std::string holder = view.holder();
  std::string victim;  // the outdated standby with the highest ordinal
  bool replacement_starting = false;
  for (int i = 0; i < w.replicas; ++i) {
    const std::string name = w.podName(i);
    const Json* pod = view.pod(name);
    // A pod is missing or terminating: a replacement is under way; one at a time.
    if (!pod || !view.owns(*pod) || isTerminating(*pod)) return std::nullopt;
    if (name == holder) continue;
    if (!view.current(*pod)) {
      victim = name;
    } else if (!isAvailable(*pod)) {
      replacement_starting = true;
    }
  }
  if (!victim.empty()) {
    // Wait for the last replacement to be Ready: never fewer Ready standbys than the rollout started with.
    if (replacement_starting) return std::nullopt;
    return RolloutStep{victim, "rolling update to template " + w.template_hash};
  }
  // Only the leader is outdated. With standbys, the election step hands over to an updated one once it is Ready
  // (and the old leader is then an outdated standby, replaced above). A single replica has nobody to hand over
  // to, so it is replaced in place.
  if (w.replicas == 1 && !holder.empty()) {
    const Json* pod = view.pod(holder);
    if (pod && view.owns(*pod) && !view.current(*pod)) {
      return RolloutStep{holder, "rolling update to template " + w.template_hash + " (single replica)"};
    }
  }
  return std::nullopt;
}

bool isSpecProblem(util::ErrorCode code) {
  // The apiserver refused what we asked for (an invalid template, a quota): retrying the same request soon will not
  // help, so the reconcile reports it on the status and retries with backoff.
  return code == util::ErrorCode::kInvalid || code == util::ErrorCode::kBadRequest ||
         code == util::ErrorCode::kForbidden;
}

void recordHandoff(const std::optional<kube::Lease>& before, bool wait_for_stop, const std::string& successor_uid,
                   kube::Lease& next) {
  Json& metadata = next.raw["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  Json& annotations = metadata["annotations"];
  if (!annotations.is_object()) annotations = Json::object();
  if (!wait_for_stop) {
    // Immediate: the label moves at once and nothing waits; the Lease says so (absent = nobody to wait for).
    annotations.erase(election::kHandoffFromAnnotation);
    annotations.erase(election::kHandoffFromUidAnnotation);
    eraseAcks(annotations);
    return;
  }
  std::string from;
  std::string from_uid;
  if (before) {
    const election::HandoffView view = election::parseHandoff(before->raw);
    // Safety: who may still be running as the leader. While the current hand-off is incomplete its holder has never
    // been active (its agent starts only once it is complete), but the pod it waits for may still run: that one must
    // stop first, not the holder. Once it is complete, the holder may be active.
    if (view.complete) {
      from = view.holder;
      from_uid = view.holder_uid;
    } else {
      from = view.from;
      from_uid = view.from_uid;
    }
  }
  // Nobody can be running as the previous leader: there was none, it is the successor itself (the same incarnation
  // keeps leading under the new token; its agent restarts COMMAND with it), or it had no UID (an agent never acts
  // for a Lease without one).
  if (from.empty() || from_uid.empty() || from_uid == successor_uid) {
    from.clear();
    from_uid.clear();
  }
  annotations[election::kHandoffFromAnnotation] = from;
  annotations[election::kHandoffFromUidAnnotation] = from_uid;
  // An ack names its token, so an old one never counts for the new token; dropped anyway, so that a release (which
  // keeps the token) cannot inherit one.
  eraseAcks(annotations);
}

std::optional<election::AckedBy> stopEvidence(const Json& pod, const std::string& from_uid) {
  // A UID never comes back: another one under the name means that incarnation is gone.
  if (metaString(pod, "uid") != from_uid) return election::AckedBy::kPodGone;
  if (stoppedForGood(pod)) return election::AckedBy::kContainersTerminated;
  return std::nullopt;
}

std::string handoffCompleteMessage(const election::HandoffView& handoff, election::AckedBy by) {
  return "hand-off to " + handoff.holder + " (fencing token " + std::to_string(handoff.token) +
         ") complete: " + handoff.from + " " +
         (by == election::AckedBy::kPodGone                ? "is gone"
          : by == election::AckedBy::kContainersTerminated ? "has no running container"
                                                           : "outlived its lease");
}

}  // namespace singleton::op
