// The Boost.Beast transport under kube::Client against a real kube-apiserver: TLS with the cluster's CA (and a readable
// failure with a wrong one), Lease compare-and-swap, a watch that streams promptly and stops promptly, and a kept-alive
// connection that survives an apiserver restart.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "kube/beast_transport.h"
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
  auto transport = makeBeastTransport(config);
  if (!transport.ok()) throw std::runtime_error(transport.error().describe());
  return Client(*transport);
}

TEST(BeastTransportCluster, ReadyzWithTheClusterCa) {
  Client client = makeClient();
  auto ready = client.raw("GET", "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.error().describe();
  EXPECT_EQ(*ready, "ok");
}

TEST(BeastTransportCluster, WrongCaFailsWithAReadableError) {
  ClusterConfig config = clusterConfig();
  config.ca_pem = testing::TestPki::makeCa("not-the-cluster-ca").cert_pem;
  config.ca_origin = "file /nowhere/wrong-ca.crt";
  auto ready = makeClient(config).raw("GET", "/readyz");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().code, ErrorCode::kNetwork);
  const std::string& message = ready.error().message;
  EXPECT_NE(message.find("TLS with " + cluster().apiserverUrl() + " failed: certificate verify failed"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("file /nowhere/wrong-ca.crt"), std::string::npos) << message;
  std::cout << "wrong CA: " << ready.error().describe() << "\n";
}

TEST(BeastTransportCluster, LeaseCompareAndSwap) {
  Client client = makeClient();
  Lease lease;
  lease.name = unique("beast-lease");
  lease.ns = "default";
  lease.spec.holder_identity = "a";
  lease.spec.lease_duration_seconds = 15;
  lease.spec.renew_time = std::chrono::system_clock::now();
  auto created = client.createLease(lease);
  ASSERT_TRUE(created.ok()) << created.error().describe();

  Lease renewed = *created;
  renewed.spec.holder_identity = "b";
  auto updated = client.updateLease(renewed);
  ASSERT_TRUE(updated.ok()) << updated.error().describe();
  EXPECT_EQ(updated->spec.holder_identity, "b");

  Lease stale = *created;  // its resourceVersion is the one before the update
  stale.spec.holder_identity = "c";
  auto conflict = client.updateLease(stale);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  EXPECT_EQ(conflict.error().http_status, 409);

  ASSERT_TRUE(client.deleteLease("default", lease.name).ok());
  EXPECT_EQ(client.getLease("default", lease.name).error().code, ErrorCode::kNotFound);
}

TEST(BeastTransportCluster, WatchDeliversAnEventWhileTheStreamIsOpen) {
  Client client = makeClient();
  const std::string label = unique("beast-watch");
  ListOptions list_options;
  list_options.label_selector = "run=" + label;
  auto list = client.list(kConfigMaps, "default", list_options);
  ASSERT_TRUE(list.ok()) << list.error().describe();

  std::mutex mutex;
  std::string received;
  std::optional<std::chrono::steady_clock::time_point> seen_at;
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
  stop.request_stop();
  watcher.join();

  std::lock_guard guard(mutex);
  ASSERT_TRUE(seen_at) << "no ADDED event; received: " << received;
  std::cout << "watch event after "
            << std::chrono::duration_cast<std::chrono::microseconds>(*seen_at - sent_at).count() / 1000.0 << " ms\n";
  const Json event = Json::parse(received.substr(0, received.find('\n')));
  EXPECT_EQ(event["type"], "ADDED");
  EXPECT_EQ(event["object"]["metadata"]["name"], name);
  EXPECT_TRUE(client.remove(kConfigMaps, "default", name).ok());
}

TEST(BeastTransportCluster, StopEndsABlockedWatchAtOnce) {
  Client client = makeClient();
  WatchOptions options;
  options.label_selector = "run=" + unique("nothing-ever");  // no events: the watch blocks reading
  options.timeout = 60s;
  std::stop_source stop;
  std::atomic<bool> returned{false};
  std::chrono::steady_clock::time_point returned_at;
  util::Status status;
  std::thread watcher([&] {
    status = client.watch(
        kConfigMaps, "default", options, [](std::string_view) {}, stop.get_token());
    returned_at = std::chrono::steady_clock::now();
    returned = true;
  });
  std::this_thread::sleep_for(500ms);
  ASSERT_FALSE(returned) << status.error().describe();
  const auto stopped_at = std::chrono::steady_clock::now();
  stop.request_stop();
  watcher.join();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kCancelled) << status.error().describe();
  EXPECT_LT(returned_at - stopped_at, 10s) << "stop must not wait for the server to end the 60 s watch";
  std::cout << "watch stopped after "
            << std::chrono::duration_cast<std::chrono::microseconds>(returned_at - stopped_at).count() / 1000.0
            << " ms\n";
}

// After a restart every kept-alive connection is dead; the first request after it must not fail with "Broken pipe".
TEST(BeastTransportCluster, KeptAliveConnectionSurvivesAnApiserverRestart) {
  Client client = makeClient();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.raw("GET", "/readyz").ok());
  cluster().restartApiserver();
  auto ready = client.raw("GET", "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.error().describe();
  EXPECT_EQ(*ready, "ok");
  auto list = client.list(kConfigMaps, "default");
  ASSERT_TRUE(list.ok()) << list.error().describe();
}

}  // namespace
}  // namespace singleton::kube
