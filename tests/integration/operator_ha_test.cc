// The operator's own high availability on a real control plane: three singleton-operator replicas elect a leader
// through the Lease singleton-system/singleton-operator; after a SIGKILL another replica takes over within the lease
// duration, after a SIGTERM at once, and reconciling goes on (a failover after the takeover works). Probes and
// metrics of every replica.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;
constexpr auto kFailover = 30s;

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }
long long tokenOf(const LeaderAuditor::PodView& pod) { return std::stoll(pod.token.value_or("-1")); }

class OperatorHaTest : public OperatorTest {
 protected:
  // Deletes the workload's leader pod and waits for the next leadership; checks the token and that the workload
  // Lease was written under the operator's current term.
  void failoverWorks(const std::string& workload) {
    auto leader = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(leader) << auditor().describe(workload);
    const auto before = auditor().leaderships(workload).size();
    const auto deleted_at = Clock::now();
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
    auto next = auditor().waitForLeadership(workload, before, kFailover);
    ASSERT_TRUE(next) << auditor().describe(workload) << harness().diagnostics();
    std::cout << "failover " << leader->name << " -> " << next->pod << " (token " << next->token << ") in "
              << ms(next->at - deleted_at) << " ms\n";
    EXPECT_NE(next->pod, leader->name);
    EXPECT_EQ(next->token, tokenOf(*leader) + 1);
    auto op_lease = harness().operatorLease();
    ASSERT_TRUE(op_lease);
    const std::string term = std::to_string(op_lease->spec.lease_transitions.value_or(-1));
    auto lease = getLease(workload + "-leader");
    ASSERT_TRUE(lease);
    EXPECT_EQ((*lease)["metadata"]["annotations"].value("singleton.dev/operator-term", ""), term)
        << "the workload Lease carries the current operator leader's term";
    ASSERT_TRUE(waitForSteadyLeader(workload, kSteady)) << auditor().describe(workload);
    // And the deleted pod is back and Ready: nothing left in flight.
    ASSERT_TRUE(waitForPodsReady(workload, 3, kSteady)) << auditor().describe(workload);
  }
};

TEST_F(OperatorHaTest, ExactlyOneOperatorLeadsAndEveryReplicaServesProbesAndMetrics) {
  auto leader = harness().waitForOperatorLeader(30s);
  ASSERT_TRUE(leader);
  auto lease = harness().operatorLease();
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->spec.lease_duration_seconds, 4);
  for (int i = 0; i < harness().operatorCount(); ++i) {
    ASSERT_TRUE(eventually([&] { return harness().healthPort(i) != 0 && harness().metricsPort(i) != 0; }, 20s))
        << harness().operatorLogTail(i);
    EXPECT_TRUE(eventually([&] { return harness().httpGet(harness().healthPort(i), "/readyz").first == 200; }, 30s))
        << "replica " << i << " /readyz";
    EXPECT_EQ(harness().httpGet(harness().healthPort(i), "/healthz").first, 200) << "replica " << i;
    // client-go's leader-election gauge: 1 on the leader only. A replica sets it once its Lease write has been
    // answered, moments after the Lease shows it; on a loaded machine the Lease may also move meanwhile, so the
    // leader is read again with each look.
    bool leads = false;
    std::pair<int, std::string> metrics;
    EXPECT_TRUE(eventually(
        [&] {
          const auto now_leader = harness().operatorLeader();
          leads = now_leader && *now_leader == i;
          metrics = harness().httpGet(harness().metricsPort(i), "/metrics");
          const std::string wanted =
              std::string("leader_election_master_status{name=\"singleton-operator\"} ") + (leads ? "1" : "0");
          return metrics.first == 200 && metrics.second.find(wanted) != std::string::npos;
        },
        10s))
        << "replica " << i << (leads ? " (leader)" : "") << ": HTTP " << metrics.first << "\n"
        << metrics.second.substr(0, 3000);
  }
}

TEST_F(OperatorHaTest, SigkillOfTheOperatorLeaderAnotherTakesOverWithinTheLeaseAndReconciles) {
  createWorkload(workloadObject("ha-kill", 3));
  ASSERT_TRUE(waitForSteadyLeader("ha-kill", kSteady)) << auditor().describe("ha-kill");
  auto leader = harness().waitForOperatorLeader(30s);
  ASSERT_TRUE(leader);
  const long long term = harness().operatorLease()->spec.lease_transitions.value_or(-1);
  std::this_thread::sleep_for(2 * harness().retryPeriod());  // the followers have seen a renewal

  const auto killed_at = Clock::now();
  harness().signalOperator(*leader, SIGKILL);
  auto next = harness().waitForOperatorLeader(harness().leaseDuration() + 30s, OperatorHarness::identity(*leader));
  ASSERT_TRUE(next) << harness().diagnostics();
  const auto takeover = Clock::now() - killed_at;
  std::cout << "operator SIGKILL takeover: " << OperatorHarness::identity(*next) << " after " << ms(takeover)
            << " ms (lease " << ms(harness().leaseDuration()) << " ms)\n";
  EXPECT_LE(takeover, harness().leaseDuration() + harness().retryPeriod() + 3s);
  EXPECT_EQ(harness().operatorLease()->spec.lease_transitions.value_or(-1), term + 1);

  // The new operator leader reconciles: a failover works, and the old one's workload stays steady meanwhile.
  failoverWorks("ha-kill");
  // A workload created after the takeover is handled too.
  createWorkload(workloadObject("ha-kill-new", 2));
  EXPECT_TRUE(waitForSteadyLeader("ha-kill-new", kSteady)) << auditor().describe("ha-kill-new");

  harness().startOperator(*leader);  // back to three replicas
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(harness().operatorLeader(), next) << "a restarted replica does not take leadership back";
}

TEST_F(OperatorHaTest, SigtermOfTheOperatorLeaderReleasesAndAnotherTakesOverAtOnce) {
  createWorkload(workloadObject("ha-term", 3));
  ASSERT_TRUE(waitForSteadyLeader("ha-term", kSteady)) << auditor().describe("ha-term");
  auto leader = harness().waitForOperatorLeader(30s);
  ASSERT_TRUE(leader);
  std::this_thread::sleep_for(2 * harness().retryPeriod());

  const auto terminated_at = Clock::now();
  harness().signalOperator(*leader, SIGTERM);
  auto next = harness().waitForOperatorLeader(harness().leaseDuration() + 30s, OperatorHarness::identity(*leader));
  ASSERT_TRUE(next) << harness().diagnostics();
  const auto takeover = Clock::now() - terminated_at;
  std::cout << "operator SIGTERM takeover: " << OperatorHarness::identity(*next) << " after " << ms(takeover)
            << " ms\n";
  EXPECT_LE(takeover, 1500ms) << "a released Lease is taken at once";
  EXPECT_EQ(harness().waitOperatorExit(*leader, 15s), 0) << harness().operatorLogTail(*leader);

  failoverWorks("ha-term");
  harness().startOperator(*leader);
}

TEST_F(OperatorHaTest, PausedOperatorLeaderResumesAfterATakeoverAndWritesNothing) {
  // SIGSTOP freezes the leader mid-term (a long GC pause, a frozen VM). Another replica takes over after the lease
  // and fails a workload over; when the old one wakes up it must not write with its stale term.
  createWorkload(workloadObject("ha-stop", 3));
  ASSERT_TRUE(waitForSteadyLeader("ha-stop", kSteady)) << auditor().describe("ha-stop");
  auto leader = harness().waitForOperatorLeader(30s);
  ASSERT_TRUE(leader);
  std::this_thread::sleep_for(2 * harness().retryPeriod());
  harness().signalOperator(*leader, SIGSTOP);
  struct Resume {
    OperatorHarness& h;
    int index;
    ~Resume() { h.signalOperator(index, SIGCONT); }
  } resume{harness(), *leader};
  auto next = harness().waitForOperatorLeader(harness().leaseDuration() + 30s, OperatorHarness::identity(*leader));
  ASSERT_TRUE(next) << harness().diagnostics();
  failoverWorks("ha-stop");
  ASSERT_FALSE(HasFatalFailure());

  auto lease_before = getLease("ha-stop-leader");
  ASSERT_TRUE(lease_before);
  const auto leaderships_before = auditor().leaderships("ha-stop").size();
  const auto events_before = auditor().eventCount();
  harness().signalOperator(*leader, SIGCONT);
  // It finds its Lease taken and stops leading (exit 1, for a supervisor to restart it) or carries on as follower.
  const auto exited = harness().waitOperatorExit(*leader, 3 * harness().leaseDuration());
  if (exited) {
    EXPECT_EQ(*exited, 1) << harness().operatorLogTail(*leader);
  } else {
    EXPECT_NE(harness().operatorLeader(), leader);
  }
  std::this_thread::sleep_for(2s);
  auto lease_after = getLease("ha-stop-leader");
  ASSERT_TRUE(lease_after);
  EXPECT_EQ((*lease_after)["metadata"].value("resourceVersion", ""),
            (*lease_before)["metadata"].value("resourceVersion", ""))
      << "the workload Lease was written after the stale operator resumed:\n"
      << lease_after->dump(2);
  EXPECT_EQ(auditor().leaderships("ha-stop").size(), leaderships_before) << auditor().describe("ha-stop");
  EXPECT_EQ(auditor().eventCount(), events_before)
      << "pods were written after the stale operator resumed:\n"
      << [&] {
           std::string what;
           const auto events = auditor().events("ha-stop");
           for (std::size_t i = events_before; i < events.size(); ++i) {
             what += "  " + events[i].type + " " + events[i].pod.name + " rv " + events[i].pod.resource_version +
                     " role " + events[i].pod.role + (events[i].pod.ready ? " ready" : " not ready") + "\n";
           }
           return what;
         }();
  harness().ensureOperatorsRunning();
}

TEST_F(OperatorHaTest, WorkloadsStaySteadyAcrossOperatorTakeovers) {
  // Two takeovers in a row must not move any workload's leadership: the new operator leader finds every workload
  // healthy and writes nothing.
  createWorkload(workloadObject("ha-calm-a", 3));
  createWorkload(workloadObject("ha-calm-b", 2));
  auto a = waitForSteadyLeader("ha-calm-a", kSteady);
  auto b = waitForSteadyLeader("ha-calm-b", kSteady);
  ASSERT_TRUE(a && b) << auditor().describe("ha-calm-a") << auditor().describe("ha-calm-b");
  ASSERT_TRUE(waitForPodsReady("ha-calm-a", 3, kSteady) && waitForPodsReady("ha-calm-b", 2, kSteady));
  std::this_thread::sleep_for(1s);  // the operator's status writes after the election have landed
  const auto events_before = auditor().eventCount();
  for (int round = 0; round < 2; ++round) {
    auto leader = harness().waitForOperatorLeader(30s);
    ASSERT_TRUE(leader);
    std::this_thread::sleep_for(2 * harness().retryPeriod());
    harness().signalOperator(*leader, SIGTERM);
    ASSERT_TRUE(harness().waitForOperatorLeader(harness().leaseDuration() + 30s, OperatorHarness::identity(*leader)));
    harness().waitOperatorExit(*leader, 15s);
    harness().startOperator(*leader);
  }
  std::this_thread::sleep_for(3s);  // the last leader has resynced and reconciled everything
  EXPECT_EQ(auditor().leaderships("ha-calm-a").size(), 1u) << auditor().describe("ha-calm-a");
  EXPECT_EQ(auditor().leaderships("ha-calm-b").size(), 1u) << auditor().describe("ha-calm-b");
  EXPECT_EQ(auditor().eventCount(), events_before) << "pods were written although nothing changed";
}

}  // namespace
}  // namespace singleton::testing
