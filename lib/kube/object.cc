#include "kube/object.h"

#include <charconv>

namespace singleton::kube {
namespace {

using Json = nlohmann::json;

std::string escapePointer(const std::string& key) {
  std::string out;
  for (const char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

const Json* fieldOf(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

const Json* metadataOf(const Json& object) {
  const Json* metadata = fieldOf(object, "metadata");
  return metadata && metadata->is_object() ? metadata : nullptr;
}

std::string metaString(const Json& object, std::string_view field) {
  const Json* metadata = metadataOf(object);
  const Json* value = metadata ? fieldOf(*metadata, field) : nullptr;
  return value && value->is_string() ? value->get<std::string>() : std::string();
}

std::string labelOf(const Json& object, const std::string& key) {
  const Json* metadata = metadataOf(object);
  const Json* labels = metadata ? fieldOf(*metadata, "labels") : nullptr;
  const Json* value = labels ? fieldOf(*labels, key) : nullptr;
  return value && value->is_string() ? value->get<std::string>() : std::string();
}

std::optional<std::string> annotationOf(const Json& object, const std::string& key) {
  const Json* metadata = metadataOf(object);
  const Json* annotations = metadata ? fieldOf(*metadata, "annotations") : nullptr;
  const Json* value = annotations ? fieldOf(*annotations, key) : nullptr;
  if (!value || !value->is_string()) return std::nullopt;
  return value->get<std::string>();
}

std::optional<long long> integerAnnotationOf(const Json& object, const std::string& key) {
  const auto text = annotationOf(object, key);
  if (!text || text->empty()) return std::nullopt;
  long long value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < 0) return std::nullopt;
  return value;
}

bool isControlledBy(const Json& object, const std::string& owner_uid) {
  const Json* metadata = metadataOf(object);
  const Json* refs = metadata ? fieldOf(*metadata, "ownerReferences") : nullptr;
  if (!refs || !refs->is_array() || owner_uid.empty()) return false;
  for (const Json& ref : *refs) {
    const Json* controller = fieldOf(ref, "controller");
    const Json* uid = fieldOf(ref, "uid");
    if (controller && controller->is_boolean() && controller->get<bool>() && uid && uid->is_string() &&
        uid->get<std::string>() == owner_uid) {
      return true;
    }
  }
  return false;
}

std::string labelPointer(const std::string& key) { return "/metadata/labels/" + escapePointer(key); }
std::string annotationPointer(const std::string& key) { return "/metadata/annotations/" + escapePointer(key); }

Json ObjectReference::toJson() const {
  return {{"apiVersion", api_version}, {"kind", kind}, {"namespace", ns}, {"name", name}, {"uid", uid}};
}

const Json* conditionOf(const Json& object, std::string_view type) {
  const Json* status = fieldOf(object, "status");
  const Json* conditions = status ? fieldOf(*status, "conditions") : nullptr;
  if (!conditions || !conditions->is_array()) return nullptr;
  for (const Json& condition : *conditions) {
    const Json* condition_type = fieldOf(condition, "type");
    if (condition_type && condition_type->is_string() && condition_type->get_ref<const std::string&>() == type) {
      return &condition;
    }
  }
  return nullptr;
}

}  // namespace singleton::kube
