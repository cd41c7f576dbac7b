// Steps 3-6 of docs/design.md: is the Lease's holder a healthy leader; if not (or a switchover or rollout wants it
// moved), choose a successor and move the Lease first (compare-and-swap, token+1); then make the pod labels follow
// the Lease, demoting every other pod before promoting the holder.
//
// Why this never labels two pods leader: a pod is only promoted by promote(), after every other pod of the workload
// that carries the label has been demoted, each demotion confirmed by the API (or NotFound). Which pods carry it is
// read from the pod cache when that cache is provably complete for leader labels (past this replica's own Lease
// write and its own last label write on the workload: podCacheCoversLabels), else again from the API. Pods are
// created as standbys. One worker handles a workload at a time, so nothing of this term labels a pod between those
// reads and the promotion, and nothing of an earlier term does either: before this term's first label write in the
// workload every pod carries its stamp, and every label write tests that stamp (reconcile_fence.cc).
#include <algorithm>
#include <climits>

#include "election/handoff.h"
#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

enum class Health { kHealthy, kNone, kDeleted, kReplaced, kTerminating, kExited, kNotReady, kScaledDown };

// The failover reason label of singleton_failovers_total.
const char* reasonLabel(Health health) {
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

// Step 3: the holder named by the Lease exists as the incarnation the Lease recorded, and can lead.
Health holderHealth(const Context& ctx) {
  const std::string holder = ctx.holder();
  if (holder.empty()) return Health::kNone;
  const Json* pod = ctx.pod(holder);
  if (!pod) return Health::kDeleted;
  const std::string uid = metaString(*pod, "uid");
  if (!ctx.owns(*pod) || uid.empty() || uid != ctx.leaderUid()) return Health::kReplaced;
  if (isTerminating(*pod)) return Health::kTerminating;
  if (hasExited(*pod)) return Health::kExited;
  if (!isReady(*pod)) return Health::kNotReady;
  if (!ctx.wanted(holder)) return Health::kScaledDown;
  return Health::kHealthy;
}

bool canLead(const Context& ctx, const std::string& name, const Json& pod) {
  return ctx.owns(pod) && !metaString(pod, "uid").empty() && ctx.wanted(name) && isAvailable(pod);
}

// Step 4: a Ready standby with the current template, lowest ordinal first; else any Ready standby (unless
// `current_only`). `exclude_uid` is the incarnation that is leader now.
std::string chooseSuccessor(const Context& ctx, const std::string& exclude_uid, bool current_only) {
  std::string best;
  int best_ordinal = INT_MAX;
  bool best_current = false;
  for (const auto& [name, pod] : ctx.pods) {
    if (!canLead(ctx, name, pod) || metaString(pod, "uid") == exclude_uid) continue;
    const bool current = ctx.current(pod);
    if (current_only && !current) continue;
    const int ordinal = *ordinalOf(name, ctx.workload.name);
    if (best.empty() || (current && !best_current) || (current == best_current && ordinal < best_ordinal)) {
      best = name;
      best_ordinal = ordinal;
      best_current = current;
    }
  }
  return best;
}

// Step 7's hand-over: the leader runs an outdated template and every standby has already been replaced.
bool rolloutMovesLeader(const Context& ctx) {
  const Json* holder = ctx.pod(ctx.holder());
  if (!holder || ctx.current(*holder)) return false;
  for (int i = 0; i < ctx.workload.replicas; ++i) {
    const std::string name = ctx.workload.podName(i);
    if (name == ctx.holder()) continue;
    const Json* pod = ctx.pod(name);
    if (!pod || !ctx.owns(*pod) || !ctx.current(*pod)) return false;
  }
  return true;
}

// Step 6's decisions on the current view: which pod should lead, which pods lose the label, whether the leader
// needs its label or token.
struct LabelPlan {
  std::string target;
  std::vector<std::string> demote;
  bool promote = false;
};

LabelPlan planLabels(const Context& ctx) {
  LabelPlan plan;
  const std::string holder = ctx.holder();
  const Json* holder_pod = ctx.pod(holder);
  // WaitForStop: the successor is labelled only once the previous holder is known stopped (the Service follows the
  // label, so it must not reach the successor while the old leader may still serve).
  if (holder_pod && ctx.owns(*holder_pod) && metaString(*holder_pod, "uid") == ctx.leaderUid() &&
      isAvailable(*holder_pod) && !(ctx.wait_for_stop && ctx.handoff_pending)) {
    plan.target = holder;
  }
  for (const auto& [name, pod] : ctx.pods) {
    if (name == plan.target) continue;
    const std::string role = labelOf(pod, kLabelRole);
    const bool leaderish = role == kRoleLeader || annotationOf(pod, kAnnotationFencingToken).has_value();
    if (leaderish || (ctx.owns(pod) && role != kRoleStandby) || name == ctx.released_holder)
      plan.demote.push_back(name);
  }
  if (!plan.target.empty()) {
    const Json& pod = *ctx.pod(plan.target);
    plan.promote =
        labelOf(pod, kLabelRole) != kRoleLeader ||
        annotationOf(pod, kAnnotationFencingToken) != std::optional<std::string>(std::to_string(ctx.token()));
  }
  return plan;
}

}  // namespace

util::Status Reconciler::elect(Context& ctx) {
  const Health health = holderHealth(ctx);
  const std::string key = ctx.workload.key();
  const std::string holder = ctx.holder();
  if (health != Health::kHealthy && health != Health::kNone && health != Health::kScaledDown) {
    noteFailoverStart(key, unhealthyStart(ctx.pod(holder)), ctx.token());
  }

  // Tokens only grow: a Lease that was deleted (or restored from an old copy) is written again above every token
  // we can still see, and a healthy leader keeps leading under the new token.
  const long long highest = highestTokenSeen(ctx);
  if (ctx.lease && ctx.token() < highest && health == Health::kHealthy) {
    return handOver(ctx, holder, "recreated",
                    "the Lease records fencing token " + std::to_string(ctx.token()) + ", below " +
                        std::to_string(highest) + " seen before");
  }
  if (!ctx.lease && highest >= 0) {
    // Keep the pod that is labelled leader, if it can lead: only the token changes.
    std::string labelled;
    for (const auto& [name, pod] : ctx.pods) {
      if (labelOf(pod, kLabelRole) == kRoleLeader && canLead(ctx, name, pod)) labelled = name;
    }
    if (labelled.empty()) labelled = chooseSuccessor(ctx, "", /*current_only=*/false);
    if (!labelled.empty()) {
      return handOver(ctx, labelled, "recreated",
                      "the Lease was missing (highest fencing token seen " + std::to_string(highest) + ")");
    }
  }

  std::string successor;
  handleSwitchover(ctx, health == Health::kHealthy, successor);
  if (!successor.empty()) {
    noteFailoverStart(key, clock_.now(), ctx.token());
    return handOver(ctx, successor, "switchover", "switchover requested");
  }

  if (health == Health::kHealthy) {
    if (rolloutMovesLeader(ctx)) successor = chooseSuccessor(ctx, ctx.leaderUid(), /*current_only=*/true);
    if (successor.empty()) return keepLeaseTidy(ctx);
    noteFailoverStart(key, clock_.now(), ctx.token());
    return handOver(ctx, successor, "rollout", "leader " + holder + " runs an outdated template");
  }

  successor = chooseSuccessor(ctx, ctx.leaderUid(), /*current_only=*/false);
  if (health == Health::kScaledDown) {
    // The leader goes last: it stays until a wanted pod can take over.
    if (successor.empty()) return keepLeaseTidy(ctx);
    noteFailoverStart(key, clock_.now(), ctx.token());
  }
  const std::string why = holder.empty() ? "no leader" : "leader " + holder + " " + describe(health);
  if (successor.empty()) return releaseLease(ctx, why);
  return handOver(ctx, successor, reasonLabel(health), why);
}

void Reconciler::handleSwitchover(Context& ctx, bool holder_healthy, std::string& successor) {
  const std::string target = ctx.workload.switchover_to;
  if (target.empty()) return;
  std::string problem;
  if (holder_healthy && target == ctx.holder()) {
    event(ctx, controller::EventType::kNormal, "Switchover", "switchover to " + target + ": it already is the leader");
  } else if (const Json* pod = ctx.pod(target); !pod) {
    problem = "no pod " + target + " belongs to this workload";
  } else if (!ctx.owns(*pod) || !ctx.wanted(target)) {
    problem = target + " is not a replica of this workload";
  } else if (!isAvailable(*pod)) {
    problem = target + " is not Ready";
  } else {
    successor = target;  // the annotation goes once the Lease has moved (handOver)
    return;
  }
  if (!problem.empty()) {
    event(ctx, controller::EventType::kWarning, "SwitchoverRejected",
          "switchover to " + target + " rejected: " + problem);
  }
  if (auto s = removeSwitchoverAnnotation(ctx, target); !s.ok()) {
    kLog.warn("could not remove the switchover annotation",
              {.err = s.error().describe(), .object = {ctx.workload.ns, ctx.workload.name}});
  }
}

// Step 5 (1): the Lease moves first. Labels follow in labelPods(), now or in a later reconcile after a crash.
util::Status Reconciler::handOver(Context& ctx, const std::string& successor, const std::string& trigger,
                                  const std::string& why) {
  const Workload& w = ctx.workload;
  const std::string old_holder = ctx.holder();
  // Above every token this replica can see, not just the Lease's: the Lease may be new or restored.
  const long long token = highestTokenSeen(ctx) + 1;
  const bool recreated = trigger == "recreated";
  const std::string uid = metaString(*ctx.pod(successor), "uid");

  const std::string lease_name = w.leaseName();
  kube::Lease lease = ctx.lease.value_or(kube::Lease{});
  lease.name = lease_name;
  lease.ns = w.ns;
  const util::WallTime now = clock_.wallNow();
  lease.spec.holder_identity = successor;
  lease.spec.lease_transitions = token;
  lease.spec.acquire_time = now;
  lease.spec.renew_time = now;
  lease.raw["metadata"]["annotations"][kAnnotationLeaderUid] = uid;
  recordHandoff(ctx, lease, uid);
  const int old_seconds = ctx.lease ? ctx.lease->spec.lease_duration_seconds.value_or(0) : 0;
  if (auto s = writeLease(ctx, std::move(lease)); !s.ok()) return s;
  // The CAS answer has arrived: lease-expired is measured from now, over the longer of the two durations (the
  // previous holder's agent checked its timings against the old one).
  if (!election::parseHandoff(ctx.lease->raw).complete) {
    noteHandoffStart(w.key(), token, util::Millis(1000LL * std::max(old_seconds, w.lease_duration_seconds)));
  }

  const std::string token_text = " (fencing token " + std::to_string(token) + ")";
  kLog.info(why + "; " + successor + " is the leader" + token_text,
            {.object = {w.ns, w.name}, .values = {{"leader", successor}, {"token", token}, {"reason", trigger}}});
  if (!old_holder.empty() && !recreated) {
    metrics_.counter(kMetricFailovers, kHelpFailovers, {{"reason", trigger}}).inc();
  }
  if (recreated) {
    kLog.warn("Lease " + lease_name + " re-written above every earlier token: " + why,
              {.object = {w.ns, w.name}, .values = {{"leader", successor}, {"token", token}}});
    event(ctx, controller::EventType::kWarning, "LeaseRecreated",
          "Lease " + lease_name + ": " + why + "; " + successor + " leads with fencing token " + std::to_string(token));
  } else if (trigger == "switchover") {
    event(ctx, controller::EventType::kNormal, "Switchover",
          "switchover from " + (old_holder.empty() ? std::string("no leader") : old_holder) + " to " + successor +
              token_text);
    // A failure leaves the annotation naming the leader, which the next reconcile removes as done.
    if (auto s = removeSwitchoverAnnotation(ctx, w.switchover_to); !s.ok()) {
      kLog.warn("could not remove the switchover annotation", {.err = s.error().describe(), .object = {w.ns, w.name}});
    }
  } else if (old_holder.empty()) {
    event(ctx, controller::EventType::kNormal, "LeaderElected", successor + " elected leader" + token_text);
  } else {
    const bool unplanned = trigger != "rollout" && trigger != "scaledown";
    event(ctx, unplanned ? controller::EventType::kWarning : controller::EventType::kNormal, "Failover",
          why + "; " + successor + " takes over" + token_text);
  }
  return {};
}

// Step 4, no successor: nobody leads. The token stays; the next holder gets token+1.
util::Status Reconciler::releaseLease(Context& ctx, const std::string& why) {
  const std::string old_holder = ctx.holder();
  if (old_holder.empty()) return keepLeaseTidy(ctx);
  kube::Lease lease = *ctx.lease;
  lease.spec.holder_identity = "";
  lease.spec.renew_time = clock_.wallNow();
  if (lease.raw["metadata"]["annotations"].is_object())
    lease.raw["metadata"]["annotations"].erase(kAnnotationLeaderUid);
  // The released holder (or the one its hand-off still waits for) must stop before anyone leads again.
  recordHandoff(ctx, lease, "");
  const int old_seconds = ctx.lease->spec.lease_duration_seconds.value_or(0);
  if (auto s = writeLease(ctx, std::move(lease)); !s.ok()) return s;
  if (!election::parseHandoff(ctx.lease->raw).complete) {
    noteHandoffStart(ctx.workload.key(), ctx.token(),
                     util::Millis(1000LL * std::max(old_seconds, ctx.workload.lease_duration_seconds)));
  }
  // Demote it even if our cache does not show its label yet (a promotion the watch has not delivered).
  ctx.released_holder = old_holder;
  kLog.warn(why + "; no Ready pod can take over, so no pod leads",
            {.object = {ctx.workload.ns, ctx.workload.name}, .values = {{"token", ctx.token()}}});
  return {};
}

// Fixes what the Lease must carry besides the holder (label, owner, duration) without changing the holder.
util::Status Reconciler::keepLeaseTidy(Context& ctx) {
  if (!ctx.lease) return {};
  const Workload& w = ctx.workload;
  if (labelOf(ctx.lease->raw, kLabelWorkload) == w.name && isControlledBy(ctx.lease->raw, w.uid) &&
      ctx.lease->spec.lease_duration_seconds == w.lease_duration_seconds) {
    return {};
  }
  return writeLease(ctx, *ctx.lease);
}

// Step 6: labels follow the Lease. Demote everything that is not the holder, then promote the holder.
util::Status Reconciler::labelPods(Context& ctx) {
  if (auto s = completeHandoff(ctx); !s.ok()) return s;
  LabelPlan plan = planLabels(ctx);
  if (!plan.demote.empty() || plan.promote) {
    // The fence comes before this term's first label write: once every pod carries our stamp, no earlier term can
    // change a label, and the stamps' answers show what earlier terms wrote before. So decide again on them.
    if (auto s = fenceLabels(ctx); !s.ok()) return s;
    plan = planLabels(ctx);
  }
  for (const std::string& name : plan.demote) {
    if (auto s = demotePod(ctx, name); !s.ok()) return s;
  }
  if (plan.target.empty()) return {};
  const long long token = ctx.token();
  if (plan.promote) {
    if (auto s = promote(ctx, plan.target, token); !s.ok()) return s;
  }
  ctx.leader = plan.target;
  noteLeaderLabelled(ctx.workload.key(), token);
  return {};
}

util::Status Reconciler::promote(Context& ctx, const std::string& name, long long token) {
  const Workload& w = ctx.workload;
  const std::string uid = metaString(*ctx.pod(name), "uid");
  const std::string token_text = std::to_string(token);

  // labelPods() has demoted every other pod that ctx.pods shows with the label. When the pod cache behind ctx.pods
  // is complete for leader labels, that is all of them. Otherwise (a replica that has just begun to lead, a label
  // write of ours the watch has not delivered, one whose answer never came) the cache may not show a promotion made
  // moments ago, but the API does: every pod of the workload we know of (the cache, our recent writes, the expected
  // names, the holder) that this reconcile has not had from the API yet is read again, and each one that carries
  // the leader label loses it before this one gets it. Reads of single objects, not a list by label: in Kubernetes
  // 1.20 a quorum list makes the apiserver decode every pod of the namespace from etcd, and a list from its watch
  // cache may be older than the promotion we look for.
  const bool from_cache = podCacheCoversLabels(ctx);
  metrics_.counter(kMetricPromotions, kHelpPromotions, {{"check", from_cache ? "cache" : "api"}}).inc();
  if (!from_cache) {
    std::vector<std::string> names;
    for (const auto& [item_name, pod] : ctx.pods) {
      if (!ctx.confirmed.contains(item_name)) names.push_back(item_name);
    }
    std::uint64_t read_at = 0;
    for (const std::string& item_name : names) {
      auto fresh = client_.get(kube::kPods, w.ns, item_name);
      if (!fresh.ok()) {
        if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
        ctx.pods.erase(item_name);
        continue;
      }
      read_at = std::max(read_at, kube::revisionOf(metaString(*fresh, "resourceVersion")).value_or(0));
      stripPod(*fresh);
      ctx.pods[item_name] = std::move(*fresh);
      ctx.confirmed.insert(item_name);
    }
    // A pod that shows another term's stamp (recreated, or our view of it was old) gets ours first.
    if (auto s = fenceLabels(ctx); !s.ok()) return s;
    noteLabelsConfirmed(ctx, read_at);
  }

  std::vector<std::string> others;
  for (const auto& [item_name, item] : ctx.pods) {
    if (item_name == name || labelOf(item, kLabelWorkload) != w.name) continue;
    if (labelOf(item, kLabelRole) == kRoleLeader || annotationOf(item, kAnnotationFencingToken)) {
      others.push_back(item_name);
    }
  }
  for (const std::string& item_name : others) {
    kLog.info("demoting " + item_name + ", which still carries the leader label",
              {.object = {w.ns, w.name}, .values = {{"pod", item_name}}});
    if (auto s = demotePod(ctx, item_name); !s.ok()) return s;
  }

  const Json* pod = ctx.pod(name);
  if (!pod) return util::makeError(util::ErrorCode::kNotFound, "pod " + name + " is gone");
  if (metaString(*pod, "uid") == uid && labelOf(*pod, kLabelRole) == kRoleLeader &&
      annotationOf(*pod, kAnnotationFencingToken) == std::optional<std::string>(token_text)) {
    return {};  // already (the API showed it)
  }
  // Fenced: the incarnation the Lease names (not a pod recreated under the same name since we looked), still
  // stamped with our term (no newer operator term has taken the workload's labels over).
  const Json ops = Json::array({
      {{"op", "test"}, {"path", "/metadata/uid"}, {"value", uid}},
      {{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(ctx.term())}},
      {{"op", "add"}, {"path", labelPointer(kLabelRole)}, {"value", kRoleLeader}},
      {{"op", "add"}, {"path", annotationPointer(kAnnotationFencingToken)}, {"value", token_text}},
  });
  return patchPod(ctx, name, ops);
}

}  // namespace singleton::op
