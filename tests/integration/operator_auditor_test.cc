// The LeaderAuditor itself, on a real apiserver and without the operator: pods labelled by hand, so we know it
// catches what the operator tests rely on it to catch (two leaders at once, a token that does not grow, a leader
// without a token) and stays quiet on a clean hand-over.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <string>

#include "kube/config.h"
#include "support/cluster_fixture.h"
#include "support/leader_auditor.h"
#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

class LeaderAuditorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = kube::loadKubeconfig({cluster().kubeconfigPath().string(), ""});
    ASSERT_TRUE(config.ok());
    auto transport = kube::makeTransport(*config);
    ASSERT_TRUE(transport.ok());
    transport_ = *transport;
    client_ = std::make_unique<kube::Client>(transport_);
    auto ns = client_->create(kube::kNamespaces, "", {{"metadata", {{"name", kNs}}}});
    ASSERT_TRUE(ns.ok() || ns.error().code == util::ErrorCode::kAlreadyExists);
  }
  void TearDown() override { (void)client_->remove(kube::kNamespaces, "", kNs); }

  // A pod nothing will schedule (no node matches), labelled as the operator labels its pods.
  void pod(const std::string& workload, const std::string& name) {
    Json p = {{"metadata",
               {{"name", name}, {"labels", {{"singleton.dev/workload", workload}, {"singleton.dev/role", "standby"}}}}},
              {"spec",
               {{"nodeSelector", {{"no-such-node", "x"}}},
                {"containers", Json::array({{{"name", "main"}, {"image", "busybox:1.36"}}})}}}};
    // A new namespace's default ServiceAccount appears a moment later; pods are refused until then.
    std::string error;
    ASSERT_TRUE(eventually(
        [&] {
          auto r = client_->create(kube::kPods, kNs, p);
          if (!r.ok()) error = r.error().describe();
          return r.ok();
        },
        30s, 100ms))
        << error;
  }
  void label(const std::string& name, const std::string& role, const Json& token) {
    Json patch = {
        {"metadata",
         {{"labels", {{"singleton.dev/role", role}}}, {"annotations", {{"singleton.dev/fencing-token", token}}}}}};
    ASSERT_TRUE(client_->mergePatch(kube::kPods, kNs, name, patch).ok());
  }

  // Unique per run: a namespace deleted by an earlier run may still be terminating.
  const std::string kNs = "leader-auditor-" + std::to_string(::getpid()) + "-" +
                          std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 100000);
  std::shared_ptr<kube::Transport> transport_;
  std::unique_ptr<kube::Client> client_;
};

TEST_F(LeaderAuditorTest, QuietOnACleanHandOverAndCatchesEveryViolation) {
  LeaderAuditor auditor(transport_, kNs);
  ASSERT_TRUE(auditor.start());
  pod("a", "a-0");
  pod("a", "a-1");
  pod("b", "b-0");
  pod("b", "b-1");

  // Clean: a-0 leads with 3, steps down, a-1 leads with 4.
  label("a-0", "leader", "3");
  label("a-0", "standby", nullptr);
  label("a-1", "leader", "4");
  ASSERT_TRUE(auditor.waitUntil(
      [](const LeaderAuditor::State& s) {
        auto it = s.workloads.find("a");
        return it != s.workloads.end() && it->second.leaderships.size() == 2;
      },
      10s));
  EXPECT_TRUE(auditor.violations().empty()) << auditor.describe("a");
  auto leaders = auditor.leaderships("a");
  EXPECT_EQ(leaders[0].pod, "a-0");
  EXPECT_EQ(leaders[0].token, 3);
  EXPECT_EQ(leaders[1].pod, "a-1");
  EXPECT_EQ(leaders[1].token, 4);
  EXPECT_EQ(auditor.currentLeader("a")->name, "a-1");

  // Violations in workload b: a second leader while the first still holds the label, then a reused token.
  label("b-0", "leader", "5");
  label("b-1", "leader", "5");
  auto found = [&](const std::string& text) {
    return auditor.waitUntil(
        [&](const LeaderAuditor::State& s) {
          for (const auto& v : s.violations) {
            if (v.find(text) != std::string::npos) return true;
          }
          return false;
        },
        10s);
  };
  EXPECT_TRUE(found("two pods labelled leader")) << auditor.describe("b");
  EXPECT_TRUE(found("did not increase")) << auditor.describe("b");
  // A leader without a token, and a standby with one.
  label("b-0", "standby", "6");
  label("b-1", "leader", nullptr);
  EXPECT_TRUE(found("not labelled leader carries a fencing token")) << auditor.describe("b");
  EXPECT_TRUE(found("has no fencing token")) << auditor.describe("b");
  const auto v = auditor.violations();
  // Workload a stayed clean throughout.
  for (const auto& line : v) EXPECT_EQ(line.rfind("b: ", 0), 0u) << line;
}

}  // namespace
}  // namespace singleton::testing
