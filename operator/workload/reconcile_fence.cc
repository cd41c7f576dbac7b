// The label fence (docs/design.md, "Operator self-fencing"): every pod of a workload carries annotation
// singleton.dev/operator-term, the term of the operator leader that owns its labels. A term stamps a pod by
// compare-and-swap (only over a lower or absent stamp) before its first label write in the workload, and every
// label write is a JSON Patch whose first operation `test`s that the stamp is still its own term. The apiserver
// evaluates the patch against the stored object inside its own compare-and-swap on etcd, so a label write of an
// earlier term that arrives after the stamp (held on the wire, sent by a paused process) is refused (422), however
// late it arrives. Pods are created with their creator's stamp, and a workload whose labels need no change gets no
// stamp: steady state and an operator takeover write nothing; a term's first label change in a workload first
// stamps each of its pods that a different term stamped (one PATCH each).
//
// Also here: label writes whose outcome is unknown (the cache shortcut is off until a read shows the pods), and the
// floor below which no fencing token is issued again (a deleted or regressed Lease).
#include <algorithm>

#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

// The compare-and-swap on a stamp gives up after this many refusals in one reconcile (the pod keeps changing).
constexpr int kStampAttempts = 3;

util::Error staleTerm(const Context& ctx, const std::string& pod, long long stamp) {
  util::Error error = util::makeError(util::ErrorCode::kCancelled, "pod " + pod + " is stamped by operator term " +
                                                                       std::to_string(stamp) + ", ours is " +
                                                                       std::to_string(ctx.term()));
  error.reason = kReasonStaleTerm;
  return error;
}

// No answer, or one that does not say whether the write was applied: it may have been, now or later.
bool outcomeUnknown(const util::Error& error) {
  switch (error.code) {
    case util::ErrorCode::kNetwork:
    case util::ErrorCode::kTimeout:
    case util::ErrorCode::kCancelled:
    case util::ErrorCode::kServerError:
    case util::ErrorCode::kBadResponse:
    case util::ErrorCode::kInternal:
      return true;
    default:
      return false;
  }
}

bool isRefusal(util::ErrorCode code) {
  // 422: a `test` failed; 409: the apiserver's own compare-and-swap lost, or a resourceVersion precondition.
  return code == util::ErrorCode::kInvalid || code == util::ErrorCode::kConflict;
}

}  // namespace

util::Status Reconciler::fenceLabels(Context& ctx) {
  std::vector<std::string> names;
  for (const auto& [name, pod] : ctx.pods) {
    if (integerAnnotationOf(pod, kAnnotationOperatorTerm) != std::optional<long long>(ctx.term()))
      names.push_back(name);
  }
  for (const std::string& name : names) {
    if (auto s = stampPod(ctx, name); !s.ok()) return s;
  }
  return {};
}

util::Status Reconciler::stampPod(Context& ctx, const std::string& name) {
  const Workload& w = ctx.workload;
  const long long term = ctx.term();
  for (int attempt = 0; attempt < kStampAttempts; ++attempt) {
    const Json* pod = ctx.pod(name);
    if (!pod) return {};
    const auto stamp_text = annotationOf(*pod, kAnnotationOperatorTerm);
    const auto stamp = integerAnnotationOf(*pod, kAnnotationOperatorTerm);
    if (stamp && *stamp > term) return staleTerm(ctx, name, *stamp);
    if (stamp == std::optional<long long>(term)) return {};
    if (auto s = allowWrite(ctx); !s.ok()) return s;

    // Compare-and-swap: over the stamp we saw (other changes to the pod do not matter), or, without one, over the
    // whole pod (its resourceVersion).
    Json ops = Json::array();
    if (stamp_text) {
      ops.push_back({{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", *stamp_text}});
    } else {
      ops.push_back(
          {{"op", "test"}, {"path", "/metadata/resourceVersion"}, {"value", metaString(*pod, "resourceVersion")}});
    }
    const bool has_annotations =
        (*pod)["metadata"].contains("annotations") && (*pod)["metadata"]["annotations"].is_object();
    if (has_annotations) {
      ops.push_back(
          {{"op", "add"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(term)}});
    } else {
      ops.push_back({{"op", "add"},
                     {"path", "/metadata/annotations"},
                     {"value", {{kAnnotationOperatorTerm, std::to_string(term)}}}});
    }
    const std::string base = metaString(*pod, "resourceVersion");
    auto patched = client_.jsonPatch(kube::kPods, w.ns, name, ops);
    if (patched.ok()) {
      // The answer is the pod as stored at the stamp: every label an earlier term wrote before it is in it, and
      // none can be written after it.
      noteLabelWrite(ctx, *patched);
      rememberPod(ctx, base, std::move(*patched));
      ctx.confirmed.insert(name);
      return {};
    }
    const util::Error& error = patched.error();
    if (error.code == util::ErrorCode::kNotFound) {
      ctx.pods.erase(name);
      return {};
    }
    if (!isRefusal(error.code)) {
      noteUnknownOutcome(ctx, name, error);
      return std::move(patched).takeError();
    }
    // The pod is not as we saw it: read it and decide again (a newer stamp stops us above).
    auto fresh = client_.get(kube::kPods, w.ns, name);
    if (!fresh.ok()) {
      if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
      ctx.pods.erase(name);
      return {};
    }
    stripPod(*fresh);
    ctx.pods[name] = std::move(*fresh);
    ctx.confirmed.insert(name);
  }
  util::Error error = util::makeError(util::ErrorCode::kConflict, "pod " + name + " kept changing while stamped");
  error.reason = kReasonFenced;
  return error;
}

util::Status Reconciler::refused(Context& ctx, const std::string& name, const util::Error& error) {
  const Workload& w = ctx.workload;
  kLog.info("a fenced write to pod " + name + " was refused; reading it again",
            {.err = error.describe(), .object = {w.ns, w.name}, .values = {{"pod", name}}});
  // Whatever the cause, our view of the workload's pods is wrong: the next reconcile reads them from the API.
  {
    std::lock_guard lock(mutex_);
    unconfirmed_.insert(w.key());
  }
  const Json* seen = ctx.pod(name);
  const std::string base = seen ? metaString(*seen, "resourceVersion") : "";
  auto fresh = client_.get(kube::kPods, w.ns, name);
  if (!fresh.ok()) {
    if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
    ctx.pods.erase(name);
  } else {
    if (const auto stamp = integerAnnotationOf(*fresh, kAnnotationOperatorTerm); stamp && *stamp > ctx.term()) {
      return staleTerm(ctx, name, *stamp);
    }
    // What the API showed, for the next reconcile too while the cache still shows what we saw.
    rememberPod(ctx, base, std::move(*fresh));
  }
  util::Error out =
      util::makeError(util::ErrorCode::kConflict, "fenced write to pod " + name + " refused: " + error.message);
  out.reason = kReasonFenced;
  return out;
}

void Reconciler::noteUnknownOutcome(const Context& ctx, const std::string& name, const util::Error& error) {
  if (!outcomeUnknown(error)) return;
  kLog.warn(
      "a label write to pod " + name + " has an unknown outcome; the pods are read from the API until it is known",
      {.err = error.describe(), .object = {ctx.workload.ns, ctx.workload.name}, .values = {{"pod", name}}});
  std::lock_guard lock(mutex_);
  unconfirmed_.insert(ctx.workload.key());
}

void Reconciler::noteLabelsConfirmed(const Context& ctx, std::uint64_t revision) {
  std::lock_guard lock(mutex_);
  unconfirmed_.erase(ctx.workload.key());
  // A write of unknown outcome that was applied before these reads is at or below `revision`: a cache that is past
  // it shows it.
  std::uint64_t& last = label_writes_[ctx.workload.key()];
  last = std::max(last, revision);
}

long long Reconciler::highestTokenSeen(const Context& ctx) const {
  long long highest = ctx.lease ? ctx.token() : -1;
  {
    std::lock_guard lock(mutex_);
    if (const auto it = tokens_seen_.find(ctx.workload.key()); it != tokens_seen_.end())
      highest = std::max(highest, it->second.token);
  }
  if (const auto it = ctx.workload.status.find("fencingToken");
      it != ctx.workload.status.end() && it->is_number_integer()) {
    highest = std::max(highest, it->get<long long>());
  }
  for (const auto& [name, pod] : ctx.pods) {
    if (const auto token = integerAnnotationOf(pod, kAnnotationFencingToken)) highest = std::max(highest, *token);
  }
  return highest;
}

}  // namespace singleton::op
