// The fault-injection proxy against the real kube-apiserver: what each policy does to a client's requests, so that
// the tests built on it (partitions, requests held on the wire, lost answers) inject the fault they claim to.
#include "support/tcp_proxy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <random>
#include <thread>

#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "support/cluster_fixture.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;

const kube::Resource kConfigMaps{"", "v1", "configmaps", true};

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

class TcpProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    proxy_ = std::make_unique<TcpProxy>(cluster().apiserverPort());
    kubeconfig_ = cluster().dir() / ("kubeconfig-proxy-" + std::to_string(proxy_->port()));
    proxy_->writeKubeconfig(cluster().kubeconfigPath(), kubeconfig_);
    client_ = makeClient(kubeconfig_, 2s);
    direct_ = makeClient(cluster().kubeconfigPath(), 10s);
    static std::mt19937_64 rng{std::random_device{}()};
    name_ = "proxy-" + std::to_string(rng() % 1'000'000'000);
  }

  static std::unique_ptr<kube::Client> makeClient(const std::filesystem::path& kubeconfig,
                                                  std::chrono::milliseconds timeout) {
    auto config = kube::loadKubeconfig({kubeconfig.string(), ""});
    if (!config.ok()) throw std::runtime_error(config.error().describe());
    auto transport = kube::makeBeastTransport(*config, {});
    if (!transport.ok()) throw std::runtime_error(transport.error().describe());
    return std::make_unique<kube::Client>(*transport, kube::ClientOptions{timeout, "tcp-proxy-test"});
  }

  nlohmann::json configMap(const std::string& value) const {
    return {{"apiVersion", "v1"},
            {"kind", "ConfigMap"},
            {"metadata", {{"name", name_}, {"namespace", "default"}}},
            {"data", {{"value", value}}}};
  }

  std::unique_ptr<TcpProxy> proxy_;
  std::filesystem::path kubeconfig_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<kube::Client> direct_;
  std::string name_;
};

TEST_F(TcpProxyTest, ForwardsRequestsAndLogsTheirBytes) {
  auto ready = client_->raw("GET", "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.error().describe();
  EXPECT_EQ(*ready, "ok");
  ASSERT_FALSE(proxy_->connections().empty());
  EXPECT_GT(proxy_->connections().front().bytes_up, 0u);
  EXPECT_GT(proxy_->connections().front().bytes_down, 0u);
}

TEST_F(TcpProxyTest, BlackholeTimesOutWithoutReachingTheServerAndHealDeliversTheHeldRequest) {
  ASSERT_TRUE(client_->raw("GET", "/readyz").ok());  // a kept-alive connection exists before the partition
  proxy_->blackhole();
  const auto cut = std::chrono::steady_clock::now();
  auto created = client_->create(kConfigMaps, "default", configMap("held"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code, util::ErrorCode::kTimeout) << created.error().describe();
  EXPECT_EQ(proxy_->bytesUpstreamAfter(cut), 0u);
  EXPECT_EQ(direct_->get(kConfigMaps, "default", name_).error().code, util::ErrorCode::kNotFound);

  // The held request lands after the heal, long after its sender gave up: a request "on the wire".
  proxy_->heal();
  bool landed = false;
  for (int i = 0; i < 100 && !landed; ++i) {
    landed = direct_->get(kConfigMaps, "default", name_).ok();
    if (!landed) std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(proxy_->bytesUpstreamAfter(cut), 0u);
  // Whether the held bytes still make a request depends on the client having closed its socket first; either way
  // the proxy forwards again.
  auto ready = client_->raw("GET", "/readyz");
  EXPECT_TRUE(ready.ok()) << ready.error().describe();
  (void)direct_->remove(kConfigMaps, "default", name_);
}

TEST_F(TcpProxyTest, DroppedAnswerLeavesTheRequestApplied) {
  proxy_->setPolicy({TcpProxy::Flow::kForward, TcpProxy::Flow::kDrop});
  auto created = client_->create(kConfigMaps, "default", configMap("applied"));
  EXPECT_FALSE(created.ok()) << "the answer should have been lost";
  proxy_->heal();
  auto stored = direct_->get(kConfigMaps, "default", name_);
  ASSERT_TRUE(stored.ok()) << stored.error().describe();
  EXPECT_EQ((*stored)["data"]["value"], "applied");
  (void)direct_->remove(kConfigMaps, "default", name_);
}

TEST_F(TcpProxyTest, ResetEndsConnectionsAndRefusedOnesFailFast) {
  ASSERT_TRUE(client_->raw("GET", "/readyz").ok());
  proxy_->setRefuseNew(true);
  proxy_->resetAll();
  for (const auto& c : proxy_->connections()) EXPECT_FALSE(c.open);
  auto ready = client_->raw("GET", "/readyz");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().code, util::ErrorCode::kNetwork) << "a reset is not a timeout: " << ready.error().describe();
  proxy_->setRefuseNew(false);
  EXPECT_TRUE(client_->raw("GET", "/readyz").ok());
}

}  // namespace
}  // namespace singleton::testing
