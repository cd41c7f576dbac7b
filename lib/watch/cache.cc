#include "watch/cache.h"

#include <mutex>
#include <utility>

#include "kube/object.h"
#include "util/log.h"

namespace singleton::watch {
namespace {
const log::Logger kLog("cache");
}  // namespace

std::string objectKey(const std::string& ns, const std::string& name) { return ns.empty() ? name : ns + "/" + name; }

std::string objectKey(const Json& object) {
  const std::string name = kube::metaString(object, "name");
  if (name.empty()) return "";
  return objectKey(kube::metaString(object, "namespace"), name);
}

void Cache::onReplace(std::vector<Json> objects, const std::string& resource_version) {
  std::map<std::string, Json> fresh;
  for (Json& object : objects) {
    std::string key = objectKey(object);
    if (key.empty()) {
      kLog.warn("skipping a listed object without metadata.name");
      continue;
    }
    fresh.insert_or_assign(std::move(key), std::move(object));
  }

  // The events a listener would have seen had the watch never broken: everything new or changed, then everything
  // that vanished meanwhile (with its last known state).
  std::vector<Event> events;
  {
    std::unique_lock lock(mutex_);
    for (const auto& [key, object] : fresh) {
      const auto old = objects_.find(key);
      if (old == objects_.end()) {
        events.push_back({EventType::kAdded, object});
      } else if (kube::metaString(old->second, "resourceVersion") != kube::metaString(object, "resourceVersion") ||
                 kube::metaString(object, "resourceVersion").empty()) {
        // Without a resourceVersion (stripped by a transform) we cannot tell, so we report a change.
        events.push_back({EventType::kModified, object});
      }
    }
    for (auto& [key, object] : objects_) {
      if (!fresh.contains(key)) events.push_back({EventType::kDeleted, std::move(object)});
    }
    objects_ = std::move(fresh);
    synced_ = true;
    sync_resource_version_ = resource_version;
  }
  notify(events);
}

void Cache::onEvent(const Event& event) {
  std::string key = objectKey(event.object);
  if (key.empty()) {
    kLog.warn("skipping an event for an object without metadata.name");
    return;
  }
  {
    std::unique_lock lock(mutex_);
    if (event.type == EventType::kDeleted) {
      objects_.erase(key);
    } else {
      objects_.insert_or_assign(std::move(key), event.object);
    }
  }
  notify({event});
}

void Cache::notify(const std::vector<Event>& events) const {
  if (events.empty()) return;
  // Listeners are registered before the reflector starts, so copying them once per batch is cheap and lets a
  // listener register another without deadlock.
  std::vector<Listener> listeners;
  {
    std::lock_guard lock(listeners_mutex_);
    listeners = listeners_;
  }
  for (const Event& event : events) {
    for (const Listener& listener : listeners) listener(event);
  }
}

void Cache::addListener(Listener listener) {
  std::lock_guard lock(listeners_mutex_);
  listeners_.push_back(std::move(listener));
}

std::optional<Json> Cache::get(const std::string& key) const {
  std::shared_lock lock(mutex_);
  const auto it = objects_.find(key);
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<Json> Cache::list() const {
  std::shared_lock lock(mutex_);
  std::vector<Json> out;
  out.reserve(objects_.size());
  for (const auto& [key, object] : objects_) out.push_back(object);
  return out;
}

std::vector<Json> Cache::listNamespace(const std::string& ns) const {
  std::shared_lock lock(mutex_);
  std::vector<Json> out;
  if (ns.empty()) {
    // Cluster-scoped objects: keys without a namespace.
    for (const auto& [key, object] : objects_) {
      if (key.find('/') == std::string::npos) out.push_back(object);
    }
    return out;
  }
  // Keys sort by namespace first, so one namespace is a contiguous range starting at "ns/".
  const std::string prefix = ns + "/";
  for (auto it = objects_.lower_bound(prefix); it != objects_.end() && it->first.starts_with(prefix); ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::size_t Cache::size() const {
  std::shared_lock lock(mutex_);
  return objects_.size();
}

bool Cache::hasSynced() const {
  std::shared_lock lock(mutex_);
  return synced_;
}

std::string Cache::syncResourceVersion() const {
  std::shared_lock lock(mutex_);
  return sync_resource_version_;
}

}  // namespace singleton::watch
