#include "watch/reflector.h"

#include <exception>
#include <optional>
#include <utility>

#include "util/log.h"
#include "watch/line_splitter.h"

namespace singleton::watch {
namespace {

using util::ErrorCode;

const log::Logger kLog("reflector");

// A watch that the server closes this quickly without sending anything is not a server timeout but a sign of trouble
// (a proxy, an overloaded apiserver); resuming at once would spin, so it is treated as an error (as client-go does).
constexpr util::Millis kVeryShortWatch{1'000};
// Garbage lines are quoted in warnings, cut to this length.
constexpr std::size_t kQuoteLimit = 200;

// metadata.resourceVersion, or "" when absent or not a string. Never throws.
std::string resourceVersionOf(const Json& object) {
  if (!object.is_object()) return "";
  const auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  const auto rv = metadata->find("resourceVersion");
  if (rv == metadata->end() || !rv->is_string()) return "";
  return rv->get<std::string>();
}

std::string stringField(const Json& object, const char* name) {
  const auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string quote(std::string_view line) {
  if (line.size() <= kQuoteLimit) return std::string(line);
  return std::string(line.substr(0, kQuoteLimit)) + "... (" + std::to_string(line.size()) + " bytes)";
}

// The error for an exception thrown by the handler or the transform; the handler's state may be half-updated, so
// the reflector relists to hand it a fresh snapshot.
util::Error handlerError(const char* what) {
  return util::makeError(ErrorCode::kInternal, std::string("handler or transform threw: ") + what);
}

}  // namespace

const char* stateName(Reflector::State state) {
  switch (state) {
    case Reflector::State::kEmpty:
      return "Empty";
    case Reflector::State::kListing:
      return "Listing";
    case Reflector::State::kWatching:
      return "Watching";
    case Reflector::State::kBackoff:
      return "Backoff";
    case Reflector::State::kStopped:
      return "Stopped";
  }
  return "Unknown";
}

Reflector::Reflector(kube::Client& client, kube::Resource resource, ReflectorOptions options, Handler& handler,
                     const util::Clock& clock)
    : client_(client),
      resource_(std::move(resource)),
      options_(std::move(options)),
      handler_(handler),
      clock_(clock),
      backoff_(options_.backoff) {
  log_values_.emplace_back("resource", resource_.plural + (resource_.group.empty() ? "" : "." + resource_.group));
  if (!options_.ns.empty()) log_values_.emplace_back("namespace", options_.ns);
  if (!options_.label_selector.empty()) log_values_.emplace_back("label_selector", options_.label_selector);
  if (!options_.field_selector.empty()) log_values_.emplace_back("field_selector", options_.field_selector);
}

log::Values Reflector::logValues(log::Values extra) const {
  log::Values values = log_values_;
  for (auto& value : extra) values.push_back(std::move(value));
  return values;
}

std::string Reflector::lastResourceVersion() const {
  std::lock_guard guard(mutex_);
  return resource_version_;
}

void Reflector::setResourceVersion(std::string resource_version) {
  std::lock_guard guard(mutex_);
  resource_version_ = std::move(resource_version);
}

void Reflector::run(std::stop_token stop) {
  bool need_list = !synced_.load();
  while (!stop.stop_requested()) {
    Outcome outcome = need_list ? list(stop) : watchOnce(stop);
    switch (outcome.next) {
      case Next::kWatch:
        need_list = false;
        break;
      case Next::kRelist:
        kLog.debug("relisting", {.err = outcome.error.describe(), .values = logValues()});
        need_list = true;
        break;
      case Next::kBackoff:
        // A failed list leaves need_list set: we only ever watch from a version that a list gave us.
        if (outcome.relist) need_list = true;
        waitBackoff(outcome, need_list, stop);
        break;
      case Next::kStop:
        break;
    }
  }
  state_ = State::kStopped;
  kLog.debug("stopped", {.values = logValues()});
}

Reflector::Outcome Reflector::list(std::stop_token stop) {
  state_ = State::kListing;
  kube::ListOptions list_options;
  list_options.label_selector = options_.label_selector;
  list_options.field_selector = options_.field_selector;
  // resourceVersion "" (a quorum read): the snapshot must not be older than what the handler has already seen.
  util::Result<Json> answer = client_.list(resource_, options_.ns, list_options);
  if (stop.stop_requested()) return {Next::kStop};
  if (!answer.ok()) return {Next::kBackoff, answer.error(), false, "list failed"};

  Json& body = *answer;
  const auto items = body.is_object() ? body.find("items") : body.end();
  // An empty collection may come with "items": null.
  if (items == body.end() || !(items->is_array() || items->is_null())) {
    return {Next::kBackoff, util::makeError(ErrorCode::kBadResponse, "the answer has no items array"), false,
            "list failed"};
  }
  std::string resource_version = resourceVersionOf(body);
  if (resource_version.empty()) {
    return {Next::kBackoff, util::makeError(ErrorCode::kBadResponse, "the answer has no metadata.resourceVersion"),
            false, "list failed"};
  }

  std::vector<Json> objects;
  if (items->is_array()) {
    objects.reserve(items->size());
    for (Json& item : *items) objects.push_back(std::move(item));
  }
  const std::size_t count = objects.size();
  try {
    if (options_.transform) {
      for (Json& object : objects) options_.transform(object);
    }
    handler_.onReplace(std::move(objects), resource_version);
  } catch (const std::exception& e) {
    return {Next::kBackoff, handlerError(e.what()), true, "snapshot not delivered"};
  } catch (...) {
    return {Next::kBackoff, handlerError("unknown exception"), true, "snapshot not delivered"};
  }
  setResourceVersion(resource_version);
  synced_ = true;
  ++lists_;
  backoff_.reset();
  kLog.debug("listed", {.values = logValues({{"objects", count}, {"resource_version", resource_version}})});
  return {Next::kWatch};
}

Reflector::Outcome Reflector::watchOnce(std::stop_token stop) {
  kube::WatchOptions watch_options;
  watch_options.label_selector = options_.label_selector;
  watch_options.field_selector = options_.field_selector;
  watch_options.resource_version = lastResourceVersion();
  watch_options.allow_bookmarks = true;
  watch_options.timeout = options_.watch_timeout;

  // Our own stop source, so that an ERROR event or a throwing handler can end the stream early. The caller's stop
  // is forwarded to it.
  std::stop_source local;
  std::stop_callback forward(stop, [&local] { local.request_stop(); });

  LineSplitter splitter;
  std::optional<Outcome> verdict;  // set by the line that decided to end this watch
  std::size_t lines = 0;
  // Runs on the transport's thread as each chunk arrives, so events reach the handler without delay; Client::watch
  // does not return before the last call, so the captured locals are safe to use here.
  auto on_chunk = [&](std::string_view chunk) {
    if (verdict) return;  // the stream is being cancelled; the rest is not for us
    try {
      splitter.feed(chunk, [&](std::string_view line) {
        if (verdict) return;
        ++lines;
        Outcome outcome = handleLine(line);
        if (outcome.next != Next::kWatch) {
          verdict = std::move(outcome);
          local.request_stop();
        }
      });
    } catch (const std::exception& e) {
      verdict = Outcome{Next::kBackoff, handlerError(e.what()), true, "event not delivered"};
      local.request_stop();
    } catch (...) {
      verdict = Outcome{Next::kBackoff, handlerError("unknown exception"), true, "event not delivered"};
      local.request_stop();
    }
  };

  state_ = State::kWatching;
  ++watches_;
  kLog.debug("watching", {.values = logValues({{"resource_version", watch_options.resource_version}})});
  const util::MonoTime started = clock_.now();
  util::Status status = client_.watch(resource_, options_.ns, watch_options, on_chunk, local.get_token());

  if (stop.stop_requested()) return {Next::kStop};
  if (verdict) return *verdict;
  if (!status.ok()) {
    const util::Error& error = status.error();
    if (error.code == ErrorCode::kGone) return {Next::kRelist, error};
    return {Next::kBackoff, error, false, "watch failed"};
  }
  if (splitter.pending() > 0) {
    kLog.warn("watch body ended inside a line; dropped the rest",
              {.values = logValues({{"dropped_bytes", splitter.pending()}})});
  }
  if (lines == 0 && clock_.now() - started < kVeryShortWatch) {
    return {Next::kBackoff, util::makeError(ErrorCode::kBadResponse, "closed at once, without events"), false,
            "watch ended"};
  }
  kLog.debug("watch closed by the server; resuming", {.values = logValues({{"lines", lines}})});
  return {Next::kWatch};
}

Reflector::Outcome Reflector::handleLine(std::string_view line) {
  Json event = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object()) {
    kLog.warn("skipping a watch line that is not a JSON object", {.values = logValues({{"line", quote(line)}})});
    return {Next::kWatch};
  }
  const std::string type = stringField(event, "type");
  const auto object = event.find("object");
  if (type.empty() || object == event.end() || !object->is_object()) {
    kLog.warn("skipping a watch line without type or object", {.values = logValues({{"line", quote(line)}})});
    return {Next::kWatch};
  }
  if (type == "ERROR") return handleErrorEvent(*object);

  // Something valid arrived: the connection works, so the next failure starts with a short delay again.
  backoff_.reset();
  // Read before the transform, which may strip metadata.
  std::string resource_version = resourceVersionOf(*object);
  if (type == "BOOKMARK") {
    // Bookmarks only move our position forward, so a resumed watch need not replay (or lose) history.
    if (!resource_version.empty()) setResourceVersion(std::move(resource_version));
    return {Next::kWatch};
  }

  EventType event_type;
  if (type == "ADDED") {
    event_type = EventType::kAdded;
  } else if (type == "MODIFIED") {
    event_type = EventType::kModified;
  } else if (type == "DELETED") {
    event_type = EventType::kDeleted;
  } else {
    kLog.warn("skipping a watch event of unknown type", {.values = logValues({{"type", quote(type)}})});
    return {Next::kWatch};
  }
  Event delivered{event_type, std::move(*object)};
  if (options_.transform) options_.transform(delivered.object);
  handler_.onEvent(delivered);
  // Only after the handler has it: a resumed watch then replays nothing twice and skips nothing.
  if (!resource_version.empty()) setResourceVersion(std::move(resource_version));
  return {Next::kWatch};
}

Reflector::Outcome Reflector::handleErrorEvent(const Json& status) {
  const auto code_it = status.find("code");
  const int code = code_it != status.end() && code_it->is_number_integer() ? code_it->get<int>() : 0;
  const std::string reason = stringField(status, "reason");

  util::Error error;
  if (code >= 400) {
    // The same classification as a non-2xx answer with this Status as its body.
    error = kube::classifyResponse(kube::HttpResponse{code, status.dump(), {}});
  } else {
    error = util::makeError(ErrorCode::kBadResponse, stringField(status, "message"));
    error.reason = reason;
  }
  error.message = "ERROR event: " + error.message;
  if (code == 410 || reason == "Expired" || reason == "Gone") {
    error.code = ErrorCode::kGone;
    return {Next::kRelist, error};
  }
  return {Next::kBackoff, error, false, "watch ended"};
}

bool Reflector::waitBackoff(const Outcome& outcome, bool then_list, std::stop_token stop) {
  util::Millis delay = backoff_.next();
  const util::Error& error = outcome.error;
  if (error.retry_after && *error.retry_after > delay) delay = *error.retry_after;
  // The deadline is fixed before the state says kBackoff, so a test that sees kBackoff can move a fake clock past it.
  const util::MonoTime deadline = clock_.now() + delay;
  state_ = State::kBackoff;
  // outcome.what is one of a few fixed steps ("list failed", "watch ended", ...): the message stays constant per step.
  kLog.warn(outcome.what,
            {.err = error.describe(),
             .values = logValues({{"retry", then_list ? "list" : "watch"}, {"delay_ms", delay.count()}})});
  return clock_.sleepUntil(deadline, stop);
}

}  // namespace singleton::watch
