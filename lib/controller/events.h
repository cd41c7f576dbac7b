// Kubernetes Events about any object (core/v1 Event, involvedObject = an ObjectReference), for `kubectl describe`.
// Best effort: a failure is logged and never fails a reconcile. Repeats of the same event within a window are folded
// into one object (count, lastTimestamp), as client-go's recorder does, so a flapping pod does not flood etcd.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kube/client.h"
#include "kube/object.h"
#include "util/clock.h"

namespace singleton::controller {

enum class EventType { kNormal, kWarning };

class EventRecorder {
 public:
  virtual ~EventRecorder() = default;
  // `reason` is CamelCase (LeaderElected, Failover, ...); `message` is for humans.
  virtual void record(const kube::ObjectReference& object, EventType type, const std::string& reason,
                      const std::string& message) = 0;
};

struct EventRecorderOptions {
  std::string component = "singleton-operator";  // source.component, reportingComponent
  std::string instance;                          // reportingInstance, source.host: this operator replica
  util::Millis aggregation_window{600'000};      // identical events closer than this share one object
  std::size_t max_tracked = 4096;                // memory bound of the aggregation table
};

class ApiEventRecorder final : public EventRecorder {
 public:
  ApiEventRecorder(kube::Client& client, const util::Clock& clock, EventRecorderOptions options = {});
  void record(const kube::ObjectReference& object, EventType type, const std::string& reason,
              const std::string& message) override;

 private:
  struct Seen {
    std::string name;  // the Event object
    int count = 0;
    std::string first_timestamp;  // as written
    util::MonoTime last;
  };

  // Creates a new Event object; returns its name, or "" on failure.
  std::string create(const kube::ObjectReference& object, EventType type, const std::string& reason,
                     const std::string& message, const std::string& timestamp);
  void pruneLocked();

  kube::Client& client_;
  const util::Clock& clock_;
  EventRecorderOptions options_;
  std::mutex mutex_;
  std::map<std::string, Seen> seen_;  // by namespace, object uid, type, reason and message
  std::uint64_t sequence_ = 0;
};

}  // namespace singleton::controller
