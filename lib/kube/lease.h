// coordination.k8s.io/v1 Lease, exactly as Kubernetes and client-go write it, so C++ and Go candidates can share one
// Lease object.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::kube {

struct LeaseSpec {
  std::optional<std::string> holder_identity;
  std::optional<int> lease_duration_seconds;
  std::optional<util::WallTime> acquire_time;  // MicroTime
  std::optional<util::WallTime> renew_time;    // MicroTime
  std::optional<long long> lease_transitions;

  bool operator==(const LeaseSpec&) const = default;
};

struct Lease {
  std::string name;
  std::string ns;
  std::string resource_version;  // the compare-and-swap precondition on update
  LeaseSpec spec;
  // The object as last read, so an update keeps fields we do not model (labels, ownerReferences, managedFields).
  nlohmann::json raw = nlohmann::json::object();
};

util::Result<Lease> leaseFromJson(const nlohmann::json& object);
// `raw` with metadata name/namespace/resourceVersion and spec replaced by ours. Absent optionals are omitted.
nlohmann::json leaseToJson(const Lease& lease);

}  // namespace singleton::kube
