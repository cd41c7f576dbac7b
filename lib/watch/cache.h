// An in-memory copy of a collection keyed by namespace/name, filled by one Reflector, read by many threads.
// Listeners hear every change after the cache has applied it; a relist is turned into the adds, updates and
// deletes that it implies, so listeners never miss a deletion that happened while the watch was down.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "watch/reflector.h"

namespace singleton::watch {

// "namespace/name", or "name" for cluster-scoped objects.
std::string objectKey(const Json& object);
std::string objectKey(const std::string& ns, const std::string& name);

class Cache final : public Handler {
 public:
  using Listener = std::function<void(const Event& event)>;

  void onReplace(std::vector<Json> objects, const std::string& resource_version) override;
  void onEvent(const Event& event) override;

  // Register before the reflector starts; listeners run on the reflector's thread and must be quick.
  void addListener(Listener listener);

  std::optional<Json> get(const std::string& key) const;
  std::optional<Json> get(const std::string& ns, const std::string& name) const { return get(objectKey(ns, name)); }
  std::vector<Json> list() const;
  std::vector<Json> listNamespace(const std::string& ns) const;  // "" = the cluster-scoped objects
  std::size_t size() const;
  // A first snapshot has arrived: until then an empty cache means "not known yet", not "none exist".
  bool hasSynced() const;
  // The resourceVersion of the last snapshot.
  std::string syncResourceVersion() const;

 private:
  void notify(const std::vector<Event>& events) const;

  mutable std::shared_mutex mutex_;
  std::map<std::string, Json> objects_;
  bool synced_ = false;
  std::string sync_resource_version_;
  // Separate from mutex_ so that listeners, which run outside the write lock, may read the cache.
  mutable std::mutex listeners_mutex_;
  std::vector<Listener> listeners_;
};

}  // namespace singleton::watch
