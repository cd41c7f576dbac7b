#include "controller/events.h"

#include <cstdio>

#include "util/log.h"
#include "util/time_format.h"

namespace singleton::controller {
namespace {

using Json = nlohmann::json;

const log::Logger kLog("events");

const char* typeName(EventType type) { return type == EventType::kWarning ? "Warning" : "Normal"; }

}  // namespace

ApiEventRecorder::ApiEventRecorder(kube::Client& client, const util::Clock& clock, EventRecorderOptions options)
    : client_(client), clock_(clock), options_(std::move(options)) {}

void ApiEventRecorder::record(const kube::ObjectReference& object, EventType type, const std::string& reason,
                              const std::string& message) {
  const std::string key = object.ns + "\n" + object.uid + "\n" + typeName(type) + "\n" + reason + "\n" + message;
  const util::MonoTime now = clock_.now();
  const std::string timestamp = util::formatTime(clock_.wallNow());

  std::optional<Seen> previous;
  {
    std::lock_guard lock(mutex_);
    const auto it = seen_.find(key);
    if (it != seen_.end() && now - it->second.last < options_.aggregation_window) previous = it->second;
  }

  if (previous) {
    // Fold the repeat into the existing object; if it is gone (events expire after an hour), start a new one.
    const Json patch = {{"count", previous->count + 1}, {"lastTimestamp", timestamp}};
    auto patched = client_.mergePatch(kube::kEvents, object.ns, previous->name, patch);
    if (patched.ok()) {
      std::lock_guard lock(mutex_);
      Seen& seen = seen_[key];
      seen = *previous;
      seen.count = previous->count + 1;
      seen.last = now;
      return;
    }
    if (patched.error().code != util::ErrorCode::kNotFound) {
      kLog.warn("could not update event " + reason,
                {.err = patched.error().describe(), .object = {object.ns, object.name}});
      return;
    }
  }

  std::string name = create(object, type, reason, message, timestamp);
  if (name.empty()) return;
  std::lock_guard lock(mutex_);
  seen_[key] = Seen{std::move(name), 1, timestamp, now};
  pruneLocked();
}

std::string ApiEventRecorder::create(const kube::ObjectReference& object, EventType type, const std::string& reason,
                                     const std::string& message, const std::string& timestamp) {
  std::uint64_t sequence;
  {
    std::lock_guard lock(mutex_);
    sequence = ++sequence_;
  }
  // client-go names events "<object>.<unix nanos in hex>"; the sequence keeps two events of one instant apart.
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.wallNow().time_since_epoch());
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%llx", static_cast<unsigned long long>(nanos.count()) + sequence);
  std::string name = object.name + "." + suffix;

  Json source = {{"component", options_.component}};
  if (!options_.instance.empty()) source["host"] = options_.instance;
  Json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", name}, {"namespace", object.ns}}},
                {"involvedObject", object.toJson()},
                {"reason", reason},
                {"message", message},
                {"type", typeName(type)},
                {"source", source},
                {"reportingComponent", options_.component},
                {"count", 1},
                {"firstTimestamp", timestamp},
                {"lastTimestamp", timestamp}};
  if (!options_.instance.empty()) event["reportingInstance"] = options_.instance;
  auto created = client_.create(kube::kEvents, object.ns, event);
  if (!created.ok()) {
    kLog.warn("could not record event " + reason,
              {.err = created.error().describe(), .object = {object.ns, object.name}});
    return "";
  }
  return name;
}

void ApiEventRecorder::pruneLocked() {
  if (seen_.size() <= options_.max_tracked) return;
  const util::MonoTime now = clock_.now();
  std::erase_if(seen_, [&](const auto& entry) { return now - entry.second.last >= options_.aggregation_window; });
  // Still too many distinct events in one window: forget them all; at worst a repeat becomes a new object.
  if (seen_.size() > options_.max_tracked) seen_.clear();
}

}  // namespace singleton::controller
