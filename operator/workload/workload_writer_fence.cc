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
// Also here: label writes whose outcome is unknown (the cache shortcut is off until a read shows the pods), and
// when the pod cache can be trusted for leader labels at all.
#include <algorithm>
#include <limits>

#include "operator/workload/informers.h"
#include "operator/workload/workload_writer.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

// The compare-and-swap on a stamp gives up after this many refusals in one reconcile (the pod keeps changing).
constexpr int kStampAttempts = 3;

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

util::Error Writer::staleTerm(const std::string& pod_name, long long stamp) const {
  util::Error error =
      util::makeError(util::ErrorCode::kCancelled, "pod " + pod_name + " is stamped by operator term " +
                                                       std::to_string(stamp) + ", ours is " + std::to_string(term()));
  error.reason = kReasonStaleTerm;
  return error;
}

util::Status Writer::fenceLabels() {
  std::vector<std::string> names;
  for (const auto& [name, pod_object] : objects_.pods) {
    if (integerAnnotationOf(pod_object, kAnnotationOperatorTerm) != std::optional<long long>(term()))
      names.push_back(name);
  }
  for (const std::string& name : names) {
    if (auto s = stampPod(name); !s.ok()) return s;
  }
  return {};
}

util::Status Writer::stampPod(const std::string& name) {
  const Workload& w = workload();
  const long long our_term = term();
  for (int attempt = 0; attempt < kStampAttempts; ++attempt) {
    const Json* seen = pod(name);
    if (!seen) return {};
    const auto stamp_text = annotationOf(*seen, kAnnotationOperatorTerm);
    const auto stamp = integerAnnotationOf(*seen, kAnnotationOperatorTerm);
    if (stamp && *stamp > our_term) return staleTerm(name, *stamp);
    if (stamp == std::optional<long long>(our_term)) return {};
    if (auto s = allowWrite(); !s.ok()) return s;

    // Compare-and-swap: over the stamp we saw (other changes to the pod do not matter), or, without one, over the
    // whole pod (its resourceVersion).
    Json ops = Json::array();
    if (stamp_text) {
      ops.push_back({{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", *stamp_text}});
    } else {
      ops.push_back(
          {{"op", "test"}, {"path", "/metadata/resourceVersion"}, {"value", metaString(*seen, "resourceVersion")}});
    }
    const bool has_annotations =
        (*seen)["metadata"].contains("annotations") && (*seen)["metadata"]["annotations"].is_object();
    if (has_annotations) {
      ops.push_back(
          {{"op", "add"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(our_term)}});
    } else {
      ops.push_back({{"op", "add"},
                     {"path", "/metadata/annotations"},
                     {"value", {{kAnnotationOperatorTerm, std::to_string(our_term)}}}});
    }
    const std::string base = metaString(*seen, "resourceVersion");
    auto patched = client_.jsonPatch(kube::kPods, w.ns, name, ops);
    if (patched.ok()) {
      // The answer is the pod as stored at the stamp: every label an earlier term wrote before it is in it, and
      // none can be written after it.
      noteLabelWrite(*patched);
      rememberPod(base, std::move(*patched));
      confirmed_.insert(name);
      return {};
    }
    const util::Error& error = patched.error();
    if (error.code == util::ErrorCode::kNotFound) {
      objects_.pods.erase(name);
      return {};
    }
    if (!isRefusal(error.code)) {
      noteUnknownOutcome(name, error);
      return std::move(patched).takeError();
    }
    // The pod is not as we saw it: read it and decide again (a newer stamp stops us above).
    auto fresh = readPod(name);
    if (!fresh.ok()) {
      if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
      objects_.pods.erase(name);
      return {};
    }
    stripPod(*fresh);
    objects_.pods[name] = std::move(*fresh);
    confirmed_.insert(name);
  }
  util::Error error = util::makeError(util::ErrorCode::kConflict, "pod " + name + " kept changing while stamped");
  error.reason = kReasonFenced;
  return error;
}

util::Status Writer::refused(const std::string& name, const util::Error& error) {
  const Workload& w = workload();
  kLog.info("a fenced write to pod " + name + " was refused; reading it again",
            {.err = error.describe(), .object = {w.ns, w.name}, .values = {{"pod", name}}});
  // Whatever the cause, our view of the workload's pods is wrong: the next reconcile reads them from the API.
  memory_.noteUnconfirmed(w.key());
  const Json* seen = pod(name);
  const std::string base = seen ? metaString(*seen, "resourceVersion") : "";
  auto fresh = readPod(name);
  if (!fresh.ok()) {
    if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
    objects_.pods.erase(name);
  } else {
    if (const auto stamp = integerAnnotationOf(*fresh, kAnnotationOperatorTerm); stamp && *stamp > term()) {
      return staleTerm(name, *stamp);
    }
    // What the API showed, for the next reconcile too while the cache still shows what we saw.
    rememberPod(base, std::move(*fresh));
  }
  util::Error out =
      util::makeError(util::ErrorCode::kConflict, "fenced write to pod " + name + " refused: " + error.message);
  out.reason = kReasonFenced;
  return out;
}

void Writer::noteUnknownOutcome(const std::string& name, const util::Error& error) {
  if (!outcomeUnknown(error)) return;
  const Workload& w = workload();
  kLog.warn(
      "a label write to pod " + name + " has an unknown outcome; the pods are read from the API until it is known",
      {.err = error.describe(), .object = {w.ns, w.name}, .values = {{"pod", name}}});
  memory_.noteUnconfirmed(w.key());
}

void Writer::noteLabelWrite(const Json& pod_object) {
  // An unreadable version counts as the highest: the cache can then never be shown to cover it.
  const std::uint64_t revision =
      kube::revisionOf(metaString(pod_object, "resourceVersion")).value_or(std::numeric_limits<std::uint64_t>::max());
  memory_.noteLabelWrite(workload().key(), revision);
}

bool Writer::podCacheCoversLabels() const {
  // Every leader label was written by an operator leader: by an earlier one before this replica's own Lease write
  // (leadingSince), or by this replica. etcd orders all writes by one revision, and the cache applies changes in that
  // order, so a cache past both revisions shows all of them; this reconcile's own writes are in the view from the
  // API's answers, and no other reconcile of the workload runs meanwhile.
  // A label write of ours whose outcome is unknown may be applied at a revision we do not know: no cache position
  // covers it until a read from the API has shown the pods (confirmPodsFromApi).
  if (observation_.labels_unconfirmed) return false;
  const std::uint64_t since = gate_.leadingSince();
  return since != 0 && observation_.pods_cache_revision >= since &&
         observation_.pods_cache_revision >= observation_.labels_written_at;
}

util::Status Writer::confirmPodsFromApi() {
  std::vector<std::string> names;
  for (const auto& [name, pod_object] : objects_.pods) {
    if (!confirmed_.contains(name)) names.push_back(name);
  }
  std::uint64_t read_at = 0;
  for (const std::string& name : names) {
    auto fresh = readPod(name);
    if (!fresh.ok()) {
      if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
      objects_.pods.erase(name);
      continue;
    }
    read_at = std::max(read_at, kube::revisionOf(metaString(*fresh, "resourceVersion")).value_or(0));
    stripPod(*fresh);
    objects_.pods[name] = std::move(*fresh);
    confirmed_.insert(name);
  }
  // A pod that shows another term's stamp (recreated, or our view of it was old) gets ours first.
  if (auto s = fenceLabels(); !s.ok()) return s;
  memory_.noteLabelsConfirmed(workload().key(), read_at);
  return {};
}

}  // namespace singleton::op
