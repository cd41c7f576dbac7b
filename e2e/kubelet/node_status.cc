#include "node_status.h"

#include <algorithm>
#include <cctype>

#include "kube/object.h"
#include "util/time_format.h"

namespace singleton::sim {
namespace {

constexpr const char* kNotReadyTaint = "node.kubernetes.io/not-ready";
constexpr const char* kUnreachableTaint = "node.kubernetes.io/unreachable";

Json resources() { return {{"cpu", "32"}, {"memory", "256Gi"}, {"pods", "1000"}, {"ephemeral-storage", "1Ti"}}; }

Json condition(const Json& current_conditions, const char* type, const char* status, const char* reason,
               const char* message, const std::string& now) {
  std::string since = now;
  if (const Json* old = findByType(current_conditions, type);
      old != nullptr && stringField(*old, "status") == status && !stringField(*old, "lastTransitionTime").empty()) {
    since = stringField(*old, "lastTransitionTime");
  }
  return {{"type", type},       {"status", status},         {"reason", reason},
          {"message", message}, {"lastHeartbeatTime", now}, {"lastTransitionTime", since}};
}

}  // namespace

Json nodeStatus(const std::string& name, const Json& current, util::WallTime now) {
  const std::string time = util::formatTime(now);
  const Json& conditions = arrayField(objectField(current, "status"), "conditions");
  return {
      {"capacity", resources()},
      {"allocatable", resources()},
      {"conditions",
       Json::array({
           condition(conditions, "MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available", time),
           condition(conditions, "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     time),
           condition(conditions, "PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available", time),
           condition(conditions, "Ready", "True", "KubeletReady", "kubelet is posting ready status", time),
       })},
      {"addresses",
       Json::array({{{"type", "InternalIP"}, {"address", "127.0.0.1"}}, {{"type", "Hostname"}, {"address", name}}})},
      {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", 10250}}}}},
      {"nodeInfo",
       {{"machineID", name},
        {"systemUUID", name},
        {"bootID", name},
        {"kernelVersion", "sim"},
        {"osImage", "singleton-sim-kubelet"},
        {"containerRuntimeVersion", "sim://0.1.0"},
        {"kubeletVersion", "v1.20.2"},
        {"kubeProxyVersion", "v1.20.2"},
        {"operatingSystem", "linux"},
        {"architecture", "amd64"}}},
  };
}

Json nodeObject(const std::string& name, util::WallTime now) {
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata",
           {{"name", name},
            {"labels",
             {{"kubernetes.io/hostname", name},
              {"kubernetes.io/os", "linux"},
              {"kubernetes.io/arch", "amd64"},
              {kManagedLabel, "true"}}}}},
          {"spec", Json::object()},
          {"status", nodeStatus(name, Json(), now)}};
}

std::optional<Json> taintsWithoutNotReady(const Json& node) {
  const Json& taints = arrayField(objectField(node, "spec"), "taints");
  Json kept = Json::array();
  for (const Json& taint : taints) {
    const std::string key = stringField(taint, "key");
    if (key != kNotReadyTaint && key != kUnreachableTaint) kept.push_back(taint);
  }
  if (kept.size() == taints.size()) return std::nullopt;
  return kept;
}

bool heartbeatStopped(const Json& node) {
  std::string value = kube::annotationOf(node, kHeartbeatAnnotation).value_or("");
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
  return value == "stopped";
}

kube::Lease nodeLease(const std::string& name, const std::string& node_uid, util::WallTime now) {
  kube::Lease lease;
  lease.name = name;
  lease.ns = kNodeLeaseNamespace;
  lease.spec.holder_identity = name;
  lease.spec.lease_duration_seconds = kNodeLeaseDurationSeconds;
  lease.spec.renew_time = now;
  if (!node_uid.empty()) {
    lease.raw = {{"metadata",
                  {{"ownerReferences",
                    Json::array({{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", name}, {"uid", node_uid}}})}}}};
  }
  return lease;
}

}  // namespace singleton::sim
