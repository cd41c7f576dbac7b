#include "kube/lease.h"

#include <chrono>
#include <cstdint>
#include <limits>

#include "util/time_format.h"

namespace singleton::kube {
namespace {

using Json = nlohmann::json;
using util::ErrorCode;

util::Error malformed(const std::string& field, const std::string& why) {
  return util::makeError(ErrorCode::kBadResponse, "malformed Lease: " + field + ": " + why);
}

// Go's omitempty writes nothing for an unset field; some writers send null instead. Both mean "absent".
const Json* field(const Json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

util::Status readString(const Json& object, const char* name, const std::string& where,
                        std::optional<std::string>& out) {
  const Json* value = field(object, name);
  if (!value) return {};
  if (!value->is_string()) return malformed(where + name, "not a string");
  out = value->get<std::string>();
  return {};
}

template <typename Int>
util::Status readInt(const Json& object, const char* name, const std::string& where, std::optional<Int>& out) {
  const Json* value = field(object, name);
  if (!value) return {};
  if (!value->is_number_integer()) return malformed(where + name, "not an integer");
  const bool fits = value->is_number_unsigned()
                        ? value->get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<Int>::max())
                        : value->get<std::int64_t>() >= std::numeric_limits<Int>::min() &&
                              value->get<std::int64_t>() <= std::numeric_limits<Int>::max();
  if (!fits) return malformed(where + name, "out of range");
  out = value->get<Int>();
  return {};
}

util::Status readTime(const Json& object, const char* name, const std::string& where,
                      std::optional<util::WallTime>& out) {
  const Json* value = field(object, name);
  if (!value) return {};
  if (!value->is_string()) return malformed(where + name, "not a string");
  auto time = util::parseTime(value->get_ref<const std::string&>());
  if (!time.ok()) return malformed(where + name, time.error().message);
  // A MicroTime holds microseconds: finer digits (which the apiserver would not write) are dropped here, so the
  // record read is the record written back (found by the lease fuzzer: a 7th digit did not survive a round trip).
  out = std::chrono::floor<std::chrono::microseconds>(*time);
  return {};
}

template <typename T>
void writeOptional(Json& object, const char* name, const std::optional<T>& value) {
  if (value) {
    object[name] = *value;
  } else {
    object.erase(name);
  }
}

void writeTime(Json& object, const char* name, const std::optional<util::WallTime>& value) {
  if (value) {
    object[name] = util::formatMicroTime(*value);
  } else {
    object.erase(name);
  }
}

}  // namespace

util::Result<Lease> leaseFromJson(const Json& object) {
  if (!object.is_object()) return malformed("object", "not a JSON object");
  if (const Json* kind = field(object, "kind"); kind && *kind != "Lease") {
    return malformed("kind", "expected \"Lease\", got " + kind->dump());
  }
  const Json* metadata = field(object, "metadata");
  if (!metadata || !metadata->is_object()) return malformed("metadata", "missing");

  Lease lease;
  std::optional<std::string> name, ns, resource_version;
  if (auto s = readString(*metadata, "name", "metadata.", name); !s.ok()) return std::move(s).takeError();
  if (auto s = readString(*metadata, "namespace", "metadata.", ns); !s.ok()) return std::move(s).takeError();
  if (auto s = readString(*metadata, "resourceVersion", "metadata.", resource_version); !s.ok()) {
    return std::move(s).takeError();
  }
  if (!name || name->empty()) return malformed("metadata.name", "missing");
  lease.name = *name;
  lease.ns = ns.value_or("");
  lease.resource_version = resource_version.value_or("");

  if (const Json* spec = field(object, "spec")) {
    if (!spec->is_object()) return malformed("spec", "not a JSON object");
    const std::string where = "spec.";
    LeaseSpec& out = lease.spec;
    util::Status s = readString(*spec, "holderIdentity", where, out.holder_identity);
    if (s.ok()) s = readInt(*spec, "leaseDurationSeconds", where, out.lease_duration_seconds);
    if (s.ok()) s = readTime(*spec, "acquireTime", where, out.acquire_time);
    if (s.ok()) s = readTime(*spec, "renewTime", where, out.renew_time);
    if (s.ok()) s = readInt(*spec, "leaseTransitions", where, out.lease_transitions);
    if (!s.ok()) return std::move(s).takeError();
  }
  lease.raw = object;
  return lease;
}

Json leaseToJson(const Lease& lease) {
  Json object = lease.raw.is_object() ? lease.raw : Json::object();
  object["apiVersion"] = "coordination.k8s.io/v1";
  object["kind"] = "Lease";

  Json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  metadata["name"] = lease.name;
  if (lease.ns.empty()) {
    metadata.erase("namespace");
  } else {
    metadata["namespace"] = lease.ns;
  }
  if (lease.resource_version.empty()) {
    metadata.erase("resourceVersion");
  } else {
    metadata["resourceVersion"] = lease.resource_version;
  }

  // Fields of newer Lease versions (preferredHolder, strategy) stay as they were read.
  Json& spec = object["spec"];
  if (!spec.is_object()) spec = Json::object();
  writeOptional(spec, "holderIdentity", lease.spec.holder_identity);
  writeOptional(spec, "leaseDurationSeconds", lease.spec.lease_duration_seconds);
  writeTime(spec, "acquireTime", lease.spec.acquire_time);
  writeTime(spec, "renewTime", lease.spec.renew_time);
  writeOptional(spec, "leaseTransitions", lease.spec.lease_transitions);
  return object;
}

}  // namespace singleton::kube
