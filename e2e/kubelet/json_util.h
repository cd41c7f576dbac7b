// Reading fields of untrusted JSON (objects as the apiserver or a user sent them) without ever throwing: every
// accessor answers "absent" for a missing field or one of the wrong type. An object's metadata (name, uid,
// annotations, ...) and its status.conditions are read through kube/object.h; what stays here is what it has no
// equivalent for: plain fields of the spec and status, a condition in a conditions array being built (findByType),
// and dropping managedFields from the watch cache.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace singleton::sim {

using Json = nlohmann::json;

// The field, or nullptr when `object` is not an object or has no such field.
inline const Json* field(const Json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

// A string field, or "" when absent or not a string.
inline std::string stringField(const Json& object, const char* name) {
  const Json* value = field(object, name);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

inline const Json& emptyObject() {
  static const Json empty = Json::object();
  return empty;
}

// The object field, or an empty object.
inline const Json& objectField(const Json& object, const char* name) {
  const Json* value = field(object, name);
  return value != nullptr && value->is_object() ? *value : emptyObject();
}

inline const Json& emptyArray() {
  static const Json empty = Json::array();
  return empty;
}

// The array field, or an empty array.
inline const Json& arrayField(const Json& object, const char* name) {
  const Json* value = field(object, name);
  return value != nullptr && value->is_array() ? *value : emptyArray();
}

// The element of an array of objects whose "type" is `type` (conditions), or nullptr.
inline const Json* findByType(const Json& array, const std::string& type) {
  if (!array.is_array()) return nullptr;
  for (const Json& item : array) {
    if (stringField(item, "type") == type) return &item;
  }
  return nullptr;
}

// Drops metadata.managedFields (server-side apply bookkeeping, often the larger part of a small object), which we
// never read: a cache of thousands of pods is that much smaller. Anything that is not an object is left alone.
inline void stripManagedFields(Json& object) {
  if (!object.is_object()) return;
  const auto metadata = object.find("metadata");
  if (metadata != object.end() && metadata->is_object()) metadata->erase("managedFields");
}

}  // namespace singleton::sim
