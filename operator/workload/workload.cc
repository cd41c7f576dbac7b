#include "operator/workload/workload.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "util/time_format.h"

namespace singleton::op {
namespace {

using kube::fieldOf;
using kube::metadataOf;

std::optional<std::int64_t> intField(const Json& object, std::string_view key) {
  const Json* value = fieldOf(object, key);
  if (!value || !value->is_number_integer()) return std::nullopt;
  return value->get<std::int64_t>();
}

// Copies string entries of `from` (a labels or annotations map) into `to`, skipping the reserved singleton.dev/ keys
// that only the operator sets.
void copyUserEntries(const Json* from, Json& to) {
  if (!from || !from->is_object()) return;
  for (const auto& [key, value] : from->items()) {
    if (key.starts_with("singleton.dev/") || !value.is_string()) continue;
    to[key] = value;
  }
}

// Prepends the agent's identity (docs/handoff.md) to one container's env, skipping each name the container already
// sets: the template's own value wins. Prepended, so the template's later entries may refer to them as $(POD_NAME).
// An env that is not an array is left for the apiserver to refuse.
void injectIdentity(Json& container, const Json& identity) {
  if (!container.is_object()) return;
  Json& env = container["env"];
  if (env.is_null()) env = Json::array();
  if (!env.is_array()) return;
  Json merged = Json::array();
  for (const Json& entry : identity) {
    const bool set = std::any_of(env.begin(), env.end(), [&](const Json& existing) {
      const auto name = existing.is_object() ? existing.find("name") : existing.end();
      return name != existing.end() && *name == entry["name"];
    });
    if (!set) merged.push_back(entry);
  }
  for (Json& existing : env) merged.push_back(std::move(existing));
  env = std::move(merged);
}

}  // namespace

util::Result<Workload> Workload::fromJson(const Json& object) {
  const Json* metadata = metadataOf(object);
  if (!metadata) return util::makeError(util::ErrorCode::kInvalidArgument, "SingletonWorkload without metadata");
  Workload w;
  w.ns = metaString(object, "namespace");
  w.name = metaString(object, "name");
  w.uid = metaString(object, "uid");
  if (w.name.empty()) return util::makeError(util::ErrorCode::kInvalidArgument, "SingletonWorkload without a name");
  w.generation = intField(*metadata, "generation").value_or(0);
  w.deleting = fieldOf(*metadata, "deletionTimestamp") != nullptr;
  w.switchover_to = annotationOf(object, kAnnotationSwitchoverTo).value_or("");

  const Json* spec = fieldOf(object, "spec");
  const Json* pod_template = spec ? fieldOf(*spec, "template") : nullptr;
  if (!pod_template || !pod_template->is_object()) {
    return util::makeError(util::ErrorCode::kInvalidArgument, "SingletonWorkload " + w.key() + ": no spec.template");
  }
  w.pod_template = *pod_template;
  w.template_hash = templateHash(w.pod_template);
  // The schema bounds these; out-of-range values from an object the apiserver did not validate fall back to defaults.
  if (const auto replicas = intField(*spec, "replicas"); replicas && *replicas >= 0 && *replicas <= 100) {
    w.replicas = static_cast<int>(*replicas);
  }
  if (const auto seconds = intField(*spec, "leaseDurationSeconds"); seconds && *seconds >= 1 && *seconds <= 3600) {
    w.lease_duration_seconds = static_cast<int>(*seconds);
  }
  if (const Json* mode = fieldOf(*spec, "handoff"); mode && mode->is_string()) {
    if (*mode == "WaitForStop") w.handoff = HandoffMode::kWaitForStop;
    if (*mode == "Immediate") w.handoff = HandoffMode::kImmediate;
  }
  if (const Json* service = fieldOf(*spec, "service"); service && service->is_object()) w.service = *service;
  if (const Json* status = fieldOf(object, "status"); status && status->is_object()) w.status = *status;
  return w;
}

const char* handoffModeName(HandoffMode mode) {
  switch (mode) {
    case HandoffMode::kWaitForStop:
      return "WaitForStop";
    case HandoffMode::kImmediate:
      return "Immediate";
    case HandoffMode::kAuto:
      break;
  }
  return "Auto";
}

HandoffMode Workload::effectiveHandoff() const {
  if (handoff != HandoffMode::kAuto) return handoff;
  return templateRunsAgent(pod_template) ? HandoffMode::kWaitForStop : HandoffMode::kImmediate;
}

Json Workload::ownerReference() const {
  return {
      {"apiVersion", kWorkloadApiVersion}, {"kind", kWorkloadKind}, {"name", name}, {"uid", uid}, {"controller", true},
      {"blockOwnerDeletion", true}};
}

kube::ObjectReference Workload::objectReference() const {
  return {std::string(kWorkloadApiVersion), std::string(kWorkloadKind), ns, name, uid};
}

bool isTerminating(const Json& pod) {
  const Json* metadata = metadataOf(pod);
  return metadata && fieldOf(*metadata, "deletionTimestamp") != nullptr;
}

namespace {

const Json* readyCondition(const Json& pod) { return kube::conditionOf(pod, "Ready"); }

}  // namespace

bool isReady(const Json& pod) {
  const Json* condition = readyCondition(pod);
  const Json* status = condition ? fieldOf(*condition, "status") : nullptr;
  return status && status->is_string() && status->get<std::string>() == "True";
}

bool hasExited(const Json& pod) {
  const Json* status = fieldOf(pod, "status");
  const Json* phase = status ? fieldOf(*status, "phase") : nullptr;
  if (!phase || !phase->is_string()) return false;
  const auto& value = phase->get_ref<const std::string&>();
  return value == "Failed" || value == "Succeeded";
}

std::optional<int> ordinalOf(std::string_view pod_name, std::string_view workload_name) {
  if (pod_name.size() < workload_name.size() + 2 || !pod_name.starts_with(workload_name) ||
      pod_name[workload_name.size()] != '-') {
    return std::nullopt;
  }
  const std::string_view digits = pod_name.substr(workload_name.size() + 1);
  // "w-01" is not ordinal 1 of "w": the operator never makes that name, so it is someone else's pod.
  if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
  int value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || value < 0) return std::nullopt;
  return value;
}

std::optional<util::WallTime> unhealthySince(const Json& pod) {
  if (isTerminating(pod)) {
    // deletionTimestamp is when the kubelet may kill the pod: the request time plus the grace period.
    auto deadline = util::parseTime(metaString(pod, "deletionTimestamp"));
    if (!deadline.ok()) return std::nullopt;
    const Json* metadata = metadataOf(pod);
    const auto grace = metadata ? intField(*metadata, "deletionGracePeriodSeconds") : std::nullopt;
    return *deadline - std::chrono::seconds(grace.value_or(0));
  }
  if (const Json* condition = readyCondition(pod); condition && !isReady(pod)) {
    const Json* since = fieldOf(*condition, "lastTransitionTime");
    if (!since || !since->is_string()) return std::nullopt;
    auto time = util::parseTime(since->get_ref<const std::string&>());
    if (time.ok()) return *time;
  }
  return std::nullopt;
}

bool templateRunsAgent(const Json& pod_template) {
  const Json* spec = fieldOf(pod_template, "spec");
  if (!spec) return false;
  for (const char* list : {"containers", "initContainers"}) {
    const Json* containers = fieldOf(*spec, list);
    if (!containers || !containers->is_array()) continue;
    for (const Json& container : *containers) {
      const Json* command = fieldOf(container, "command");
      if (!command || !command->is_array() || command->empty() || !(*command)[0].is_string()) continue;
      const auto& program = (*command)[0].get_ref<const std::string&>();
      const auto slash = program.rfind('/');
      if ((slash == std::string::npos ? program : program.substr(slash + 1)) == "singleton-agent") return true;
    }
  }
  return false;
}

bool containersTerminated(const Json& pod) {
  if (hasExited(pod)) return true;
  const Json* status = fieldOf(pod, "status");
  const Json* statuses = status ? fieldOf(*status, "containerStatuses") : nullptr;
  if (!statuses || !statuses->is_array() || statuses->empty()) return false;
  for (const Json& container : *statuses) {
    const Json* state = fieldOf(container, "state");
    if (!state || !fieldOf(*state, "terminated")) return false;
  }
  return true;
}

std::string templateHash(const Json& pod_template) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : pod_template.dump()) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

Json agentIdentityEnv(const std::string& workload_name) {
  const auto field = [](const char* path) { return Json{{"fieldRef", {{"fieldPath", path}}}}; };
  return Json::array({{{"name", kEnvWorkload}, {"value", workload_name}},
                      {{"name", kEnvPodName}, {"valueFrom", field("metadata.name")}},
                      {{"name", kEnvPodNamespace}, {"valueFrom", field("metadata.namespace")}},
                      {{"name", kEnvPodUid}, {"valueFrom", field("metadata.uid")}}});
}

Json desiredPod(const Workload& workload, int ordinal, long long operator_term) {
  const Json* template_metadata = fieldOf(workload.pod_template, "metadata");
  Json labels = Json::object();
  Json annotations = Json::object();
  if (template_metadata) {
    copyUserEntries(fieldOf(*template_metadata, "labels"), labels);
    copyUserEntries(fieldOf(*template_metadata, "annotations"), annotations);
  }
  labels[kLabelWorkload] = workload.name;
  labels[kLabelRole] = kRoleStandby;
  annotations[kAnnotationTemplateHash] = workload.template_hash;
  annotations[kAnnotationOperatorTerm] = std::to_string(operator_term);

  const Json* template_spec = fieldOf(workload.pod_template, "spec");
  Json spec = template_spec ? *template_spec : Json::object();
  // Only the pod gets the identity, never workload.pod_template: the template hash (rollout detection) stays the hash
  // of what the user wrote, so pods created before the injection existed are not rolled out for it.
  const Json identity = agentIdentityEnv(workload.name);
  for (const char* list : {"initContainers", "containers"}) {
    if (Json* containers = spec.is_object() && spec.contains(list) ? &spec[list] : nullptr;
        containers && containers->is_array()) {
      for (Json& container : *containers) injectIdentity(container, identity);
    }
  }
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", workload.podName(ordinal)},
            {"namespace", workload.ns},
            {"labels", labels},
            {"annotations", annotations},
            {"ownerReferences", Json::array({workload.ownerReference()})}}},
          {"spec", spec}};
}

}  // namespace singleton::op
