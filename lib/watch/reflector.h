// List, then watch from the list's resourceVersion; resume after a dropped connection from the last version seen
// (bookmarks keep it fresh); relist on 410 Gone; back off on errors. The caller never handles any of that.
// State machine: kEmpty -> kListing -> kWatching -> (drop) kWatching | (410) kListing | (error) kBackoff -> ...
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "kube/client.h"
#include "util/backoff.h"
#include "util/clock.h"
#include "util/log.h"

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

  // Runs until `stop` is requested. Never throws; every failure is retried with backoff. May be called again after
  // it returned: once synced it resumes watching from the last version (and relists if that is too old by then).
  void run(std::stop_token stop);

  State state() const { return state_.load(); }
  bool hasSynced() const { return synced_.load(); }  // a first list has been delivered
  std::string lastResourceVersion() const;
  int listCount() const { return lists_.load(); }     // snapshots delivered to the handler
  int watchCount() const { return watches_.load(); }  // watch requests opened

 private:
  // What the run loop does after a list or a watch.
  enum class Next {
    kWatch,    // (re)open the watch from the last resourceVersion
    kRelist,   // list again at once (410 Gone: our resourceVersion is too old)
    kBackoff,  // wait with backoff, then watch again (or list, when `relist` is set or we never listed)
    kStop,
  };
  struct Outcome {
    Outcome(Next n) : next(n) {}  // NOLINT(google-explicit-constructor)
    Outcome(Next n, util::Error e, bool then_relist = false, const char* step = "")
        : next(n), error(std::move(e)), relist(then_relist), what(step) {}

    Next next = Next::kWatch;
    util::Error error;      // why, for kRelist and kBackoff
    bool relist = false;    // with kBackoff: list after the wait instead of watching
    const char* what = "";  // the step that failed, for the log line
  };

  Outcome list(std::stop_token stop);
  Outcome watchOnce(std::stop_token stop);
  // One line of a watch body; kWatch means keep reading.
  Outcome handleLine(std::string_view line);
  Outcome handleErrorEvent(const Json& status);
  // Waits the next backoff delay (at least the error's Retry-After). False when stopped.
  bool waitBackoff(const Outcome& outcome, bool then_list, std::stop_token stop);
  void setResourceVersion(std::string resource_version);
  // What this reflector watches (resource, namespace, selectors) followed by `extra`, for a log line's values.
  log::Values logValues(log::Values extra = {}) const;

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
  log::Values log_values_;  // {"resource": "configmaps"}, {"namespace": "x"}, ... for logs
  mutable std::mutex mutex_;
  std::string resource_version_;
};

const char* stateName(Reflector::State state);

}  // namespace singleton::watch
