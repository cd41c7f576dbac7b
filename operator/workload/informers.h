// The controller's view of the cluster: one Cache per kind (filled by a Reflector in production, directly by unit
// tests), an index of pods by workload, and the transforms that keep the caches small.
#pragma once

#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "watch/cache.h"

namespace singleton::op {

using Json = nlohmann::json;

// Pod keys ("ns/name") by workload key ("ns/<singleton.dev/workload label>"), kept by a Cache listener, so a reconcile
// reads its few pods instead of scanning a namespace.
class PodIndex {
 public:
  void apply(const watch::Event& event);
  std::vector<std::string> podKeys(const std::string& workload_key) const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::string> workload_of_;        // pod key -> workload key
  std::unordered_map<std::string, std::set<std::string>> pods_of_;  // workload key -> pod keys
};

struct Informers {
  Informers();  // registers the index listener first, so it has seen a change before any other listener runs
  Informers(const Informers&) = delete;
  Informers& operator=(const Informers&) = delete;

  bool synced() const;

  watch::Cache workloads;
  watch::Cache pods;      // labelSelector singleton.dev/workload
  watch::Cache leases;    // labelSelector singleton.dev/workload
  watch::Cache services;  // labelSelector singleton.dev/workload
  PodIndex pod_index;
  // The resourceVersion up to which `pods` has applied every change (its reflector's position, bookmarks included);
  // unset or "" when unknown, e.g. in unit tests that fill the caches directly.
  std::function<std::string()> pods_resource_version;
};

// "ns/<label singleton.dev/workload>" of a pod, Lease or Service; "" when it has no such label.
std::string workloadKeyOf(const Json& object);

// Transforms applied before objects enter a cache (memory target: 1,000 workloads x 3 pods in 64 MiB). Each keeps
// exactly what the reconciler reads.
// Any object: drops metadata.managedFields and kubectl's last-applied-configuration annotation.
void stripObject(Json& object);
// Pods: also drops spec and every status field except phase, the Ready condition and each container's state key
// (running / waiting / terminated, without details; the template hash annotation tells whether a pod is current, so
// the spec is never needed).
void stripPod(Json& pod);
// Services: also drops status.
void stripService(Json& service);

}  // namespace singleton::op
