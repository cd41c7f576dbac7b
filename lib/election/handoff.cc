#include "election/handoff.h"

#include "election/timings.h"
#include "kube/object.h"
#include "util/duration.h"

namespace singleton::election {
namespace {

using Json = nlohmann::json;

std::string stringAt(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

const char* ackedByName(AckedBy by) {
  switch (by) {
    case AckedBy::kAgent:
      return "agent";
    case AckedBy::kPodGone:
      return "pod-gone";
    case AckedBy::kContainersTerminated:
      return "containers-terminated";
    case AckedBy::kLeaseExpired:
      return "lease-expired";
  }
  return "agent";
}

HandoffView parseHandoff(const Json& lease) {
  HandoffView view;
  if (!lease.is_object()) return view;
  static const Json kEmpty = Json::object();
  const Json& metadata = lease.contains("metadata") && lease["metadata"].is_object() ? lease["metadata"] : kEmpty;
  const Json& spec = lease.contains("spec") && lease["spec"].is_object() ? lease["spec"] : kEmpty;
  const Json& annotations =
      metadata.contains("annotations") && metadata["annotations"].is_object() ? metadata["annotations"] : kEmpty;
  view.holder = stringAt(spec, "holderIdentity");
  if (auto it = spec.find("leaseTransitions"); it != spec.end() && it->is_number_integer()) {
    view.token = it->get<long long>();
  }
  if (auto it = spec.find("leaseDurationSeconds"); it != spec.end() && it->is_number_integer()) {
    view.lease_duration_seconds = it->get<int>();
  }
  view.resource_version = stringAt(metadata, "resourceVersion");
  view.holder_uid = stringAt(annotations, kLeaderUidAnnotation);
  view.from = stringAt(annotations, kHandoffFromAnnotation);
  view.from_uid = stringAt(annotations, kHandoffFromUidAnnotation);
  view.acked_by = stringAt(annotations, kHandoffAckedByAnnotation);
  view.acked = stringAt(annotations, kHandoffAckedAnnotation) == std::to_string(view.token);
  view.complete = view.from.empty() || view.acked;
  return view;
}

bool mayBeActive(const HandoffView& view, const std::string& pod_name, const std::string& pod_uid) {
  return !pod_name.empty() && !pod_uid.empty() && view.holder == pod_name && view.holder_uid == pod_uid &&
         view.complete;
}

bool mustAck(const HandoffView& view, const std::string& pod_name, const std::string& pod_uid) {
  return !pod_name.empty() && !pod_uid.empty() && view.from == pod_name && view.from_uid == pod_uid && !view.complete;
}

Json ackMergePatch(const HandoffView& view, AckedBy by) {
  return {{"metadata",
           {{"resourceVersion", view.resource_version},
            {"annotations",
             {{kHandoffAckedAnnotation, std::to_string(view.token)}, {kHandoffAckedByAnnotation, ackedByName(by)}}}}}};
}

Json ackJsonPatch(const HandoffView& view, AckedBy by) {
  return Json::array({
      {{"op", "test"}, {"path", "/metadata/resourceVersion"}, {"value", view.resource_version}},
      {{"op", "add"},
       {"path", kube::annotationPointer(kHandoffAckedAnnotation)},
       {"value", std::to_string(view.token)}},
      {{"op", "add"}, {"path", kube::annotationPointer(kHandoffAckedByAnnotation)}, {"value", ackedByName(by)}},
  });
}

util::Status checkAgentTimings(util::Millis lease_duration, util::Millis renew_deadline, util::Millis stop_bound) {
  const util::Millis margin = driftMargin(lease_duration);
  if (lease_duration <= util::Millis(0) || renew_deadline <= util::Millis(0) || stop_bound < util::Millis(0) ||
      renew_deadline + stop_bound + margin > lease_duration) {
    return util::makeError(util::ErrorCode::kInvalidArgument,
                           "renew deadline (" + util::formatDuration(renew_deadline) + ") + stop bound (" +
                               util::formatDuration(stop_bound) + ") + drift margin (" + util::formatDuration(margin) +
                               ", 10% of the lease) must not exceed the Lease's duration (" +
                               util::formatDuration(lease_duration) + ")");
  }
  return {};
}

}  // namespace singleton::election
