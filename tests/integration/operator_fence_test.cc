// The label fence on a real control plane (issue 7, case 1): 3 operator replicas, each behind its own TcpProxy. The
// operator leader L fails a workload over; its promotion PATCH is held on the wire (the proxy holds L's answers from
// the moment the leader pod goes, so the Lease write's answer waits, then holds L's requests and lets the answer
// through: the promotion L sends next stays in the proxy). L loses its own Lease, a new operator leader takes over,
// promotes the same successor and then switches the workload over to a third pod. Then the proxy heals and L's
// promotion reaches the apiserver. Without the fence it lands: two pods labelled leader, and the token on the pods
// goes back. The LeaderAuditor (its own watch, not through any proxy) fails the test on either.
// L cancels its outstanding requests when its term ends (it closes their connections), so the proxy does not pass
// L's closes on: a request already on the wire still reaches the apiserver, as when the FIN is lost or delayed. An
// attempt counts when L's log shows a label write (the promotion, or the stamp that precedes a term's first label
// change) sent and then refused (it still waited) or abandoned with an unknown outcome (cancelled while held).
// SINGLETON_FENCE_ROUNDS=n runs n rounds that held a promotion (default 2).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "support/operator_harness.h"
#include "support/test_text.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;

int rounds() { return roundsFromEnv("SINGLETON_FENCE_ROUNDS", 2); }

class OperatorFenceTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    OperatorHarness::Options options;
    options.proxy_operators = true;
    startHarness(std::move(options));
  }

  long long leaseTransitions(const std::string& lease) {
    auto l = getLease(lease);
    return l ? (*l)["spec"].value("leaseTransitions", -1LL) : -1;
  }
};

TEST_F(OperatorFenceTest, APromotionHeldOnTheWireIsRefusedAfterANewOperatorLeaderActed) {
  createWorkload(workloadObject("fw", 3));
  int caught = 0;
  int attempts = 0;
  while (caught < rounds() && attempts < 3 * rounds()) {
    ++attempts;
    SCOPED_TRACE("attempt " + std::to_string(attempts));
    for (int i = 0; i < harness().operatorCount(); ++i) harness().operatorProxy(i).heal();
    harness().ensureOperatorsRunning();
    auto leader_pod = waitForSteadyLeader("fw", kSteady);
    ASSERT_TRUE(leader_pod) << auditor().describe("fw");
    ASSERT_TRUE(waitForPodsReady("fw", 3, kSteady)) << auditor().describe("fw");
    const auto op = harness().waitForOperatorLeader(kSteady);
    ASSERT_TRUE(op);
    TcpProxy& proxy = harness().operatorProxy(*op);
    proxy.setPassClose(false);
    const long long token = leaseTransitions("fw-leader");
    const std::string log_before = fileText(harness().operatorLogPath(*op));
    const auto leaderships_before = auditor().leaderships("fw").size();

    // 1. The leader pod goes at once (no grace period: no demotion comes between the Lease write and the
    //    promotion); L's answers wait from the moment the deletion is visible.
    kube::DeleteOptions now;
    now.grace_period_seconds = 0;
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader_pod->name, now).ok());
    ASSERT_TRUE(auditor().waitUntil(
        [&](const LeaderAuditor::State& s) {
          const auto& pods = s.workloads.at("fw").pods;
          const auto it = pods.find(leader_pod->name);
          return it == pods.end() || it->second.terminating || it->second.uid != leader_pod->uid;
        },
        10s));
    proxy.setPolicy({TcpProxy::Flow::kForward, TcpProxy::Flow::kHold});
    // 2. L's Lease write is applied; its answer waits. Then L's requests wait and the answer goes through: the
    //    promotion L sends next stays in the proxy.
    if (!eventually([&] { return leaseTransitions("fw-leader") > token; }, 2s, 1ms)) {
      std::cout << "attempt " << attempts << ": the operator leader had not seen the deletion; again\n";
      proxy.heal();
      continue;
    }
    proxy.setPolicy({TcpProxy::Flow::kHold, TcpProxy::Flow::kForward});
    auto lease = getLease("fw-leader");
    ASSERT_TRUE(lease);
    const std::string successor = (*lease)["spec"].value("holderIdentity", "");

    // 3. L cannot renew its own Lease; another replica takes over and labels the successor itself.
    const auto next_op = harness().waitForOperatorLeader(30s, OperatorHarness::identity(*op));
    ASSERT_TRUE(next_op) << harness().diagnostics();
    auto first = auditor().waitForLeadership("fw", leaderships_before, 30s);
    ASSERT_TRUE(first) << auditor().describe("fw");
    ASSERT_EQ(first->pod, successor);
    // 4. ... then switches over to a third pod.
    std::string third;
    ASSERT_TRUE(eventually(
        [&] {
          for (const Json& p : listPods("fw")) {
            const auto v = podView(p);
            if (v.name != successor && v.ready && !v.terminating) third = v.name;
          }
          return !third.empty();
        },
        kSteady));
    const auto r = kubectl({"annotate", "--overwrite", "sw", "fw", "singleton.dev/switchover-to=" + third});
    ASSERT_TRUE(r.ok()) << r.err;
    auto second = auditor().waitForLeadership("fw", leaderships_before + 1, 30s);
    ASSERT_TRUE(second) << auditor().describe("fw");
    ASSERT_EQ(second->pod, third);

    // 5. The partition heals: L's held promotion of the successor reaches the apiserver.
    proxy.heal();
    std::this_thread::sleep_for(3s);
    const std::string log = fileText(harness().operatorLogPath(*op)).substr(log_before.size());
    const bool refused = countOf(log, "a fenced write to pod " + successor + " was refused") > 0;
    // The term's first label change in the workload stamps its pods first: the write held may be a stamp (a
    // compare-and-swap on the stamp) rather than the promotion; a stale one landing late is refused the same way.
    const bool abandoned = countOf(log, "a label write to pod fw-") > 0;
    if (!refused && countOf(log, "a fenced write to pod") > 0) std::cout << "(another fenced write was refused)\n";
    std::cout << "attempt " << attempts << ": held promotion of " << successor << " (token " << token + 1
              << ") released after " << third << " led with token " << second->token << ": "
              << (refused     ? "refused by the fence"
                  : abandoned ? "a label write sent, held, abandoned by its sender, then delivered"
                              : "no promotion on the wire (not held, or never sent)")
              << "\n";
    if (refused || abandoned) ++caught;
    EXPECT_TRUE(auditor().violations().empty()) << auditor().describe("fw");
    const auto now_leading = auditor().currentLeaders("fw");
    EXPECT_LE(now_leading.size(), 1u) << auditor().describe("fw");
    ASSERT_TRUE(auditor().violations().empty());
  }
  std::cout << caught << " of " << attempts << " attempts held a promotion until a newer operator leader acted\n";
  EXPECT_GE(caught, 1) << "no attempt held a promotion on the wire: the test did not test the fence";
}

}  // namespace
}  // namespace singleton::testing
