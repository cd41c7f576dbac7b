// One accessor surface for any Kubernetes object held as JSON (kube-rs's ResourceExt): its metadata (name, namespace,
// uid, resourceVersion, labels, annotations, ownerReferences) and its status conditions. Every accessor is total: a
// missing or mistyped field reads as absent ("" / nullopt / false), never as an exception, so callers can read what
// a watch or a user delivered without checking its shape first.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace singleton::kube {

// object[key] when `object` is an object holding a non-null `key`, else nullptr.
const nlohmann::json* fieldOf(const nlohmann::json& object, std::string_view key);
// object.metadata when it is an object, else nullptr.
const nlohmann::json* metadataOf(const nlohmann::json& object);

// metadata.<field> as a string ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp", ...), "" when
// absent or not a string.
std::string metaString(const nlohmann::json& object, std::string_view field);
inline std::string nameOf(const nlohmann::json& object) { return metaString(object, "name"); }
inline std::string namespaceOf(const nlohmann::json& object) { return metaString(object, "namespace"); }
inline std::string uidOf(const nlohmann::json& object) { return metaString(object, "uid"); }
inline std::string resourceVersionOf(const nlohmann::json& object) { return metaString(object, "resourceVersion"); }

// metadata.labels[key], "" when absent.
std::string labelOf(const nlohmann::json& object, const std::string& key);
// metadata.annotations[key], nullopt when absent (an empty annotation is a value).
std::optional<std::string> annotationOf(const nlohmann::json& object, const std::string& key);
// An annotation holding a non-negative decimal integer (a fencing token, an operator term); nullopt when absent or
// not such a number.
std::optional<long long> integerAnnotationOf(const nlohmann::json& object, const std::string& key);
// metadata.ownerReferences holds a controller reference to the object with this uid.
bool isControlledBy(const nlohmann::json& object, const std::string& owner_uid);
// A JSON pointer to metadata.labels[key] or metadata.annotations[key] ('~' and '/' in keys escaped as "~0", "~1").
std::string labelPointer(const std::string& key);
std::string annotationPointer(const std::string& key);

// core/v1 ObjectReference: which object an Event (involvedObject) or a log line is about.
struct ObjectReference {
  std::string api_version;  // "v1", "singleton.dev/v1alpha1"
  std::string kind;
  std::string ns;  // "" for cluster-scoped objects
  std::string name;
  std::string uid;

  // {apiVersion, kind, namespace, name, uid}
  nlohmann::json toJson() const;
};

// The element of status.conditions whose type is `type`, or nullptr.
const nlohmann::json* conditionOf(const nlohmann::json& object, std::string_view type);

}  // namespace singleton::kube
