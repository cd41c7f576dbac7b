// What one reconcile knows about one workload: the Observation (read once by Reconciler::observe, then read-only),
// the workload's objects (handed to the Writer, which keeps them current as its writes are answered), and the
// read-only WorkloadView of them that the pure decisions (decisions.h) take. Internal to the reconciler.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "kube/lease.h"
#include "operator/workload/workload.h"

namespace singleton::op {

// The workload's objects as a reconcile sees them.
struct WorkloadObjects {
  // Every pod labelled singleton.dev/workload=<name>, ours or not, by name.
  std::map<std::string, Json> pods;
  std::optional<kube::Lease> lease;
  std::optional<Json> service;
};

// What observe() read besides the objects; never changed during the reconcile.
struct Observation {
  Workload workload;
  std::string workload_version;  // metadata.resourceVersion as observed
  // Revisions that decide whether the pods can be trusted for leader labels without reading the API (promote()): the
  // pod cache's position before the pods were read from it, and that of this replica's last leader-label write on
  // the workload's pods before this reconcile (0 = unknown / none).
  std::uint64_t pods_cache_revision = 0;
  std::uint64_t labels_written_at = 0;
  // A label write of ours on the workload had an unknown outcome (no answer, a timeout, a 5xx): it may have been
  // applied, and no read from the API has shown the pods since. The cache cannot be trusted for leader labels.
  bool labels_unconfirmed = false;

  bool waitForStop() const { return workload.effectiveHandoff() == HandoffMode::kWaitForStop; }
};

// A read-only view of a workload and its pods and Lease, as the decisions read them.
struct WorkloadView {
  const Workload& workload;
  const std::map<std::string, Json>& pods;
  const std::optional<kube::Lease>& lease;

  const Json* pod(const std::string& name) const {
    const auto it = pods.find(name);
    return it == pods.end() ? nullptr : &it->second;
  }
  std::string holder() const { return lease ? lease->spec.holder_identity.value_or("") : ""; }
  long long token() const { return lease ? lease->spec.lease_transitions.value_or(0) : 0; }
  std::string leaderUid() const { return lease ? annotationOf(lease->raw, kAnnotationLeaderUid).value_or("") : ""; }
  // A pod this workload controls (ownerReference to its uid).
  bool owns(const Json& pod_object) const { return isControlledBy(pod_object, workload.uid); }
  // Ordinal within spec.replicas.
  bool wanted(const std::string& name) const {
    const auto ordinal = ordinalOf(name, workload.name);
    return ordinal && *ordinal < workload.replicas;
  }
  // Runs the workload's current template.
  bool current(const Json& pod_object) const {
    return annotationOf(pod_object, kAnnotationTemplateHash).value_or("") == workload.template_hash;
  }
};

}  // namespace singleton::op
