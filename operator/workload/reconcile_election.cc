// Steps 3-6 of docs/design.md: is the Lease's holder a healthy leader; if not (or a switchover or rollout wants it
// moved), choose a successor and move the Lease first (compare-and-swap, token+1); then make the pod labels follow
// the Lease, demoting every other pod before promoting the holder.
//
// Why this never labels two pods leader: a pod is only promoted by promote(), after every other pod of the workload
// that carries the label has been demoted, each demotion confirmed by the API (or NotFound). Which pods carry it is
// read from the pod cache when that cache is provably complete for leader labels (past this replica's own Lease
// write and its own last label write on the workload: Writer::podCacheCoversLabels), else again from the API. Pods are
// created as standbys. One worker handles a workload at a time, so nothing of this term labels a pod between those
// reads and the promotion, and nothing of an earlier term does either: before this term's first label write in the
// workload every pod carries its stamp, and every label write tests that stamp (workload_writer_fence.cc).
#include <algorithm>

#include "election/handoff.h"
#include "operator/workload/decisions.h"
#include "operator/workload/findings.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload_metrics.h"
#include "operator/workload/workload_writer.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

}  // namespace

util::Status Reconciler::elect(Writer& writer, Findings& findings) {
  const WorkloadView view = writer.view();
  const Health health = holderHealth(view);
  const std::string key = view.workload.key();
  const std::string holder = view.holder();
  if (health != Health::kHealthy && health != Health::kNone && health != Health::kScaledDown) {
    memory_.noteFailoverStart(key, unhealthyStart(view.pod(holder)), view.token());
  }

  // Tokens only grow: a Lease that was deleted (or restored from an old copy) is written again above every token
  // we can still see, and a healthy leader keeps leading under the new token.
  const long long highest = highestTokenSeen(view, memory_.highestToken(key));
  if (view.lease && view.token() < highest && health == Health::kHealthy) {
    return handOver(writer, holder, "recreated",
                    "the Lease records fencing token " + std::to_string(view.token()) + ", below " +
                        std::to_string(highest) + " seen before");
  }
  if (!view.lease && highest >= 0) {
    // Keep the pod that is labelled leader, if it can lead: only the token changes.
    std::string labelled = labelledLeaderThatCanLead(view);
    if (labelled.empty()) labelled = chooseSuccessor(view, "", /*current_only=*/false);
    if (!labelled.empty()) {
      return handOver(writer, labelled, "recreated",
                      "the Lease was missing (highest fencing token seen " + std::to_string(highest) + ")");
    }
  }

  std::string successor = handleSwitchover(writer, health == Health::kHealthy);
  if (!successor.empty()) {
    memory_.noteFailoverStart(key, clock_.now(), view.token());
    return handOver(writer, successor, "switchover", "switchover requested");
  }

  if (health == Health::kHealthy) {
    if (rolloutMovesLeader(view)) successor = chooseSuccessor(view, view.leaderUid(), /*current_only=*/true);
    if (successor.empty()) return keepLeaseTidy(writer);
    memory_.noteFailoverStart(key, clock_.now(), view.token());
    return handOver(writer, successor, "rollout", "leader " + holder + " runs an outdated template");
  }

  successor = chooseSuccessor(view, view.leaderUid(), /*current_only=*/false);
  if (health == Health::kScaledDown) {
    // The leader goes last: it stays until a wanted pod can take over.
    if (successor.empty()) return keepLeaseTidy(writer);
    memory_.noteFailoverStart(key, clock_.now(), view.token());
  }
  const std::string why = holder.empty() ? "no leader" : "leader " + holder + " " + describe(health);
  if (successor.empty()) return releaseLease(writer, findings, why);
  return handOver(writer, successor, failoverReason(health), why);
}

std::string Reconciler::handleSwitchover(Writer& writer, bool holder_healthy) {
  const SwitchoverDecision decision = decideSwitchover(writer.view(), holder_healthy);
  if (!decision.remove_request) return decision.successor;  // its annotation goes once the Lease has moved
  const Workload& w = writer.workload();
  const std::string& target = w.switchover_to;
  if (decision.already_leader) {
    writer.event(controller::EventType::kNormal, "Switchover",
                 "switchover to " + target + ": it already is the leader");
  } else {
    writer.event(controller::EventType::kWarning, "SwitchoverRejected",
                 "switchover to " + target + " rejected: " + decision.rejection);
  }
  if (auto s = writer.removeSwitchoverAnnotation(target); !s.ok()) {
    kLog.warn("could not remove the switchover annotation", {.err = s.error().describe(), .object = {w.ns, w.name}});
  }
  return "";
}

// Step 5 (1): the Lease moves first. Labels follow in labelPods(), now or in a later reconcile after a crash.
util::Status Reconciler::handOver(Writer& writer, const std::string& successor, const std::string& trigger,
                                  const std::string& why) {
  const WorkloadView view = writer.view();
  const Workload& w = view.workload;
  const std::string old_holder = view.holder();
  // Above every token this replica can see, not just the Lease's: the Lease may be new or restored.
  const long long token = highestTokenSeen(view, memory_.highestToken(w.key())) + 1;
  const bool recreated = trigger == "recreated";
  const std::string uid = metaString(*view.pod(successor), "uid");

  const std::string lease_name = w.leaseName();
  kube::Lease lease = writer.lease().value_or(kube::Lease{});
  lease.name = lease_name;
  lease.ns = w.ns;
  const util::WallTime now = clock_.wallNow();
  lease.spec.holder_identity = successor;
  lease.spec.lease_transitions = token;
  lease.spec.acquire_time = now;
  lease.spec.renew_time = now;
  lease.raw["metadata"]["annotations"][kAnnotationLeaderUid] = uid;
  recordHandoff(writer.lease(), w.effectiveHandoff() == HandoffMode::kWaitForStop, uid, lease);
  const int old_seconds = writer.lease() ? writer.lease()->spec.lease_duration_seconds.value_or(0) : 0;
  if (auto s = writer.writeLease(std::move(lease)); !s.ok()) return s;
  noteHandoffStart(writer, token, old_seconds);

  const std::string token_text = " (fencing token " + std::to_string(token) + ")";
  kLog.info(why + "; " + successor + " is the leader" + token_text,
            {.object = {w.ns, w.name}, .values = {{"leader", successor}, {"token", token}, {"reason", trigger}}});
  if (!old_holder.empty() && !recreated) {
    metrics_.counter(kFailovers.name, kFailovers.help, {{"reason", trigger}}).inc();
  }
  if (recreated) {
    kLog.warn("Lease " + lease_name + " re-written above every earlier token: " + why,
              {.object = {w.ns, w.name}, .values = {{"leader", successor}, {"token", token}}});
    writer.event(
        controller::EventType::kWarning, "LeaseRecreated",
        "Lease " + lease_name + ": " + why + "; " + successor + " leads with fencing token " + std::to_string(token));
  } else if (trigger == "switchover") {
    writer.event(controller::EventType::kNormal, "Switchover",
                 "switchover from " + (old_holder.empty() ? std::string("no leader") : old_holder) + " to " +
                     successor + token_text);
    // A failure leaves the annotation naming the leader, which the next reconcile removes as done.
    if (auto s = writer.removeSwitchoverAnnotation(w.switchover_to); !s.ok()) {
      kLog.warn("could not remove the switchover annotation", {.err = s.error().describe(), .object = {w.ns, w.name}});
    }
  } else if (old_holder.empty()) {
    writer.event(controller::EventType::kNormal, "LeaderElected", successor + " elected leader" + token_text);
  } else {
    const bool unplanned = trigger != "rollout" && trigger != "scaledown";
    writer.event(unplanned ? controller::EventType::kWarning : controller::EventType::kNormal, "Failover",
                 why + "; " + successor + " takes over" + token_text);
  }
  return {};
}

// Step 4, no successor: nobody leads. The token stays; the next holder gets token+1.
util::Status Reconciler::releaseLease(Writer& writer, Findings& findings, const std::string& why) {
  const WorkloadView view = writer.view();
  const std::string old_holder = view.holder();
  if (old_holder.empty()) return keepLeaseTidy(writer);
  kube::Lease lease = *writer.lease();
  lease.spec.holder_identity = "";
  lease.spec.renew_time = clock_.wallNow();
  if (lease.raw["metadata"]["annotations"].is_object())
    lease.raw["metadata"]["annotations"].erase(kAnnotationLeaderUid);
  // The released holder (or the one its hand-off still waits for) must stop before anyone leads again.
  recordHandoff(writer.lease(), view.workload.effectiveHandoff() == HandoffMode::kWaitForStop, "", lease);
  const int old_seconds = writer.lease()->spec.lease_duration_seconds.value_or(0);
  if (auto s = writer.writeLease(std::move(lease)); !s.ok()) return s;
  noteHandoffStart(writer, view.token(), old_seconds);
  // Demote it even if our cache does not show its label yet (a promotion the watch has not delivered).
  findings.released_holder = old_holder;
  kLog.warn(why + "; no Ready pod can take over, so no pod leads",
            {.object = {view.workload.ns, view.workload.name}, .values = {{"token", view.token()}}});
  return {};
}

// Fixes what the Lease must carry besides the holder (label, owner, duration) without changing the holder.
util::Status Reconciler::keepLeaseTidy(Writer& writer) {
  const auto& lease = writer.lease();
  if (!lease) return {};
  const Workload& w = writer.workload();
  if (labelOf(lease->raw, kLabelWorkload) == w.name && isControlledBy(lease->raw, w.uid) &&
      lease->spec.lease_duration_seconds == w.lease_duration_seconds) {
    return {};
  }
  return writer.writeLease(*lease);
}

// Step 6: labels follow the Lease. Demote everything that is not the holder, then promote the holder.
util::Status Reconciler::labelPods(Writer& writer, Findings& findings) {
  if (auto s = completeHandoff(writer, findings); !s.ok()) return s;
  const bool hold_successor =
      writer.workload().effectiveHandoff() == HandoffMode::kWaitForStop && findings.handoff_pending;
  LabelPlan plan = planLabels(writer.view(), hold_successor, findings.released_holder);
  if (!plan.demote.empty() || plan.promote) {
    // The fence comes before this term's first label write: once every pod carries our stamp, no earlier term can
    // change a label, and the stamps' answers show what earlier terms wrote before. So decide again on them.
    if (auto s = writer.fenceLabels(); !s.ok()) return s;
    plan = planLabels(writer.view(), hold_successor, findings.released_holder);
  }
  for (const std::string& name : plan.demote) {
    if (auto s = writer.demotePod(name); !s.ok()) return s;
  }
  if (plan.target.empty()) return {};
  const long long token = writer.view().token();
  if (plan.promote) {
    if (auto s = promote(writer, plan.target, token); !s.ok()) return s;
  }
  findings.leader = plan.target;
  noteLeaderLabelled(writer.workload().key(), token);
  return {};
}

util::Status Reconciler::promote(Writer& writer, const std::string& name, long long token) {
  const Workload& w = writer.workload();
  const std::string uid = metaString(*writer.view().pod(name), "uid");

  // labelPods() has demoted every other pod that the view shows with the label. When the pod cache behind the view
  // is complete for leader labels, that is all of them. Otherwise (a replica that has just begun to lead, a label
  // write of ours the watch has not delivered, one whose answer never came) the cache may not show a promotion made
  // moments ago, but the API does: every pod of the workload we know of (the cache, our recent writes, the expected
  // names, the holder) that this reconcile has not had from the API yet is read again, and each one that carries
  // the leader label loses it before this one gets it. Reads of single objects, not a list by label: in Kubernetes
  // 1.20 a quorum list makes the apiserver decode every pod of the namespace from etcd, and a list from its watch
  // cache may be older than the promotion we look for.
  const bool from_cache = writer.podCacheCoversLabels();
  metrics_.counter(kPromotions.name, kPromotions.help, {{"check", from_cache ? "cache" : "api"}}).inc();
  if (!from_cache) {
    if (auto s = writer.confirmPodsFromApi(); !s.ok()) return s;
  }

  for (const std::string& other : otherLeaderLabelled(writer.view(), name)) {
    kLog.info("demoting " + other + ", which still carries the leader label",
              {.object = {w.ns, w.name}, .values = {{"pod", other}}});
    if (auto s = writer.demotePod(other); !s.ok()) return s;
  }

  const Json* pod = writer.view().pod(name);
  if (!pod) return util::makeError(util::ErrorCode::kNotFound, "pod " + name + " is gone");
  if (labelledLeader(*pod, uid, token)) return {};  // already (the API showed it)
  return writer.promotePod(name, uid, token);
}

}  // namespace singleton::op
