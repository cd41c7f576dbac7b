// The kube layer against a real kube-apiserver: TLS with the cluster's CA (and a readable failure with the wrong one),
// Lease compare-and-swap, error classification, generic calls on a ConfigMap, and a watch that streams promptly.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <random>
#include <thread>

#include "kube/client.h"
#include "support/cluster_fixture.h"
#include "tests/unit/kube/test_tls_server.h"

namespace singleton::kube {
namespace {

using namespace std::chrono_literals;
using testing::cluster;
using util::ErrorCode;

const Resource kConfigMaps{"", "v1", "configmaps", true};

std::string unique(const std::string& prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  return prefix + "-" + std::to_string(rng() % 1'000'000'000);
}

ClusterConfig clusterConfig() {
  auto config = loadKubeconfig({cluster().kubeconfigPath().string(), ""});
  if (!config.ok()) throw std::runtime_error(config.error().describe());
  return *config;
}

Client makeClient(const ClusterConfig& config = clusterConfig()) {
  auto transport = makeTransport(config, {2});
  if (!transport.ok()) throw std::runtime_error(transport.error().describe());
  return Client(*transport);
}

TEST(KubeClient, TlsWithTheClusterCa) {
  const ClusterConfig config = clusterConfig();
  EXPECT_EQ(config.ca_origin, "file " + cluster().caFile().string());
  Client client = makeClient(config);
  auto ready = client.raw("GET", "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.error().describe();
  EXPECT_EQ(*ready, "ok");
}

TEST(KubeClient, WrongCaFailsWithAReadableError) {
  ClusterConfig config = clusterConfig();
  config.ca_pem = testing::TestPki::makeCa("not-the-cluster-ca").cert_pem;
  config.ca_origin = "file /nowhere/wrong-ca.crt";
  Client client = makeClient(config);
  auto ready = client.raw("GET", "/readyz");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().code, ErrorCode::kNetwork);
  EXPECT_NE(ready.error().message.find("certificate verify failed"), std::string::npos) << ready.error().message;
  EXPECT_NE(ready.error().message.find("file /nowhere/wrong-ca.crt"), std::string::npos) << ready.error().message;
  std::cout << "wrong CA: " << ready.error().describe() << "\n";
}

TEST(KubeClient, UnauthorizedWithAWrongToken) {
  ClusterConfig config = clusterConfig();
  config.token = std::make_shared<StaticTokenSource>("wrong-token");
  auto answer = makeClient(config).list(kConfigMaps, "default");
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kUnauthorized);
}

TEST(KubeClient, LeaseLifecycleAndCompareAndSwap) {
  Client client = makeClient();
  const std::string name = unique("lease");

  auto missing = client.getLease("default", name);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "leases.coordination.k8s.io \"" + name + "\" not found");

  Lease lease;
  lease.name = name;
  lease.ns = "default";
  lease.spec.holder_identity = "a";
  lease.spec.lease_duration_seconds = 15;
  lease.spec.acquire_time = std::chrono::system_clock::now();
  lease.spec.renew_time = lease.spec.acquire_time;
  lease.spec.lease_transitions = 0;
  lease.raw["metadata"]["labels"]["test"] = "kube-client";
  auto created = client.createLease(lease);
  ASSERT_TRUE(created.ok()) << created.error().describe();
  EXPECT_FALSE(created->resource_version.empty());
  // MicroTime keeps microseconds on the way through the server.
  EXPECT_EQ(std::chrono::floor<std::chrono::microseconds>(*created->spec.renew_time),
            std::chrono::floor<std::chrono::microseconds>(*lease.spec.renew_time));

  auto again = client.createLease(lease);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);

  auto read = client.getLease("default", name);
  ASSERT_TRUE(read.ok()) << read.error().describe();
  EXPECT_EQ(read->spec, created->spec);
  EXPECT_EQ(read->raw["metadata"]["labels"]["test"], "kube-client");

  Lease renewed = *read;
  renewed.spec.holder_identity = "b";
  renewed.spec.lease_transitions = 1;
  auto updated = client.updateLease(renewed);
  ASSERT_TRUE(updated.ok()) << updated.error().describe();
  EXPECT_EQ(updated->spec.holder_identity, "b");
  EXPECT_NE(updated->resource_version, read->resource_version);
  EXPECT_EQ(updated->raw["metadata"]["labels"]["test"], "kube-client");  // unknown fields survive the update

  // `read` is now stale: someone else (we, a moment ago) wrote first.
  Lease stale = *read;
  stale.spec.holder_identity = "c";
  auto conflict = client.updateLease(stale);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  EXPECT_EQ(conflict.error().http_status, 409);

  ASSERT_TRUE(client.deleteLease("default", name).ok());
  EXPECT_EQ(client.deleteLease("default", name).error().code, ErrorCode::kNotFound);
}

TEST(KubeClient, GenericCallsOnAConfigMap) {
  Client client = makeClient();
  const std::string name = unique("cm");
  const std::string label = unique("run");
  const Json object = {{"apiVersion", "v1"},
                       {"kind", "ConfigMap"},
                       {"metadata", {{"name", name}, {"labels", {{"run", label}}}}},
                       {"data", {{"a", "1"}}}};
  auto created = client.create(kConfigMaps, "default", object);
  ASSERT_TRUE(created.ok()) << created.error().describe();

  ListOptions options;
  options.label_selector = "run=" + label;
  auto list = client.list(kConfigMaps, "default", options);
  ASSERT_TRUE(list.ok()) << list.error().describe();
  ASSERT_EQ((*list)["items"].size(), 1u);
  EXPECT_EQ((*list)["items"][0]["metadata"]["name"], name);

  auto merged = client.mergePatch(kConfigMaps, "default", name, {{"data", {{"b", "2"}, {"a", nullptr}}}});
  ASSERT_TRUE(merged.ok()) << merged.error().describe();
  EXPECT_EQ((*merged)["data"], Json({{"b", "2"}}));

  const Json ops = Json::array(
      {{{"op", "add"}, {"path", "/data/c"}, {"value", "3"}}, {{"op", "test"}, {"path", "/data/b"}, {"value", "2"}}});
  auto patched = client.jsonPatch(kConfigMaps, "default", name, ops);
  ASSERT_TRUE(patched.ok()) << patched.error().describe();
  EXPECT_EQ((*patched)["data"], Json({{"b", "2"}, {"c", "3"}}));

  const Json failing = Json::array({{{"op", "test"}, {"path", "/data/b"}, {"value", "nope"}}});
  auto refused = client.jsonPatch(kConfigMaps, "default", name, failing);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalid) << refused.error().describe();

  Json stale = *created;
  stale["data"]["d"] = "4";
  EXPECT_EQ(client.update(kConfigMaps, "default", stale).error().code, ErrorCode::kConflict);

  DeleteOptions precondition;
  precondition.precondition_uid = "00000000-0000-0000-0000-000000000000";
  EXPECT_EQ(client.remove(kConfigMaps, "default", name, precondition).error().code, ErrorCode::kConflict);

  DeleteOptions options_delete;
  options_delete.grace_period_seconds = 0;
  options_delete.propagation_policy = "Background";
  options_delete.precondition_uid = (*created)["metadata"]["uid"];
  ASSERT_TRUE(client.remove(kConfigMaps, "default", name, options_delete).ok());
  EXPECT_EQ(client.get(kConfigMaps, "default", name).error().code, ErrorCode::kNotFound);
}

TEST(KubeClient, WatchDeliversAnEventWhileTheStreamIsOpen) {
  Client client = makeClient();
  const std::string label = unique("watch");
  ListOptions list_options;
  list_options.label_selector = "run=" + label;
  auto list = client.list(kConfigMaps, "default", list_options);
  ASSERT_TRUE(list.ok()) << list.error().describe();

  std::mutex mutex;
  std::string received;
  std::optional<std::chrono::steady_clock::time_point> seen_at;
  std::atomic<int> chunks{0};
  std::stop_source stop;
  const std::string name = unique("watched");
  std::thread watcher([&] {
    WatchOptions options;
    options.label_selector = "run=" + label;
    options.resource_version = (*list)["metadata"]["resourceVersion"];
    options.timeout = 60s;
    auto status = client.watch(
        kConfigMaps, "default", options,
        [&](std::string_view chunk) {
          ++chunks;
          std::lock_guard guard(mutex);
          received += chunk;
          if (!seen_at && received.find("\"" + name + "\"") != std::string::npos && received.back() == '\n') {
            seen_at = std::chrono::steady_clock::now();
          }
        },
        stop.get_token());
    EXPECT_EQ(status.error().code, ErrorCode::kCancelled) << status.error().describe();
  });

  std::this_thread::sleep_for(300ms);  // let the watch open; events after its resourceVersion arrive either way
  const auto sent_at = std::chrono::steady_clock::now();
  auto created = client.create(kConfigMaps, "default",
                               {{"metadata", {{"name", name}, {"labels", {{"run", label}}}}}, {"data", {{"x", "y"}}}});
  ASSERT_TRUE(created.ok()) << created.error().describe();

  // Seen long before the server ends the 60 s watch: events are delivered as they arrive, not with the whole body.
  const auto deadline = sent_at + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard guard(mutex);
      if (seen_at) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  const int chunks_after_add = chunks.load();
  stop.request_stop();
  watcher.join();

  std::lock_guard guard(mutex);
  ASSERT_TRUE(seen_at) << "no ADDED event; received: " << received;
  std::cout << "watch event after "
            << std::chrono::duration_cast<std::chrono::microseconds>(*seen_at - sent_at).count() / 1000.0 << " ms\n";
  EXPECT_GE(chunks_after_add, 1);
  const Json event = Json::parse(received.substr(0, received.find('\n')));
  EXPECT_EQ(event["type"], "ADDED");
  EXPECT_EQ(event["object"]["metadata"]["name"], name);
  EXPECT_TRUE(client.remove(kConfigMaps, "default", name).ok());
}

TEST(KubeClient, WatchRefusalsAreClassified) {
  // (An expired resourceVersion is not among them: the apiserver answers 200 and sends an ERROR event carrying a 410
  // Status, which the watch layer decodes.)
  Client client = makeClient();
  bool called = false;
  auto status = client.watch({"example.invalid", "v1", "nothings", true}, "default", {},
                             [&](std::string_view) { called = true; }, {});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kNotFound) << status.error().describe();
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace singleton::kube
