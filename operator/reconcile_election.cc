// Steps 3-6 of docs/design.md: is the Lease's holder a healthy leader; if not (or a switchover or rollout wants it
// moved), choose a successor and move the Lease first (compare-and-swap, token+1); then make the pod labels follow
// the Lease, demoting every other pod before promoting the holder.
//
// Why this never labels two pods leader: a pod is only promoted by promote(), after every other pod of the workload
// that carries the label has been demoted, each demotion confirmed by the API (or NotFound). Which pods carry it is
// read from the pod cache when that cache is provably complete for leader labels (past this replica's own Lease
// write and its own last label write on the workload: podCacheCoversLabels), else again from the API. Pods are
// created as standbys. One worker handles a workload at a time, so nothing labels a pod between those reads and the
// promotion.
#include <climits>

#include "operator/logging.h"
#include "operator/reconcile_context.h"
#include "operator/reconciler.h"

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

}  // namespace

util::Status Reconciler::elect(Context& ctx) {
  const Health health = holderHealth(ctx);
  const std::string key = ctx.workload.key();
  const std::string holder = ctx.holder();
  if (health != Health::kHealthy && health != Health::kNone && health != Health::kScaledDown) {
    noteFailoverStart(key, unhealthyStart(ctx.pod(holder)), ctx.token());
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
    event(ctx, EventType::kNormal, "Switchover", "switchover to " + target + ": it already is the leader");
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
    event(ctx, EventType::kWarning, "SwitchoverRejected", "switchover to " + target + " rejected: " + problem);
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
  const long long token = ctx.lease ? ctx.token() + 1 : 0;
  const std::string uid = metaString(*ctx.pod(successor), "uid");

  kube::Lease lease = ctx.lease.value_or(kube::Lease{});
  lease.name = w.leaseName();
  lease.ns = w.ns;
  const util::WallTime now = clock_.wallNow();
  lease.spec.holder_identity = successor;
  lease.spec.lease_transitions = token;
  lease.spec.acquire_time = now;
  lease.spec.renew_time = now;
  lease.raw["metadata"]["annotations"][kAnnotationLeaderUid] = uid;
  if (auto s = writeLease(ctx, std::move(lease)); !s.ok()) return s;

  const std::string token_text = " (fencing token " + std::to_string(token) + ")";
  kLog.info(why + "; " + successor + " is the leader" + token_text,
            {.object = {w.ns, w.name}, .values = {{"leader", successor}, {"token", token}, {"reason", trigger}}});
  if (!old_holder.empty()) metrics_.counter(kMetricFailovers, kHelpFailovers, {{"reason", trigger}}).inc();
  if (trigger == "switchover") {
    event(ctx, EventType::kNormal, "Switchover",
          "switchover from " + (old_holder.empty() ? std::string("no leader") : old_holder) + " to " + successor +
              token_text);
    // A failure leaves the annotation naming the leader, which the next reconcile removes as done.
    if (auto s = removeSwitchoverAnnotation(ctx, w.switchover_to); !s.ok()) {
      kLog.warn("could not remove the switchover annotation", {.err = s.error().describe(), .object = {w.ns, w.name}});
    }
  } else if (old_holder.empty()) {
    event(ctx, EventType::kNormal, "LeaderElected", successor + " elected leader" + token_text);
  } else {
    const bool unplanned = trigger != "rollout" && trigger != "scaledown";
    event(ctx, unplanned ? EventType::kWarning : EventType::kNormal, "Failover",
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
  if (auto s = writeLease(ctx, std::move(lease)); !s.ok()) return s;
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
  const std::string holder = ctx.holder();
  const Json* holder_pod = ctx.pod(holder);
  std::string target;
  if (holder_pod && ctx.owns(*holder_pod) && metaString(*holder_pod, "uid") == ctx.leaderUid() &&
      isAvailable(*holder_pod)) {
    target = holder;
  }

  std::vector<std::string> to_demote;
  for (const auto& [name, pod] : ctx.pods) {
    if (name == target) continue;
    const std::string role = labelOf(pod, kLabelRole);
    const bool leaderish = role == kRoleLeader || annotationOf(pod, kAnnotationFencingToken).has_value();
    if (leaderish || (ctx.owns(pod) && role != kRoleStandby) || name == ctx.released_holder) to_demote.push_back(name);
  }
  for (const std::string& name : to_demote) {
    if (auto s = demotePod(ctx, name); !s.ok()) return s;
  }
  if (target.empty()) return {};

  const long long token = ctx.token();
  const Json& pod = *ctx.pod(target);
  if (labelOf(pod, kLabelRole) != kRoleLeader ||
      annotationOf(pod, kAnnotationFencingToken) != std::optional<std::string>(std::to_string(token))) {
    if (auto s = promote(ctx, target, token); !s.ok()) return s;
  }
  ctx.leader = target;
  noteLeaderLabelled(ctx.workload.key(), token);
  return {};
}

util::Status Reconciler::promote(Context& ctx, const std::string& name, long long token) {
  const Workload& w = ctx.workload;
  const std::string uid = metaString(*ctx.pod(name), "uid");
  const std::string token_text = std::to_string(token);

  // labelPods() has demoted every other pod that ctx.pods shows with the label. When the pod cache behind ctx.pods
  // is complete for leader labels, that is all of them. Otherwise (a replica that has just begun to lead, a label
  // write of ours the watch has not delivered) the cache may not show a promotion made moments ago, but the API
  // does: every pod of the workload we know of (the cache, our recent writes, the expected names, the holder) is
  // read again, and each one that carries the leader label loses it before this one gets it. Reads of single
  // objects, not a list by label: in Kubernetes 1.20 a quorum list makes the apiserver decode every pod of the
  // namespace from etcd, and a list from its watch cache may be older than the promotion we look for.
  const bool from_cache = podCacheCoversLabels(ctx);
  metrics_.counter(kMetricPromotions, kHelpPromotions, {{"check", from_cache ? "cache" : "api"}}).inc();
  std::vector<std::string> names;
  if (!from_cache) {
    for (const auto& [item_name, pod] : ctx.pods) names.push_back(item_name);
  }
  bool already = false;
  for (const std::string& item_name : names) {
    auto fresh = client_.get(kube::kPods, w.ns, item_name);
    if (!fresh.ok()) {
      if (fresh.error().code == util::ErrorCode::kNotFound) continue;
      return std::move(fresh).takeError();
    }
    const Json& item = *fresh;
    if (labelOf(item, kLabelWorkload) != w.name) continue;
    const auto item_token = annotationOf(item, kAnnotationFencingToken);
    const bool leaderish = labelOf(item, kLabelRole) == kRoleLeader || item_token.has_value();
    if (item_name == name && metaString(item, "uid") == uid) {
      already = labelOf(item, kLabelRole) == kRoleLeader && item_token == std::optional<std::string>(token_text);
      continue;
    }
    if (!leaderish) continue;
    kLog.info("demoting " + item_name + ", which still carries the leader label",
              {.object = {w.ns, w.name}, .values = {{"pod", item_name}}});
    if (auto s = demotePod(ctx, item_name); !s.ok()) return s;
  }
  if (already) return {};

  const Json* pod = ctx.pod(name);
  const bool has_annotations = pod->contains("metadata") && (*pod)["metadata"].contains("annotations") &&
                               (*pod)["metadata"]["annotations"].is_object();
  Json ops = Json::array();
  // The incarnation the Lease names, not a pod recreated under the same name since we looked.
  ops.push_back({{"op", "test"}, {"path", "/metadata/uid"}, {"value", uid}});
  ops.push_back({{"op", "add"}, {"path", labelPointer(kLabelRole)}, {"value", kRoleLeader}});
  if (has_annotations) {
    ops.push_back({{"op", "add"}, {"path", annotationPointer(kAnnotationFencingToken)}, {"value", token_text}});
  } else {
    ops.push_back(
        {{"op", "add"}, {"path", "/metadata/annotations"}, {"value", {{kAnnotationFencingToken, token_text}}}});
  }
  return patchPod(ctx, name, ops);
}

}  // namespace singleton::op
