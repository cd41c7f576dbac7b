// Every API write of the reconciler. Each checks the write gate first (this replica still leads), updates the
// reconcile's context with what the API returned (later steps and the status see the result), and records it in
// RecentWrites (the next reconcile sees it even before the watch delivers it).
#include "operator/workload/informers.h"
#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"
#include "util/log.h"
#include "util/time_format.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

bool isSpecProblem(util::ErrorCode code) {
  // The apiserver refused what we asked for (an invalid template, a quota): retrying the same request soon will not
  // help, so the reconcile reports it on the status and retries with backoff.
  return code == util::ErrorCode::kInvalid || code == util::ErrorCode::kBadRequest ||
         code == util::ErrorCode::kForbidden;
}

}  // namespace

util::Status Reconciler::allowWrite(const Context& ctx) const {
  if (ctx.gate.mayWrite()) return {};
  return util::makeError(util::ErrorCode::kCancelled, "this operator replica does not lead");
}

util::Status Reconciler::writeLease(Context& ctx, kube::Lease lease) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Workload& w = ctx.workload;
  const long long term = ctx.gate.term().value();
  // Self-fencing: never overwrite a Lease that a newer operator term wrote. The compare-and-swap below makes this
  // race-free: if a newer term writes after we looked, our write fails.
  if (ctx.lease && operatorTermOf(*ctx.lease) > term) {
    util::Error error = util::makeError(util::ErrorCode::kCancelled, "the Lease records a newer operator term");
    error.reason = kReasonStaleTerm;
    return error;
  }
  Json& metadata = lease.raw["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  if (!metadata["labels"].is_object()) metadata["labels"] = Json::object();
  if (!metadata["annotations"].is_object()) metadata["annotations"] = Json::object();
  metadata["labels"][kLabelWorkload] = w.name;  // our Lease informer selects on it
  metadata["annotations"][kAnnotationOperatorTerm] = std::to_string(term);
  metadata["ownerReferences"] = Json::array({w.ownerReference()});
  lease.spec.lease_duration_seconds = w.lease_duration_seconds;

  const std::string key = "leases/" + w.ns + "/" + lease.name;
  const std::string base = ctx.lease ? ctx.lease->resource_version : "";
  auto written = ctx.lease ? client_.updateLease(lease) : client_.createLease(lease);
  if (!written.ok()) {
    const util::ErrorCode code = written.error().code;
    if (code == util::ErrorCode::kNotFound) recent_.forgetPrefix(key);  // deleted under us: the cache is the truth
    if (code == util::ErrorCode::kConflict || code == util::ErrorCode::kAlreadyExists) {
      // Someone wrote first, or our cache is behind: the next attempt decides on what is there now.
      if (auto fresh = client_.get(kube::kLeases, w.ns, lease.name); fresh.ok()) {
        stripObject(*fresh);
        recent_.record(key, base, std::move(*fresh));
      }
    }
    return std::move(written).takeError();
  }
  stripObject(written->raw);
  recent_.record(key, base, written->raw);
  ctx.lease = std::move(*written);
  return {};
}

util::Status Reconciler::createPod(Context& ctx, int ordinal, bool& created_one) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Workload& w = ctx.workload;
  const std::string name = w.podName(ordinal);
  auto created = client_.create(kube::kPods, w.ns, desiredPod(w, ordinal, ctx.term()));
  if (!created.ok()) {
    const util::Error& error = created.error();
    // Not in our cache (yet, or a pod of another owner pending garbage collection): the watch tells us.
    if (error.code == util::ErrorCode::kAlreadyExists) return {};
    if (!isSpecProblem(error.code)) return std::move(created).takeError();
    ctx.problem("PodCreateFailed", "creating pod " + name + ": " + error.message);
    ctx.deferred_error = error;
    return {};
  }
  // Into this reconcile's view only, not RecentWrites: an entry for an object the cache has never shown cannot tell
  // "not seen yet" from "created and deleted since", and mistaking the second for the first would hide a deleted
  // pod. A reconcile before the watch catches up just meets AlreadyExists.
  stripPod(*created);
  ctx.pods[name] = std::move(*created);
  created_one = true;
  return {};
}

util::Status Reconciler::deletePod(Context& ctx, const std::string& name, const std::string& why) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Workload& w = ctx.workload;
  const Json* pod = ctx.pod(name);
  kube::DeleteOptions options;
  if (pod) options.precondition_uid = metaString(*pod, "uid");  // this incarnation, not a successor of the name
  auto removed = client_.remove(kube::kPods, w.ns, name, options);
  if (!removed.ok() && removed.error().code != util::ErrorCode::kNotFound) return removed;
  if (!removed.ok()) {
    ctx.pods.erase(name);
    return {};
  }
  if (pod) {
    // Until the watch shows it, treat the pod as terminating (the API has accepted the deletion).
    Json terminating = *pod;
    terminating["metadata"]["deletionTimestamp"] = util::formatTime(clock_.wallNow());
    rememberPod(ctx, metaString(*pod, "resourceVersion"), std::move(terminating));
  }
  kLog.info("deleted pod " + name + ": " + why, {.object = {w.ns, w.name}, .values = {{"pod", name}}});
  event(ctx, controller::EventType::kNormal, "PodDeleted", "deleted pod " + name + ": " + why);
  return {};
}

util::Status Reconciler::demotePod(Context& ctx, const std::string& name) {
  // Fenced like every label write (the stamp test); any incarnation of the name may be demoted. The token
  // annotation is set, then removed: that works whether or not the pod has one.
  const Json ops = Json::array({
      {{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(ctx.term())}},
      {{"op", "add"}, {"path", labelPointer(kLabelRole)}, {"value", kRoleStandby}},
      {{"op", "add"}, {"path", annotationPointer(kAnnotationFencingToken)}, {"value", ""}},
      {{"op", "remove"}, {"path", annotationPointer(kAnnotationFencingToken)}},
  });
  auto status = patchPod(ctx, name, ops);
  if (!status.ok() && status.error().code == util::ErrorCode::kNotFound) return {};  // gone: nothing to demote
  return status;
}

util::Status Reconciler::patchPod(Context& ctx, const std::string& name, const Json& patch_ops) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Json* pod = ctx.pod(name);
  const std::string base = pod ? metaString(*pod, "resourceVersion") : "";
  auto patched = client_.jsonPatch(kube::kPods, ctx.workload.ns, name, patch_ops);
  if (!patched.ok()) {
    const util::Error& error = patched.error();
    if (error.code == util::ErrorCode::kNotFound) {
      ctx.pods.erase(name);
      return std::move(patched).takeError();
    }
    // Refused by the fence (or the uid test): someone newer acts, or our view is wrong. Read, decide again.
    if (error.code == util::ErrorCode::kInvalid || error.code == util::ErrorCode::kConflict) {
      return refused(ctx, name, error);
    }
    noteUnknownOutcome(ctx, name, error);
    return std::move(patched).takeError();
  }
  noteLabelWrite(ctx, *patched);
  rememberPod(ctx, base, std::move(*patched));
  ctx.confirmed.insert(name);
  return {};
}

util::Status Reconciler::removeSwitchoverAnnotation(Context& ctx, const std::string& value) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Workload& w = ctx.workload;
  // Only the request we acted on: a new one the user wrote meanwhile stays (the test fails, and its watch event
  // brings us back).
  const std::string path = annotationPointer(kAnnotationSwitchoverTo);
  const Json ops =
      Json::array({{{"op", "test"}, {"path", path}, {"value", value}}, {{"op", "remove"}, {"path", path}}});
  auto patched = client_.jsonPatch(kWorkloads, w.ns, w.name, ops);
  if (!patched.ok()) {
    const util::ErrorCode code = patched.error().code;
    if (code == util::ErrorCode::kNotFound || code == util::ErrorCode::kInvalid) return {};
    return std::move(patched).takeError();
  }
  stripObject(*patched);
  const std::string version = metaString(*patched, "resourceVersion");
  recent_.record("workloads/" + w.key(), ctx.workload_version, std::move(*patched));
  ctx.workload_version = version;
  ctx.workload.switchover_to.clear();
  return {};
}

util::Status Reconciler::patchStatus(Context& ctx, const Json& status_patch) {
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  const Workload& w = ctx.workload;
  // A merge patch on the status subresource: no resourceVersion, so a concurrent spec edit does not make it fail;
  // keys we no longer set are sent as null.
  auto patched = client_.mergePatch(kWorkloads, w.ns, w.name, {{"status", status_patch}}, "status");
  if (!patched.ok()) {
    if (patched.error().code == util::ErrorCode::kNotFound) return {};
    return std::move(patched).takeError();
  }
  stripObject(*patched);
  const std::string version = metaString(*patched, "resourceVersion");
  recent_.record("workloads/" + w.key(), ctx.workload_version, std::move(*patched));
  ctx.workload_version = version;
  return {};
}

void Reconciler::event(Context& ctx, controller::EventType type, const std::string& reason,
                       const std::string& message) {
  ctx.events.push_back({type, reason, message});
}

void Reconciler::flushEvents(Context& ctx) {
  for (const Context::PendingEvent& e : ctx.events) {
    if (!ctx.gate.mayWrite()) return;
    events_.record(ctx.workload.objectReference(), e.type, e.reason, e.message);
  }
  ctx.events.clear();
}

void Reconciler::rememberPod(Context& ctx, const std::string& base_version, Json pod) {
  stripPod(pod);
  const std::string name = metaString(pod, "name");
  // Not for a pod our cache has never shown (see createPod).
  if (!base_version.empty()) recent_.record("pods/" + ctx.workload.ns + "/" + name, base_version, pod);
  ctx.pods[name] = std::move(pod);
}

}  // namespace singleton::op
