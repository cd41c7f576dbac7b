#include "operator/workload/informers.h"

#include "operator/workload/workload.h"

namespace singleton::op {

void PodIndex::apply(const watch::Event& event) {
  const std::string pod_key = watch::objectKey(event.object);
  if (pod_key.empty()) return;
  const std::string workload_key = event.type == watch::EventType::kDeleted ? "" : workloadKeyOf(event.object);

  std::lock_guard lock(mutex_);
  if (const auto old = workload_of_.find(pod_key); old != workload_of_.end()) {
    if (old->second == workload_key) return;
    if (auto pods = pods_of_.find(old->second); pods != pods_of_.end()) {
      pods->second.erase(pod_key);
      if (pods->second.empty()) pods_of_.erase(pods);
    }
    workload_of_.erase(old);
  }
  if (workload_key.empty()) return;
  workload_of_[pod_key] = workload_key;
  pods_of_[workload_key].insert(pod_key);
}

std::vector<std::string> PodIndex::podKeys(const std::string& workload_key) const {
  std::lock_guard lock(mutex_);
  const auto it = pods_of_.find(workload_key);
  if (it == pods_of_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

Informers::Informers() {
  pods.addListener([this](const watch::Event& event) { pod_index.apply(event); });
}

bool Informers::synced() const {
  return workloads.hasSynced() && pods.hasSynced() && leases.hasSynced() && services.hasSynced();
}

std::string workloadKeyOf(const Json& object) {
  const std::string workload = labelOf(object, kLabelWorkload);
  if (workload.empty()) return "";
  return metaString(object, "namespace") + "/" + workload;
}

void stripObject(Json& object) {
  if (!object.is_object()) return;
  const auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return;
  metadata->erase("managedFields");
  // kubectl apply keeps a copy of the whole object here: for a workload, a second copy of its template.
  if (const auto annotations = metadata->find("annotations");
      annotations != metadata->end() && annotations->is_object()) {
    annotations->erase("kubectl.kubernetes.io/last-applied-configuration");
  }
}

void stripPod(Json& pod) {
  stripObject(pod);
  if (!pod.is_object()) return;
  pod.erase("spec");
  const auto status = pod.find("status");
  if (status == pod.end() || !status->is_object()) return;
  Json kept = Json::object();
  if (const auto phase = status->find("phase"); phase != status->end()) kept["phase"] = *phase;
  if (const auto conditions = status->find("conditions"); conditions != status->end() && conditions->is_array()) {
    for (const Json& condition : *conditions) {
      if (condition.is_object() && condition.value("type", "") == "Ready") {
        kept["conditions"] = Json::array({condition});
        break;
      }
    }
  }
  // Which state each container is in (the hand-off's containers-terminated evidence), without the details.
  if (const auto containers = status->find("containerStatuses");
      containers != status->end() && containers->is_array()) {
    Json compact = Json::array();
    for (const Json& container : *containers) {
      if (!container.is_object()) continue;
      Json state = Json::object();
      if (const auto it = container.find("state"); it != container.end() && it->is_object()) {
        for (const auto& [key, value] : it->items()) state[key] = Json::object();
      }
      compact.push_back({{"name", container.value("name", std::string())}, {"state", std::move(state)}});
    }
    kept["containerStatuses"] = std::move(compact);
  }
  *status = std::move(kept);
}

void stripService(Json& service) {
  stripObject(service);
  if (service.is_object()) service.erase("status");
}

}  // namespace singleton::op
