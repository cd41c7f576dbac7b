// List, then watch from the list's resourceVersion; resume after a dropped connection from the last version seen
// (bookmarks keep it fresh); relist on 410 Gone; back off on errors. The caller never handles any of that.
// State machine: kEmpty -> kListing -> kWatching -> (drop) kWatching | (410) kListing | (error) kBackoff -> ...
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "kube/client.h"
#include "util/backoff.h"
#include "util/clock.h"

namespace singleton::watch {

using Json = nlohmann::json;

enum class EventType { kAdded, kModified, kDeleted };

struct Event {
  EventType type;
  Json object;
};

// Receives a consistent view of the collection: a complete snapshot after every (re)list, then every change.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void onReplace(std::vector<Json> objects, const std::string& resource_version) = 0;
  virtual void onEvent(const Event& event) = 0;
};

struct ReflectorOptions {
  std::string ns;  // "" = all namespaces (or a cluster-scoped resource)
  std::string label_selector;
  std::string field_selector;
  std::chrono::seconds watch_timeout{300};  // asked of the server; it closes the watch then and we resume
  util::BackoffPolicy backoff{std::chrono::milliseconds(100), std::chrono::seconds(10), 2.0, 0.2};
  // Applied to every object before it is handed on, e.g. to drop managedFields and save memory.
  std::function<void(Json&)> transform;
};

class Reflector {
 public:
  enum class State { kEmpty, kListing, kWatching, kBackoff, kStopped };

  Reflector(kube::Client& client, kube::Resource resource, ReflectorOptions options, Handler& handler,
            const util::Clock& clock = util::systemClock());

  // Runs until `stop` is requested. Never throws; every failure is retried with backoff.
  void run(std::stop_token stop);

  State state() const { return state_.load(); }
  bool hasSynced() const { return synced_.load(); }  // a first list has been delivered
  std::string lastResourceVersion() const;
  int listCount() const { return lists_.load(); }
  int watchCount() const { return watches_.load(); }

 private:
  bool list(std::stop_token stop);
  // Returns false to relist (410), true to resume watching from the last version.
  bool watchOnce(std::stop_token stop);

  kube::Client& client_;
  kube::Resource resource_;
  ReflectorOptions options_;
  Handler& handler_;
  const util::Clock& clock_;
  util::Backoff backoff_;
  std::atomic<State> state_{State::kEmpty};
  std::atomic<bool> synced_{false};
  std::atomic<int> lists_{0};
  std::atomic<int> watches_{0};
  mutable std::mutex mutex_;
  std::string resource_version_;
};

const char* stateName(Reflector::State state);

}  // namespace singleton::watch
