// The operator's side of the hand-off (docs/handoff.md): the move's compare-and-swap names who must stop first
// (handoff-from, with its UID), and the operator completes that hand-off itself when it knows the previous holder has
// stopped: its pod (that UID) is gone, finished, or terminating with every container terminated, or the lease
// duration has passed since the move's CAS answer arrived. With spec.handoff WaitForStop, the successor is labelled
// leader only once the hand-off is complete (planLabels); its agent starts COMMAND on the same condition.
#include <algorithm>

#include "election/handoff.h"
#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

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

util::Millis leaseWait(int lease_seconds, int workload_seconds) {
  return util::Millis(1000LL * std::max(lease_seconds, workload_seconds));
}

}  // namespace

void Reconciler::recordHandoff(const Context& ctx, kube::Lease& lease, const std::string& successor_uid) const {
  Json& metadata = lease.raw["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  Json& annotations = metadata["annotations"];
  if (!annotations.is_object()) annotations = Json::object();
  if (!ctx.wait_for_stop) {
    // Immediate: the label moves at once and nothing waits; the Lease says so (absent = nobody to wait for).
    annotations.erase(election::kHandoffFromAnnotation);
    annotations.erase(election::kHandoffFromUidAnnotation);
    eraseAcks(annotations);
    return;
  }
  std::string from;
  std::string from_uid;
  if (ctx.lease) {
    const election::HandoffView view = election::parseHandoff(ctx.lease->raw);
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

void Reconciler::noteHandoffStart(const std::string& key, long long token, util::Millis wait) {
  std::lock_guard lock(mutex_);
  handoff_started_[key] = HandoffStart{token, clock_.now(), wait};
}

util::Status Reconciler::completeHandoff(Context& ctx) {
  const Workload& w = ctx.workload;
  if (!ctx.lease) return {};
  const election::HandoffView view = election::parseHandoff(ctx.lease->raw);
  if (view.complete) {
    std::lock_guard lock(mutex_);
    handoff_started_.erase(w.key());
    return {};
  }
  ctx.handoff_pending = true;

  std::optional<election::AckedBy> by;
  const Json* pod = ctx.pod(view.from);
  if (pod && metaString(*pod, "uid") == view.from_uid) {
    if (stoppedForGood(*pod)) by = election::AckedBy::kContainersTerminated;
  } else {
    // The cache does not show that incarnation; it may just be behind the Lease's cache. Only the API may say the pod
    // is gone (a UID never comes back).
    auto fresh = client_.get(kube::kPods, w.ns, view.from);
    if (!fresh.ok()) {
      if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
      by = election::AckedBy::kPodGone;
    } else if (metaString(*fresh, "uid") != view.from_uid) {
      by = election::AckedBy::kPodGone;
    } else if (stoppedForGood(*fresh)) {
      by = election::AckedBy::kContainersTerminated;
    }
  }

  if (!by) {
    const util::MonoTime now = clock_.now();
    HandoffStart start;
    {
      std::lock_guard lock(mutex_);
      auto it = handoff_started_.find(w.key());
      if (it == handoff_started_.end() || it->second.token != view.token) {
        // Not moved by this term (an operator restart or takeover): measured from this first sight, which is after
        // the move's CAS took effect, so never shorter than from its answer.
        it = handoff_started_
                 .insert_or_assign(
                     w.key(),
                     HandoffStart{view.token, now, leaseWait(view.lease_duration_seconds, w.lease_duration_seconds)})
                 .first;
      }
      start = it->second;
    }
    // Safety (docs/handoff.md, case 4): the previous holder's agent last confirmed with a GET sent before the move's
    // CAS took effect, and stops by itself within L - L/10 of it on its own clock. The CAS answer (or our first sight)
    // came after the CAS took effect, so L after it on our monotonic clock, that agent has stopped.
    const auto elapsed = now - start.since;
    if (elapsed < start.wait) {
      ctx.requeueAfter(std::chrono::ceil<util::Millis>(start.wait - elapsed));
      return {};
    }
    by = election::AckedBy::kLeaseExpired;
  }

  if (auto s = allowWrite(ctx); !s.ok()) return s;
  // A compare-and-swap on the version that carries this hand-off (resourceVersion in the merge patch): it completes
  // only the hand-off it read.
  const std::string key = "leases/" + w.ns + "/" + w.leaseName();
  const std::string base = ctx.lease->resource_version;
  auto patched = client_.mergePatch(kube::kLeases, w.ns, w.leaseName(), election::ackMergePatch(view, *by));
  if (!patched.ok()) {
    const util::ErrorCode code = patched.error().code;
    if (code == util::ErrorCode::kNotFound) recent_.forgetPrefix(key);
    if (code == util::ErrorCode::kConflict) {
      // The Lease changed (an agent's ack, a newer move): read it and decide again.
      if (auto fresh = client_.get(kube::kLeases, w.ns, w.leaseName()); fresh.ok()) {
        stripObject(*fresh);
        recent_.record(key, base, std::move(*fresh));
      }
    }
    return std::move(patched).takeError();
  }
  stripObject(*patched);
  auto lease = kube::leaseFromJson(*patched);
  if (!lease.ok()) return std::move(lease).takeError();
  recent_.record(key, base, *patched);
  ctx.lease = std::move(*lease);
  ctx.handoff_pending = false;
  {
    std::lock_guard lock(mutex_);
    handoff_started_.erase(w.key());
  }
  const std::string message = "hand-off to " + view.holder + " (fencing token " + std::to_string(view.token) +
                              ") complete: " + view.from + " " +
                              (*by == election::AckedBy::kPodGone                ? "is gone"
                               : *by == election::AckedBy::kContainersTerminated ? "has no running container"
                                                                                 : "outlived its lease");
  kLog.info(message, {.object = {w.ns, w.name},
                      .values = {{"from", view.from}, {"token", view.token}, {"by", election::ackedByName(*by)}}});
  event(ctx, controller::EventType::kNormal, "HandoffComplete", message);
  return {};
}

}  // namespace singleton::op
