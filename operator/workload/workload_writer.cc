// Every API write of a reconcile (workload_writer.h). Each checks the write gate first, updates the current view
// with what the API returned (later steps and the status see the result), and records it in RecentWrites (the next
// reconcile sees it even before the watch delivers it).
#include "operator/workload/workload_writer.h"

#include <charconv>

#include "operator/workload/informers.h"
#include "util/log.h"
#include "util/time_format.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

}  // namespace

long long operatorTermOf(const kube::Lease& lease) {
  const auto text = annotationOf(lease.raw, kAnnotationOperatorTerm);
  if (!text) return 0;
  long long term = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), term);
  if (ec != std::errc() || end != text->data() + text->size()) return 0;
  return term;
}

Writer::Writer(const Deps& deps, const controller::WriteGate& gate, const Observation& observation,
               WorkloadObjects objects)
    : client_(deps.client),
      recent_(deps.recent),
      memory_(deps.memory),
      clock_(deps.clock),
      gate_(gate),
      observation_(observation),
      objects_(std::move(objects)),
      workload_version_(observation.workload_version) {}

const Json* Writer::pod(const std::string& name) const {
  const auto it = objects_.pods.find(name);
  return it == objects_.pods.end() ? nullptr : &it->second;
}

util::Status Writer::allowWrite() const {
  if (gate_.mayWrite()) return {};
  return util::makeError(util::ErrorCode::kCancelled, "this operator replica does not lead");
}

util::Status Writer::writeLease(kube::Lease lease) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  const long long operator_term = term();
  // Self-fencing: never overwrite a Lease that a newer operator term wrote. The compare-and-swap below makes this
  // race-free: if a newer term writes after we looked, our write fails.
  if (objects_.lease && operatorTermOf(*objects_.lease) > operator_term) {
    util::Error error = util::makeError(util::ErrorCode::kCancelled, "the Lease records a newer operator term");
    error.reason = kReasonStaleTerm;
    return error;
  }
  Json& metadata = lease.raw["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  if (!metadata["labels"].is_object()) metadata["labels"] = Json::object();
  if (!metadata["annotations"].is_object()) metadata["annotations"] = Json::object();
  metadata["labels"][kLabelWorkload] = w.name;  // our Lease informer selects on it
  metadata["annotations"][kAnnotationOperatorTerm] = std::to_string(operator_term);
  metadata["ownerReferences"] = Json::array({w.ownerReference()});
  lease.spec.lease_duration_seconds = w.lease_duration_seconds;

  const std::string key = "leases/" + w.ns + "/" + lease.name;
  const std::string base = objects_.lease ? objects_.lease->resource_version : "";
  auto written = objects_.lease ? client_.updateLease(lease) : client_.createLease(lease);
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
  objects_.lease = std::move(*written);
  return {};
}

util::Status Writer::ackHandoff(const election::HandoffView& handoff, election::AckedBy by) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  // A compare-and-swap on the version that carries this hand-off (resourceVersion in the merge patch): it completes
  // only the hand-off it read.
  const std::string key = "leases/" + w.ns + "/" + w.leaseName();
  const std::string base = objects_.lease->resource_version;
  auto patched = client_.mergePatch(kube::kLeases, w.ns, w.leaseName(), election::ackMergePatch(handoff, by));
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
  objects_.lease = std::move(*lease);
  return {};
}

util::Result<Json> Writer::readPod(const std::string& name) { return client_.get(kube::kPods, workload().ns, name); }

util::Result<bool> Writer::createPod(int ordinal) {
  if (auto s = allowWrite(); !s.ok()) return std::move(s).takeError();
  const Workload& w = workload();
  const std::string name = w.podName(ordinal);
  auto created = client_.create(kube::kPods, w.ns, desiredPod(w, ordinal, term()));
  if (!created.ok()) {
    // Not in our cache (yet, or a pod of another owner pending garbage collection): the watch tells us.
    if (created.error().code == util::ErrorCode::kAlreadyExists) return false;
    return std::move(created).takeError();
  }
  // Into this reconcile's view only, not RecentWrites: an entry for an object the cache has never shown cannot tell
  // "not seen yet" from "created and deleted since", and mistaking the second for the first would hide a deleted
  // pod. A reconcile before the watch catches up just meets AlreadyExists.
  stripPod(*created);
  objects_.pods[name] = std::move(*created);
  return true;
}

util::Status Writer::deletePod(const std::string& name, const std::string& why) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  const Json* seen = pod(name);
  kube::DeleteOptions options;
  if (seen) options.precondition_uid = metaString(*seen, "uid");  // this incarnation, not a successor of the name
  auto removed = client_.remove(kube::kPods, w.ns, name, options);
  if (!removed.ok() && removed.error().code != util::ErrorCode::kNotFound) return removed;
  if (!removed.ok()) {
    objects_.pods.erase(name);
    return {};
  }
  if (seen) {
    // Until the watch shows it, treat the pod as terminating (the API has accepted the deletion).
    Json terminating = *seen;
    terminating["metadata"]["deletionTimestamp"] = util::formatTime(clock_.wallNow());
    rememberPod(metaString(*seen, "resourceVersion"), std::move(terminating));
  }
  kLog.info("deleted pod " + name + ": " + why, {.object = {w.ns, w.name}, .values = {{"pod", name}}});
  event(controller::EventType::kNormal, "PodDeleted", "deleted pod " + name + ": " + why);
  return {};
}

util::Status Writer::demotePod(const std::string& name) {
  // Fenced like every label write (the stamp test); any incarnation of the name may be demoted. The token
  // annotation is set, then removed: that works whether or not the pod has one.
  const Json ops = Json::array({
      {{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(term())}},
      {{"op", "add"}, {"path", labelPointer(kLabelRole)}, {"value", kRoleStandby}},
      {{"op", "add"}, {"path", annotationPointer(kAnnotationFencingToken)}, {"value", ""}},
      {{"op", "remove"}, {"path", annotationPointer(kAnnotationFencingToken)}},
  });
  auto status = patchPod(name, ops);
  if (!status.ok() && status.error().code == util::ErrorCode::kNotFound) return {};  // gone: nothing to demote
  return status;
}

util::Status Writer::promotePod(const std::string& name, const std::string& uid, long long token) {
  // Fenced: the incarnation the Lease names (not a pod recreated under the same name since we looked), still
  // stamped with our term (no newer operator term has taken the workload's labels over).
  const Json ops = Json::array({
      {{"op", "test"}, {"path", "/metadata/uid"}, {"value", uid}},
      {{"op", "test"}, {"path", annotationPointer(kAnnotationOperatorTerm)}, {"value", std::to_string(term())}},
      {{"op", "add"}, {"path", labelPointer(kLabelRole)}, {"value", kRoleLeader}},
      {{"op", "add"}, {"path", annotationPointer(kAnnotationFencingToken)}, {"value", std::to_string(token)}},
  });
  return patchPod(name, ops);
}

util::Status Writer::patchPod(const std::string& name, const Json& patch_ops) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Json* seen = pod(name);
  const std::string base = seen ? metaString(*seen, "resourceVersion") : "";
  auto patched = client_.jsonPatch(kube::kPods, workload().ns, name, patch_ops);
  if (!patched.ok()) {
    const util::Error& error = patched.error();
    if (error.code == util::ErrorCode::kNotFound) {
      objects_.pods.erase(name);
      return std::move(patched).takeError();
    }
    // Refused by the fence (or the uid test): someone newer acts, or our view is wrong. Read, decide again.
    if (error.code == util::ErrorCode::kInvalid || error.code == util::ErrorCode::kConflict) {
      return refused(name, error);
    }
    noteUnknownOutcome(name, error);
    return std::move(patched).takeError();
  }
  noteLabelWrite(*patched);
  rememberPod(base, std::move(*patched));
  confirmed_.insert(name);
  return {};
}

util::Status Writer::removeSwitchoverAnnotation(const std::string& value) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
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
  rememberWorkload(std::move(*patched));
  return {};
}

util::Status Writer::deleteService() {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  kube::DeleteOptions options;
  options.precondition_uid = metaString(*objects_.service, "uid");
  auto removed = client_.remove(kube::kServices, w.ns, w.name, options);
  if (!removed.ok() && removed.error().code != util::ErrorCode::kNotFound) return removed;
  objects_.service.reset();
  return {};
}

util::Status Writer::createService(const Json& service) {
  if (auto s = allowWrite(); !s.ok()) return s;
  auto created = client_.create(kube::kServices, workload().ns, service);
  if (!created.ok()) return std::move(created).takeError();
  stripService(*created);
  objects_.service = std::move(*created);  // not in controller::RecentWrites: see createPod
  return {};
}

util::Status Writer::updateService(const Json& service) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  // A PUT of the object as read (resourceVersion included: a concurrent change makes it Conflict, and we re-read).
  auto written = client_.update(kube::kServices, w.ns, service);
  if (!written.ok()) return std::move(written).takeError();
  stripService(*written);
  recent_.record("services/" + w.ns + "/" + w.name, metaString(*objects_.service, "resourceVersion"), *written);
  objects_.service = std::move(*written);
  return {};
}

util::Status Writer::patchStatus(const Json& status_patch) {
  if (auto s = allowWrite(); !s.ok()) return s;
  const Workload& w = workload();
  // A merge patch on the status subresource: no resourceVersion, so a concurrent spec edit does not make it fail;
  // keys we no longer set are sent as null.
  auto patched = client_.mergePatch(kWorkloads, w.ns, w.name, {{"status", status_patch}}, "status");
  if (!patched.ok()) {
    if (patched.error().code == util::ErrorCode::kNotFound) return {};
    return std::move(patched).takeError();
  }
  rememberWorkload(std::move(*patched));
  return {};
}

void Writer::event(controller::EventType type, const std::string& reason, const std::string& message) {
  events_.push_back({type, reason, message});
}

void Writer::flushEvents(controller::EventRecorder& recorder) {
  for (const PendingEvent& e : events_) {
    if (!gate_.mayWrite()) return;
    recorder.record(workload().objectReference(), e.type, e.reason, e.message);
  }
  events_.clear();
}

void Writer::rememberWorkload(Json workload_object) {
  stripObject(workload_object);
  std::string version = metaString(workload_object, "resourceVersion");
  recent_.record("workloads/" + workload().key(), workload_version_, std::move(workload_object));
  workload_version_ = std::move(version);
}

void Writer::rememberPod(const std::string& base_version, Json pod_object) {
  stripPod(pod_object);
  const std::string name = metaString(pod_object, "name");
  // Not for a pod our cache has never shown (see createPod).
  if (!base_version.empty()) recent_.record("pods/" + workload().ns + "/" + name, base_version, pod_object);
  objects_.pods[name] = std::move(pod_object);
}

}  // namespace singleton::op
