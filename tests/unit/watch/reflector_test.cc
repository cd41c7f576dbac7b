#include "watch/reflector.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/fake_transport.h"
#include "support/percent_decode.h"
#include "watch/cache.h"

namespace singleton::watch {
namespace {

using namespace std::chrono_literals;
using testing::FakeTransport;
using testing::ScriptedStream;

const kube::Resource kConfigMaps{"", "v1", "configmaps", true};

Json configMap(const std::string& name, const std::string& rv, const std::string& value = "") {
  Json object = {{"apiVersion", "v1"},
                 {"kind", "ConfigMap"},
                 {"metadata", {{"name", name}, {"namespace", "default"}, {"resourceVersion", rv}}}};
  if (!value.empty()) object["data"] = {{"v", value}};
  return object;
}

std::string listBody(const std::string& rv, const std::vector<Json>& items) {
  return Json{{"kind", "ConfigMapList"}, {"metadata", {{"resourceVersion", rv}}}, {"items", items}}.dump();
}

std::string eventLine(const std::string& type, const Json& object) {
  return Json{{"type", type}, {"object", object}}.dump() + "\n";
}

std::string bookmark(const std::string& rv) {
  return eventLine("BOOKMARK", {{"kind", "ConfigMap"}, {"metadata", {{"resourceVersion", rv}}}});
}

Json status(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},
          {"code", code},     {"reason", reason},   {"message", message}};
}

// Streams as the server would send them. (Builders rather than designated initializers, which GCC's
// -Wmissing-field-initializers rejects when fields are left out.)
// Sends the chunks and stays open, like a quiet server.
ScriptedStream openStream(std::vector<std::string> chunks) {
  ScriptedStream stream;
  stream.chunks = std::move(chunks);
  stream.block_until_stopped = true;
  return stream;
}
// Sends the chunks, then the server closes the body normally (its timeoutSeconds) or the connection fails.
ScriptedStream endingStream(std::vector<std::string> chunks, std::optional<util::Error> end_error = std::nullopt) {
  ScriptedStream stream;
  stream.chunks = std::move(chunks);
  stream.end_error = std::move(end_error);
  return stream;
}
// A non-2xx answer to the watch request.
ScriptedStream refusedStream(int http_status, std::string body) {
  ScriptedStream stream;
  stream.status = http_status;
  stream.error_body = std::move(body);
  return stream;
}

// The decoded value of one query parameter of a request path ("" when absent).
std::string queryParam(const std::string& path, const std::string& name) {
  const auto query = path.find('?');
  if (query == std::string::npos) return "";
  std::size_t pos = query + 1;
  while (pos < path.size()) {
    std::size_t end = path.find('&', pos);
    if (end == std::string::npos) end = path.size();
    const std::string pair = path.substr(pos, end - pos);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string::npos ? "" : singleton::testing::percentDecode(pair.substr(eq + 1));
    pos = end + 1;
  }
  return "";
}

bool isWatch(const kube::HttpRequest& request) {
  const std::string watch = queryParam(request.path, "watch");
  return watch == "true" || watch == "1";
}

// Records what the reflector hands on, as short strings: "replace@100[a,b]", "ADDED c@101".
class RecordingHandler final : public Handler {
 public:
  void onReplace(std::vector<Json> objects, const std::string& resource_version) override {
    std::string entry = "replace@" + resource_version + "[";
    for (std::size_t i = 0; i < objects.size(); ++i) {
      entry += (i ? "," : "") + objects[i]["metadata"]["name"].get<std::string>();
    }
    record(entry + "]", objects);
  }
  void onEvent(const Event& event) override {
    static const char* const kNames[] = {"ADDED", "MODIFIED", "DELETED"};
    const auto& metadata = event.object["metadata"];
    if (throw_on_event_) {
      throw_on_event_ = false;
      throw std::runtime_error("handler bug");
    }
    record(std::string(kNames[static_cast<int>(event.type)]) + " " + metadata["name"].get<std::string>() + "@" +
               metadata.value("resourceVersion", std::string("?")),
           {event.object});
  }
  std::vector<std::string> log() const {
    std::lock_guard guard(mutex_);
    return log_;
  }
  std::vector<Json> objects() const {
    std::lock_guard guard(mutex_);
    return objects_;
  }
  void throwOnNextEvent() { throw_on_event_ = true; }

 private:
  void record(std::string entry, const std::vector<Json>& objects) {
    std::lock_guard guard(mutex_);
    log_.push_back(std::move(entry));
    objects_.insert(objects_.end(), objects.begin(), objects.end());
  }
  mutable std::mutex mutex_;
  std::vector<std::string> log_;
  std::vector<Json> objects_;
  std::atomic<bool> throw_on_event_{false};
};

template <typename Predicate>
bool waitFor(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class ReflectorTest : public ::testing::Test {
 protected:
  ReflectorTest() {
    options.ns = "default";
    options.label_selector = "app=demo";
    options.watch_timeout = 300s;
    options.backoff = util::BackoffPolicy{100ms, 10s, 2.0, 0.0};  // no jitter: delays are exact
  }

  void start(Handler& handler) {
    reflector = std::make_unique<Reflector>(client, kConfigMaps, options, handler, clock);
    thread = std::jthread([this](std::stop_token stop) { reflector->run(stop); });
  }
  void start() { start(handler); }

  std::vector<kube::HttpRequest> watches() const {
    std::vector<kube::HttpRequest> out;
    for (auto& request : transport->requests()) {
      if (isWatch(request)) out.push_back(request);
    }
    return out;
  }
  std::vector<kube::HttpRequest> lists() const {
    std::vector<kube::HttpRequest> out;
    for (auto& request : transport->requests()) {
      if (!isWatch(request)) out.push_back(request);
    }
    return out;
  }
  bool waitForWatches(std::size_t n) {
    return waitFor([&] { return watches().size() >= n; });
  }
  bool waitForState(Reflector::State state) {
    return waitFor([&] { return reflector->state() == state; });
  }
  // Moves the fake clock by less than a backoff delay and checks that nothing was retried.
  void expectNoRetryAfter(std::chrono::milliseconds by) {
    const std::size_t before = transport->requests().size();
    clock.advance(by);
    std::this_thread::sleep_for(30ms);  // real time for a wrongly woken reflector to send a request
    EXPECT_EQ(transport->requests().size(), before) << "retried before the backoff delay";
    EXPECT_EQ(reflector->state(), Reflector::State::kBackoff);
  }

  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
  kube::Client client{transport};
  util::FakeClock clock;
  RecordingHandler handler;
  ReflectorOptions options;
  std::unique_ptr<Reflector> reflector;
  std::jthread thread;  // last: stopped and joined first
};

TEST_F(ReflectorTest, ListsThenWatchesFromTheListsResourceVersion) {
  transport->push(200, listBody("100", {configMap("a", "90"), configMap("b", "95")}));
  start();
  ASSERT_TRUE(waitForWatches(1));
  ASSERT_TRUE(waitForState(Reflector::State::kWatching));

  const auto list = lists().at(0);
  EXPECT_EQ(list.method, "GET");
  EXPECT_NE(list.path.find("/api/v1/namespaces/default/configmaps"), std::string::npos) << list.path;
  EXPECT_EQ(queryParam(list.path, "labelSelector"), "app=demo");

  const auto watch = watches().at(0);
  EXPECT_NE(watch.path.find("/api/v1/namespaces/default/configmaps"), std::string::npos) << watch.path;
  EXPECT_EQ(queryParam(watch.path, "resourceVersion"), "100");
  EXPECT_EQ(queryParam(watch.path, "allowWatchBookmarks"), "true");
  EXPECT_EQ(queryParam(watch.path, "timeoutSeconds"), "300");
  EXPECT_EQ(queryParam(watch.path, "labelSelector"), "app=demo");
  // The transport must outlast the server's own timeout, or every quiet watch would die as a client timeout.
  EXPECT_GT(watch.timeout, std::chrono::milliseconds(300s));

  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[a,b]"}));
  EXPECT_TRUE(reflector->hasSynced());
  EXPECT_EQ(reflector->listCount(), 1);
  EXPECT_EQ(reflector->watchCount(), 1);
  EXPECT_EQ(reflector->lastResourceVersion(), "100");
}

TEST_F(ReflectorTest, EventsReachTheHandlerInOrderWhileTheStreamIsOpen) {
  transport->push(200, listBody("100", {configMap("a", "90"), configMap("b", "95")}));
  // block_until_stopped: the stream never ends, so the events must be handed on as they arrive.
  transport->pushStream(
      openStream({eventLine("ADDED", configMap("c", "101")), eventLine("MODIFIED", configMap("a", "102", "x")),
                  eventLine("DELETED", configMap("b", "103"))}));
  start();
  ASSERT_TRUE(waitFor([&] { return handler.log().size() == 4; }));
  EXPECT_EQ(handler.log(),
            std::vector<std::string>({"replace@100[a,b]", "ADDED c@101", "MODIFIED a@102", "DELETED b@103"}));
  // The version moves once the handler has taken the event, a moment after the log shows it.
  EXPECT_TRUE(waitFor([&] { return reflector->lastResourceVersion() == "103"; }));
  EXPECT_EQ(reflector->state(), Reflector::State::kWatching);
}

TEST_F(ReflectorTest, EventsSplitAtEveryByteAreDecoded) {
  transport->push(200, listBody("100", {}));
  const std::string body = eventLine("ADDED", configMap("c", "101")) + eventLine("MODIFIED", configMap("c", "102"));
  ScriptedStream stream = openStream({});
  for (char c : body) stream.chunks.emplace_back(1, c);
  transport->pushStream(stream);
  start();
  ASSERT_TRUE(waitFor([&] { return handler.log().size() == 3; }));
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[]", "ADDED c@101", "MODIFIED c@102"}));
}

TEST_F(ReflectorTest, BookmarkMovesTheResourceVersionWithoutAnEvent) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(openStream({bookmark("150")}));
  start();
  ASSERT_TRUE(waitFor([&] { return reflector->lastResourceVersion() == "150"; }));
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[]"}));
}

TEST_F(ReflectorTest, StreamEndResumesFromTheLastVersionWithoutRelisting) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(endingStream({eventLine("ADDED", configMap("c", "101")), bookmark("120")}));
  start();
  ASSERT_TRUE(waitForWatches(2));
  EXPECT_EQ(queryParam(watches().at(1).path, "resourceVersion"), "120");
  EXPECT_EQ(lists().size(), 1u);
  EXPECT_EQ(reflector->listCount(), 1);
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[]", "ADDED c@101"}));
}

TEST_F(ReflectorTest, ImmediateEmptyStreamEndIsTreatedAsAnError) {
  // A server that closes every watch at once would otherwise make us spin.
  transport->push(200, listBody("100", {}));
  transport->pushStream(endingStream({}));
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  expectNoRetryAfter(99ms);
  clock.advance(1ms);
  ASSERT_TRUE(waitForWatches(2));
  EXPECT_EQ(queryParam(watches().at(1).path, "resourceVersion"), "100");
}

TEST_F(ReflectorTest, ExpiredErrorEventRelists) {
  for (const Json& error : {status(410, "Expired", "too old resource version: 100 (200)"),
                            status(0, "Gone", "gone without a code"), status(410, "", "code only")}) {
    SCOPED_TRACE(error.dump());
    auto local_transport = std::make_shared<FakeTransport>();
    kube::Client local_client(local_transport);
    RecordingHandler local_handler;
    local_transport->push(200, listBody("100", {configMap("a", "90")}));
    local_transport->pushStream(openStream({eventLine("ERROR", error)}));
    local_transport->push(200, listBody("300", {configMap("a", "90"), configMap("c", "250")}));
    Reflector local(local_client, kConfigMaps, options, local_handler, clock);
    std::jthread runner([&](std::stop_token stop) { local.run(stop); });

    // watchCount() moves just before the request reaches the transport, so wait for the request itself.
    ASSERT_TRUE(waitFor([&] { return local.listCount() == 2 && local_transport->requests().size() >= 4; }));
    const auto requests = local_transport->requests();
    ASSERT_EQ(requests.size(), 4u);
    EXPECT_EQ(queryParam(requests[3].path, "resourceVersion"), "300");
    EXPECT_EQ(local_handler.log(), std::vector<std::string>({"replace@100[a]", "replace@300[a,c]"}));
  }
}

TEST_F(ReflectorTest, HttpGoneRelists) {
  transport->push(200, listBody("100", {configMap("a", "90")}));
  transport->pushStream(refusedStream(410, status(410, "Expired", "too old resource version: 100 (200)").dump()));
  transport->push(200, listBody("300", {}));
  start();
  ASSERT_TRUE(waitForWatches(2));
  EXPECT_EQ(reflector->listCount(), 2);
  EXPECT_EQ(queryParam(watches().at(1).path, "resourceVersion"), "300");
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[a]", "replace@300[]"}));
}

TEST_F(ReflectorTest, OtherErrorEventBacksOffAndResumesWithoutRelisting) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(openStream(
      {eventLine("ADDED", configMap("c", "101")), eventLine("ERROR", status(500, "InternalError", "etcd"))}));
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  expectNoRetryAfter(99ms);
  clock.advance(1ms);
  ASSERT_TRUE(waitForWatches(2));
  EXPECT_EQ(queryParam(watches().at(1).path, "resourceVersion"), "101");
  EXPECT_EQ(reflector->listCount(), 1);
}

TEST_F(ReflectorTest, NetworkErrorBacksOffExponentiallyThenResumes) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(endingStream({}, util::makeError(util::ErrorCode::kNetwork, "reset")));
  transport->pushStream(endingStream({}, util::makeError(util::ErrorCode::kNetwork, "reset")));
  start();

  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  expectNoRetryAfter(99ms);
  clock.advance(1ms);  // 100 ms: the first delay
  ASSERT_TRUE(waitForWatches(2));

  ASSERT_TRUE(waitFor([&] { return reflector->state() == Reflector::State::kBackoff; }));
  expectNoRetryAfter(199ms);
  clock.advance(1ms);  // 200 ms: doubled
  ASSERT_TRUE(waitForWatches(3));
  ASSERT_TRUE(waitForState(Reflector::State::kWatching));

  for (const auto& watch : watches()) EXPECT_EQ(queryParam(watch.path, "resourceVersion"), "100");
  EXPECT_EQ(reflector->listCount(), 1);
}

TEST_F(ReflectorTest, EventsResetTheBackoff) {
  transport->push(200, listBody("100", {}));
  const auto reset = util::makeError(util::ErrorCode::kNetwork, "reset");
  transport->pushStream(endingStream({}, reset));  // backoff 100 ms
  transport->pushStream(endingStream({eventLine("ADDED", configMap("c", "101"))}, reset));
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  clock.advance(100ms);
  ASSERT_TRUE(waitForWatches(2));
  ASSERT_TRUE(waitFor([&] { return handler.log().size() == 2 && reflector->state() == Reflector::State::kBackoff; }));
  // The watch worked for a while, so the delay starts over at 100 ms instead of 200 ms.
  expectNoRetryAfter(99ms);
  clock.advance(1ms);
  ASSERT_TRUE(waitForWatches(3));
  EXPECT_EQ(queryParam(watches().at(2).path, "resourceVersion"), "101");
}

TEST_F(ReflectorTest, ListFailureBacksOffAndListsAgain) {
  transport->push(util::makeError(util::ErrorCode::kNetwork, "connection refused"));
  transport->push(500, status(500, "InternalError", "boom").dump());
  transport->push(200, listBody("100", {configMap("a", "90")}));
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  expectNoRetryAfter(99ms);
  clock.advance(1ms);
  ASSERT_TRUE(waitFor([&] { return lists().size() == 2 && reflector->state() == Reflector::State::kBackoff; }));
  EXPECT_FALSE(reflector->hasSynced());
  expectNoRetryAfter(199ms);
  clock.advance(1ms);
  ASSERT_TRUE(waitForWatches(1));
  EXPECT_EQ(queryParam(watches().at(0).path, "resourceVersion"), "100");
  EXPECT_TRUE(reflector->hasSynced());
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[a]"}));
}

TEST_F(ReflectorTest, RetryAfterIsHonoured) {
  transport->push(429, status(429, "TooManyRequests", "slow down").dump(), {{"retry-after", "3"}});
  transport->push(200, listBody("100", {}));
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  expectNoRetryAfter(2999ms);  // far beyond the 100 ms backoff
  clock.advance(1ms);
  ASSERT_TRUE(waitForWatches(1));
  EXPECT_EQ(reflector->listCount(), 1);
}

TEST_F(ReflectorTest, GarbageLinesAreSkipped) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(
      openStream({"this is not json\n", "[1, 2, 3]\n", "{\"type\": \"ADDED\"}\n",
                  "{\"type\": \"ADDED\", \"object\": 7}\n", "{\"truncated\": \n",
                  eventLine("SOMETHING", configMap("x", "100")), eventLine("ADDED", configMap("c", "101"))}));
  start();
  ASSERT_TRUE(waitFor([&] { return handler.log().size() == 2; }));
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[]", "ADDED c@101"}));
  EXPECT_EQ(reflector->watchCount(), 1);
  EXPECT_EQ(reflector->state(), Reflector::State::kWatching);
}

TEST_F(ReflectorTest, StopIsPromptWhileWatching) {
  transport->push(200, listBody("100", {}));
  start();
  ASSERT_TRUE(waitForWatches(1));
  const auto asked = std::chrono::steady_clock::now();
  thread.request_stop();
  thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  EXPECT_EQ(reflector->state(), Reflector::State::kStopped);
}

TEST_F(ReflectorTest, StopIsPromptWhileBackingOff) {
  options.backoff.initial = std::chrono::hours(1);
  start();  // no scripted list answer: a network error, then an hour's wait on the fake clock
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  const auto asked = std::chrono::steady_clock::now();
  thread.request_stop();
  thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  EXPECT_EQ(reflector->state(), Reflector::State::kStopped);
}

TEST_F(ReflectorTest, TransformIsAppliedToListedAndWatchedObjects) {
  options.transform = [](Json& object) {
    object["metadata"].erase("managedFields");
    object["metadata"]["labels"] = {{"seen", "yes"}};
  };
  Json listed = configMap("a", "90");
  listed["metadata"]["managedFields"] = Json::array({{{"manager", "kubectl"}}});
  transport->push(200, listBody("100", {listed}));
  Json watched = configMap("b", "101");
  watched["metadata"]["managedFields"] = Json::array({{{"manager", "kubectl"}}});
  transport->pushStream(openStream({eventLine("ADDED", watched)}));
  start();
  ASSERT_TRUE(waitFor([&] { return handler.objects().size() == 2; }));
  for (const Json& object : handler.objects()) {
    EXPECT_FALSE(object["metadata"].contains("managedFields")) << object.dump();
    EXPECT_EQ(object["metadata"]["labels"]["seen"], "yes");
  }
}

TEST_F(ReflectorTest, ThrowingHandlerLeadsToABackoffAndARelist) {
  transport->push(200, listBody("100", {}));
  transport->pushStream(openStream({eventLine("ADDED", configMap("c", "101"))}));
  transport->push(200, listBody("200", {configMap("c", "101")}));
  handler.throwOnNextEvent();
  start();
  ASSERT_TRUE(waitForState(Reflector::State::kBackoff));
  clock.advance(100ms);
  ASSERT_TRUE(waitForWatches(2));
  EXPECT_EQ(reflector->listCount(), 2);
  EXPECT_EQ(handler.log(), std::vector<std::string>({"replace@100[]", "replace@200[c]"}));
}

// The cache behind a reflector: a deletion that happened while the watch was down (410, relist) still reaches the
// listeners.
TEST_F(ReflectorTest, CacheSynthesizesEventsAcrossARelist) {
  Cache cache;
  std::mutex mutex;
  std::vector<std::string> seen;
  cache.addListener([&](const Event& event) {
    static const char* const kNames[] = {"ADDED", "MODIFIED", "DELETED"};
    std::lock_guard guard(mutex);
    seen.push_back(std::string(kNames[static_cast<int>(event.type)]) + " " + objectKey(event.object));
  });
  transport->push(200, listBody("100", {configMap("a", "90"), configMap("b", "95"), configMap("c", "96")}));
  transport->pushStream(
      endingStream({eventLine("ERROR", status(410, "Expired", "too old resource version: 100 (200)"))}));
  transport->push(200, listBody("300", {configMap("a", "90"), configMap("b", "250"), configMap("d", "260")}));
  start(cache);
  ASSERT_TRUE(waitFor([&] { return reflector->listCount() == 2; }));
  std::lock_guard guard(mutex);
  EXPECT_EQ(seen, std::vector<std::string>({"ADDED default/a", "ADDED default/b", "ADDED default/c",
                                            "MODIFIED default/b", "ADDED default/d", "DELETED default/c"}));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.get("default", "c").has_value());
  EXPECT_EQ((*cache.get("default/b"))["metadata"]["resourceVersion"], "250");
}

TEST(ReflectorStateTest, StateNames) {
  EXPECT_STREQ(stateName(Reflector::State::kEmpty), "Empty");
  EXPECT_STREQ(stateName(Reflector::State::kListing), "Listing");
  EXPECT_STREQ(stateName(Reflector::State::kWatching), "Watching");
  EXPECT_STREQ(stateName(Reflector::State::kBackoff), "Backoff");
  EXPECT_STREQ(stateName(Reflector::State::kStopped), "Stopped");
}

}  // namespace
}  // namespace singleton::watch
