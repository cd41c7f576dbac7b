#include "kube/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "tests/unit/support/fake_transport.h"
#include "util/time_format.h"

namespace singleton::kube {
namespace {

using testing::FakeTransport;
using testing::ScriptedStream;
using util::ErrorCode;

std::string statusBody(int code, const std::string& reason, const std::string& message) {
  return Json{{"kind", "Status"}, {"status", "Failure"}, {"reason", reason}, {"message", message}, {"code", code}}
      .dump();
}

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : fake_(std::make_shared<FakeTransport>()), client_(fake_, {std::chrono::milliseconds(1234), "ua/1"}) {}

  HttpRequest only() {
    const auto requests = fake_->requests();
    EXPECT_EQ(requests.size(), 1u);
    return requests.empty() ? HttpRequest{} : requests.back();
  }

  std::shared_ptr<FakeTransport> fake_;
  Client client_;
};

TEST_F(ClientTest, GetSendsTimeoutUserAgentAndParses) {
  fake_->push(200, R"({"kind":"Pod","metadata":{"name":"p"}})");
  auto pod = client_.get(kPods, "default", "p");
  ASSERT_TRUE(pod.ok()) << pod.error().describe();
  EXPECT_EQ((*pod)["metadata"]["name"], "p");
  const HttpRequest request = only();
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path, "/api/v1/namespaces/default/pods/p");
  EXPECT_EQ(request.body, "");
  EXPECT_EQ(request.timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(request.headers.at("User-Agent"), "ua/1");
}

TEST_F(ClientTest, ListQuery) {
  fake_->push(200, R"({"kind":"PodList","metadata":{"resourceVersion":"9"},"items":[]})");
  ListOptions options;
  options.label_selector = "app=web,tier!=db";
  options.field_selector = "status.phase=Running";
  options.resource_version = "0";
  options.limit = 50;
  options.continue_token = "abc==";
  auto list = client_.list(kPods, "ns", options);
  ASSERT_TRUE(list.ok()) << list.error().describe();
  EXPECT_EQ(only().path,
            "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb%2Ctier%21%3Ddb&fieldSelector=status.phase%3DRunning"
            "&resourceVersion=0&limit=50&continue=abc%3D%3D");
}

TEST_F(ClientTest, ListWithoutOptionsAcrossNamespaces) {
  fake_->push(200, R"({"items":[{"metadata":{"name":"a"}}]})");
  auto list = client_.list(kPods, "");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(only().path, "/api/v1/pods");
}

TEST_F(ClientTest, ListAnswerWithoutItemsIsBad) {
  fake_->push(200, R"({"kind":"Pod"})");
  auto list = client_.list(kPods, "ns");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, ErrorCode::kBadResponse);
}

TEST_F(ClientTest, CreatePostsJsonToTheCollection) {
  fake_->push(201, R"({"metadata":{"name":"cm","resourceVersion":"1"}})");
  const Json object = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "cm"}}}};
  auto created = client_.create({"", "v1", "configmaps", true}, "ns", object);
  ASSERT_TRUE(created.ok());
  const HttpRequest request = only();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/api/v1/namespaces/ns/configmaps");
  EXPECT_EQ(request.content_type, "application/json");
  EXPECT_EQ(Json::parse(request.body), object);
}

TEST_F(ClientTest, CreateTakesTheNamespaceFromTheObjectWhenNotGiven) {
  fake_->push(201, "{}");
  auto created = client_.create(kLeases, "", {{"metadata", {{"name", "l"}, {"namespace", "from-object"}}}});
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(only().path, "/apis/coordination.k8s.io/v1/namespaces/from-object/leases");
}

TEST_F(ClientTest, UpdatePutsToTheObjectAndSubresource) {
  fake_->push(200, "{}");
  fake_->push(200, "{}");
  const Json object = {{"metadata", {{"name", "x"}, {"resourceVersion", "5"}}}, {"status", {{"ok", true}}}};
  ASSERT_TRUE(client_.update(kPods, "ns", object).ok());
  ASSERT_TRUE(client_.update(kPods, "ns", object, "status").ok());
  const auto requests = fake_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "PUT");
  EXPECT_EQ(requests[0].path, "/api/v1/namespaces/ns/pods/x");
  EXPECT_EQ(Json::parse(requests[0].body)["metadata"]["resourceVersion"], "5");
  EXPECT_EQ(requests[1].path, "/api/v1/namespaces/ns/pods/x/status");
}

TEST_F(ClientTest, UpdateWithoutNameIsRefusedLocally) {
  auto updated = client_.update(kPods, "ns", {{"metadata", Json::object()}});
  ASSERT_FALSE(updated.ok());
  EXPECT_EQ(updated.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(fake_->requests().empty());
}

TEST_F(ClientTest, StaleUpdateIsConflict) {
  fake_->push(409, statusBody(409, "Conflict",
                              "Operation cannot be fulfilled on leases.coordination.k8s.io \"l\": the object has been "
                              "modified; please apply your changes to the latest version and try again"));
  auto updated = client_.update(kLeases, "ns", {{"metadata", {{"name", "l"}, {"resourceVersion", "1"}}}});
  ASSERT_FALSE(updated.ok());
  EXPECT_EQ(updated.error().code, ErrorCode::kConflict);
  EXPECT_EQ(updated.error().reason, "Conflict");
  EXPECT_EQ(updated.error().http_status, 409);
}

TEST_F(ClientTest, PatchesUseTheirContentTypes) {
  fake_->push(200, "{}");
  fake_->push(200, "{}");
  ASSERT_TRUE(client_.mergePatch(kPods, "ns", "p", {{"metadata", {{"labels", {{"a", "b"}}}}}}).ok());
  const Json ops = Json::array({{{"op", "add"}, {"path", "/metadata/labels/c"}, {"value", "d"}}});
  ASSERT_TRUE(client_.jsonPatch(kPods, "ns", "p", ops, "status").ok());
  const auto requests = fake_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "PATCH");
  EXPECT_EQ(requests[0].content_type, "application/merge-patch+json");
  EXPECT_EQ(requests[0].path, "/api/v1/namespaces/ns/pods/p");
  EXPECT_EQ(requests[1].method, "PATCH");
  EXPECT_EQ(requests[1].content_type, "application/json-patch+json");
  EXPECT_EQ(requests[1].path, "/api/v1/namespaces/ns/pods/p/status");
  EXPECT_EQ(Json::parse(requests[1].body), ops);
}

TEST_F(ClientTest, PatchShapesAreCheckedLocally) {
  EXPECT_EQ(client_.jsonPatch(kPods, "ns", "p", Json::object()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(client_.mergePatch(kPods, "ns", "p", Json::array()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(fake_->requests().empty());
}

TEST_F(ClientTest, RemoveSendsDeleteOptions) {
  fake_->push(200, R"({"kind":"Status","status":"Success"})");
  DeleteOptions options;
  options.grace_period_seconds = 0;
  options.propagation_policy = "Foreground";
  options.precondition_uid = "uid-1";
  options.precondition_resource_version = "77";
  ASSERT_TRUE(client_.remove(kPods, "ns", "p", options).ok());
  const HttpRequest request = only();
  EXPECT_EQ(request.method, "DELETE");
  EXPECT_EQ(request.path, "/api/v1/namespaces/ns/pods/p");
  EXPECT_EQ(Json::parse(request.body), Json::parse(R"({"kind":"DeleteOptions","apiVersion":"v1",
      "gracePeriodSeconds":0,"propagationPolicy":"Foreground",
      "preconditions":{"uid":"uid-1","resourceVersion":"77"}})"));
}

TEST_F(ClientTest, RemoveWithDefaults) {
  fake_->push(404, statusBody(404, "NotFound", "pods \"p\" not found"));
  auto removed = client_.remove(kPods, "ns", "p");
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(removed.error().message, "pods \"p\" not found");
  EXPECT_EQ(Json::parse(only().body), Json::parse(R"({"kind":"DeleteOptions","apiVersion":"v1"})"));
}

TEST_F(ClientTest, GarbageAnswersAreBadResponses) {
  fake_->push(200, "<html>hello</html>");
  fake_->push(200, "{\"truncated\": ");
  fake_->push(200, std::string("\xff\xfe\x00", 3));
  for (int i = 0; i < 3; ++i) {
    auto answer = client_.get(kPods, "ns", "p");
    ASSERT_FALSE(answer.ok());
    EXPECT_EQ(answer.error().code, ErrorCode::kBadResponse);
    EXPECT_TRUE(answer.error().retryable());
  }
  fake_->push(200, "[1]");  // JSON, but not a Lease
  EXPECT_EQ(client_.getLease("ns", "l").error().code, ErrorCode::kBadResponse);
}

TEST_F(ClientTest, NetworkErrorsPassThrough) {
  fake_->push(util::makeError(ErrorCode::kTimeout, "slow"));
  EXPECT_EQ(client_.get(kPods, "ns", "p").error().code, ErrorCode::kTimeout);
}

TEST_F(ClientTest, WatchBuildsTheQueryAndStreams) {
  ScriptedStream stream;
  stream.chunks = {"{\"type\":\"ADDED\",", "\"object\":{}}\n"};
  fake_->pushStream(stream);
  WatchOptions options;
  options.resource_version = "100";
  options.timeout = std::chrono::seconds(60);
  options.label_selector = "a=b";
  std::string received;
  auto status = client_.watch(kLeases, "ns", options, [&](std::string_view chunk) { received += chunk; }, {});
  ASSERT_TRUE(status.ok()) << status.error().describe();
  EXPECT_EQ(received, "{\"type\":\"ADDED\",\"object\":{}}\n");
  const HttpRequest request = only();
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path,
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases?watch=1&resourceVersion=100&allowWatchBookmarks=true"
            "&timeoutSeconds=60&labelSelector=a%3Db");
  EXPECT_GT(request.timeout, std::chrono::seconds(60));  // silence up to the server's own end of the watch is fine
}

TEST_F(ClientTest, WatchErrorsAreClassified) {
  ScriptedStream gone;
  gone.status = 410;
  gone.error_body = statusBody(410, "Expired", "too old resource version: 1 (50)");
  fake_->pushStream(gone);
  WatchOptions options;
  options.allow_bookmarks = false;
  bool called = false;
  auto status = client_.watch(kPods, "", options, [&](std::string_view) { called = true; }, {});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kGone);
  EXPECT_FALSE(called);
  EXPECT_EQ(only().path, "/api/v1/pods?watch=1&timeoutSeconds=300");

  ScriptedStream broken;
  broken.chunks = {"x"};
  broken.end_error = util::makeError(ErrorCode::kNetwork, "reset");
  fake_->pushStream(broken);
  EXPECT_EQ(client_.watch(kPods, "", {}, [](std::string_view) {}, {}).error().code, ErrorCode::kNetwork);
}

TEST_F(ClientTest, WatchStopsOnRequest) {
  ScriptedStream quiet;
  quiet.block_until_stopped = true;
  fake_->pushStream(quiet);
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop.request_stop();
  });
  auto status = client_.watch(
      kPods, "ns", {}, [](std::string_view) {}, stop.get_token());
  stopper.join();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kCancelled);
}

const char* kLeaseAnswer = R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
    "metadata":{"name":"lock","namespace":"ns","resourceVersion":"8","labels":{"keep":"me"}},
    "spec":{"holderIdentity":"a","leaseDurationSeconds":15,"renewTime":"2024-01-01T00:00:00.000000Z",
            "leaseTransitions":1}})";

TEST_F(ClientTest, LeaseGetCreateUpdateDelete) {
  fake_->push(200, kLeaseAnswer);
  auto lease = client_.getLease("ns", "lock");
  ASSERT_TRUE(lease.ok()) << lease.error().describe();
  EXPECT_EQ(lease->resource_version, "8");
  EXPECT_EQ(lease->spec.holder_identity, "a");

  // Update: a PUT carrying the version read, our spec, and the labels we do not model.
  lease->spec.holder_identity = "b";
  lease->spec.renew_time = util::parseTime("2024-01-01T00:00:05Z").value();
  Json after = Json::parse(kLeaseAnswer);
  after["metadata"]["resourceVersion"] = "9";
  after["spec"]["holderIdentity"] = "b";
  fake_->push(200, after.dump());
  auto updated = client_.updateLease(*lease);
  ASSERT_TRUE(updated.ok()) << updated.error().describe();
  EXPECT_EQ(updated->resource_version, "9");
  auto requests = fake_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].method, "PUT");
  EXPECT_EQ(requests[1].path, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lock");
  const Json sent = Json::parse(requests[1].body);
  EXPECT_EQ(sent["metadata"]["resourceVersion"], "8");
  EXPECT_EQ(sent["metadata"]["labels"]["keep"], "me");
  EXPECT_EQ(sent["spec"]["holderIdentity"], "b");
  EXPECT_EQ(sent["spec"]["renewTime"], "2024-01-01T00:00:05.000000Z");

  // Create: no resourceVersion may be sent.
  fake_->push(201, kLeaseAnswer);
  ASSERT_TRUE(client_.createLease(*lease).ok());
  requests = fake_->requests();
  EXPECT_EQ(requests[2].method, "POST");
  EXPECT_EQ(requests[2].path, "/apis/coordination.k8s.io/v1/namespaces/ns/leases");
  EXPECT_FALSE(Json::parse(requests[2].body)["metadata"].contains("resourceVersion"));

  fake_->push(200, R"({"kind":"Status","status":"Success"})");
  ASSERT_TRUE(client_.deleteLease("ns", "lock").ok());
  EXPECT_EQ(fake_->requests()[3].method, "DELETE");
}

TEST_F(ClientTest, LeaseErrors) {
  fake_->push(404, statusBody(404, "NotFound", "leases.coordination.k8s.io \"x\" not found"));
  auto missing = client_.getLease("ns", "x");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "leases.coordination.k8s.io \"x\" not found");

  fake_->push(409, statusBody(409, "AlreadyExists", "leases.coordination.k8s.io \"x\" already exists"));
  Lease lease;
  lease.name = "x";
  lease.ns = "ns";
  EXPECT_EQ(client_.createLease(lease).error().code, ErrorCode::kAlreadyExists);

  // An update without a version would be a blind overwrite: refused before anything is sent.
  EXPECT_EQ(client_.updateLease(lease).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(fake_->requests().size(), 2u);
}

TEST_F(ClientTest, RawReturnsTheBodyOrAClassifiedError) {
  fake_->push(200, "ok");
  fake_->push(500, "[-]etcd failed");
  auto ready = client_.raw("GET", "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(*ready, "ok");
  auto failing = client_.raw("GET", "/readyz?verbose");
  ASSERT_FALSE(failing.ok());
  EXPECT_EQ(failing.error().code, ErrorCode::kServerError);
  EXPECT_EQ(failing.error().message, "[-]etcd failed");
  EXPECT_EQ(fake_->requests()[1].path, "/readyz?verbose");
}

// A transport that blocks every send until its stop token is requested, like a request on a frozen apiserver.
class HangingTransport final : public Transport {
 public:
  util::Result<HttpResponse> send(const HttpRequest&, std::stop_token stop) override {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    sends_.fetch_add(1);
    cv.wait_for(lock, stop, std::chrono::seconds(30), [] { return false; });
    if (stop.stop_requested()) return util::makeError(ErrorCode::kCancelled, "cancelled");
    return util::makeError(ErrorCode::kTimeout, "no answer");
  }
  util::Result<HttpResponse> stream(const HttpRequest&, const ChunkHandler&, std::stop_token) override {
    return util::makeError(ErrorCode::kNetwork, "no streams");
  }
  std::string describe() const override { return "hanging://"; }
  std::atomic<int> sends_{0};
};

TEST(CancelScopeTest, RequestsSentUnderAScopeAreCancelledByItsStopToken) {
  auto transport = std::make_shared<HangingTransport>();
  Client client(transport);
  std::stop_source term;
  std::atomic<bool> returned{false};
  util::Error error;
  std::jthread worker([&] {
    CancelScope scope(term.get_token());
    auto answer = client.jsonPatch(kPods, "ns", "p", Json::array());
    if (!answer.ok()) error = answer.error();
    returned = true;
  });
  while (transport->sends_.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(returned.load());
  const auto before = std::chrono::steady_clock::now();
  term.request_stop();
  worker.join();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(5)) << "not the 30 s transport deadline";
  EXPECT_EQ(error.code, ErrorCode::kCancelled) << error.describe();
}

TEST(CancelScopeTest, ScopesNestAndEndWithTheirThread) {
  EXPECT_FALSE(CancelScope::current().stop_possible());
  std::stop_source outer;
  std::stop_source inner;
  {
    CancelScope a(outer.get_token());
    EXPECT_TRUE(CancelScope::current() == outer.get_token());
    {
      CancelScope b(inner.get_token());
      EXPECT_TRUE(CancelScope::current() == inner.get_token());
    }
    EXPECT_TRUE(CancelScope::current() == outer.get_token());
    std::jthread([] { EXPECT_FALSE(CancelScope::current().stop_possible()) << "per thread"; }).join();
  }
  EXPECT_FALSE(CancelScope::current().stop_possible());
}

}  // namespace
}  // namespace singleton::kube
