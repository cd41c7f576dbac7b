// Steps 2 and 7 of docs/design.md: the pods W-0 ... W-(replicas-1) exist; pods beyond replicas go (highest ordinal
// first, the leader last: the election step has moved leadership off it first); a template change replaces the
// standbys one at a time, each replacement Ready before the next goes, and then the old leader, after the election
// step has handed over to an updated standby (one failover per rollout).
#include <algorithm>
#include <climits>

#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"

namespace singleton::op {

util::Status Reconciler::ensurePods(Context& ctx) {
  std::vector<std::string> created;
  util::Status status;
  for (int i = 0; i < ctx.workload.replicas && status.ok(); ++i) {
    // A pod of that name in any state counts: a terminating one is replaced once it is gone (its deletion event
    // brings us back), so two incarnations never run at once.
    const std::string name = ctx.workload.podName(i);
    if (ctx.pods.contains(name)) continue;
    bool done = false;
    status = createPod(ctx, i, done);
    if (done) created.push_back(name);
  }
  // One Event for the pods of one pass (a new workload's replicas): Events are API writes too.
  if (!created.empty()) {
    ctx.created_pods = true;
    std::string names;
    for (const std::string& name : created) names += (names.empty() ? "" : ", ") + name;
    event(ctx, controller::EventType::kNormal, "PodCreated",
          (created.size() == 1 ? "created pod " : "created pods ") + names);
  }
  return status;
}

util::Status Reconciler::scaleDown(Context& ctx) {
  std::vector<std::pair<int, std::string>> excess;
  for (const auto& [name, pod] : ctx.pods) {
    if (!ctx.owns(pod) || isTerminating(pod) || ctx.wanted(name) || name == ctx.holder()) continue;
    excess.emplace_back(ordinalOf(name, ctx.workload.name).value_or(INT_MAX), name);
  }
  std::sort(excess.rbegin(), excess.rend());
  for (const auto& [ordinal, name] : excess) {
    if (auto s = deletePod(ctx, name, "scaled down to " + std::to_string(ctx.workload.replicas) + " replicas");
        !s.ok()) {
      return s;
    }
  }
  return {};
}

util::Status Reconciler::rollOut(Context& ctx) {
  const Workload& w = ctx.workload;
  const std::string holder = ctx.holder();
  std::string victim;  // the outdated standby with the highest ordinal
  bool replacement_starting = false;
  for (int i = 0; i < w.replicas; ++i) {
    const std::string name = w.podName(i);
    const Json* pod = ctx.pod(name);
    // A pod is missing or terminating: a replacement is under way; one at a time.
    if (!pod || !ctx.owns(*pod) || isTerminating(*pod)) return {};
    if (name == holder) continue;
    if (!ctx.current(*pod)) {
      victim = name;
    } else if (!isAvailable(*pod)) {
      replacement_starting = true;
    }
  }
  if (!victim.empty()) {
    // Wait for the last replacement to be Ready: never fewer Ready standbys than the rollout started with.
    if (replacement_starting) return {};
    return deletePod(ctx, victim, "rolling update to template " + w.template_hash);
  }
  // Only the leader is outdated. With standbys, the election step hands over to an updated one once it is Ready
  // (and the old leader is then an outdated standby, replaced above). A single replica has nobody to hand over
  // to, so it is replaced in place.
  if (w.replicas == 1 && !holder.empty()) {
    const Json* pod = ctx.pod(holder);
    if (pod && ctx.owns(*pod) && !ctx.current(*pod)) {
      return deletePod(ctx, holder, "rolling update to template " + w.template_hash + " (single replica)");
    }
  }
  return {};
}

}  // namespace singleton::op
