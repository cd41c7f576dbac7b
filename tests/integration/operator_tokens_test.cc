// Fencing tokens never go backwards (issue 10), on a real control plane with 3 operator replicas: the Lease of a led
// workload is deleted (with the operator running; with a failover right behind it; while no operator runs, with a
// failover before one comes back), and the next leader's token is above every earlier one, with a Warning event
// LeaseRecreated. The LeaderAuditor (its own pod watch) fails the test on two leaders at once or a token that does
// not grow. SINGLETON_TOKEN_ROUNDS=n repeats each scenario n times (default 1).
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;
constexpr auto kFailover = 30s;

int rounds() {
  const char* text = std::getenv("SINGLETON_TOKEN_ROUNDS");
  const int n = text ? std::atoi(text) : 1;
  return n > 0 ? n : 1;
}

class OperatorTokensTest : public OperatorTest {
 protected:
  std::int64_t maxToken(const std::string& workload) {
    std::int64_t highest = -1;
    for (const auto& l : auditor().leaderships(workload)) highest = std::max(highest, l.token);
    return highest;
  }

  // Fails the current leader over by deleting its pod; returns once the next one leads.
  void failOver(const std::string& workload) {
    auto leader = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(leader) << auditor().describe(workload);
    const auto before = auditor().leaderships(workload).size();
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
    ASSERT_TRUE(auditor().waitForLeadership(workload, before, kFailover)) << auditor().describe(workload);
  }

  std::vector<Json> leaseRecreatedEvents(const std::string& workload) {
    std::vector<Json> out;
    for (const Json& e : harness().events(ns(), workload, "SingletonWorkload")) {
      if (e.value("reason", "") == "LeaseRecreated") out.push_back(e);
    }
    return out;
  }

  // After the Lease was deleted (and whatever else): a new leader above `highest`, the Lease agreeing, the event.
  void expectTokenAbove(const std::string& workload, std::size_t leaderships_before, std::int64_t highest,
                        std::size_t events_before) {
    auto next = auditor().waitForLeadership(workload, leaderships_before, kFailover);
    ASSERT_TRUE(next) << auditor().describe(workload);
    EXPECT_GT(next->token, highest) << auditor().describe(workload);
    auto steady = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(steady) << auditor().describe(workload);
    EXPECT_GT(std::stoll(steady->token.value_or("-1")), highest);
    std::cout << workload << ": after the Lease was deleted " << steady->name << " leads with token " << *steady->token
              << " (highest before: " << highest << ")\n";
    std::vector<Json> events;
    ASSERT_TRUE(eventually(
        [&] {
          events = leaseRecreatedEvents(workload);
          return events.size() > events_before;
        },
        20s))
        << "no LeaseRecreated event";
    EXPECT_EQ(events.back().value("type", ""), "Warning");
    EXPECT_NE(events.back().value("message", "").find("fencing token"), std::string::npos) << events.back();
  }
};

TEST_F(OperatorTokensTest, DeletedLeaseWhileTheOperatorRunsContinuesAboveEveryToken) {
  createWorkload(workloadObject("tok", 3));
  ASSERT_TRUE(waitForSteadyLeader("tok", kSteady)) << auditor().describe("tok");
  failOver("tok");
  for (int round = 0; round < rounds(); ++round) {
    SCOPED_TRACE(round);
    ASSERT_TRUE(waitForSteadyLeader("tok", kSteady)) << auditor().describe("tok");
    const auto highest = maxToken("tok");
    const auto before = auditor().leaderships("tok").size();
    const auto events_before = leaseRecreatedEvents("tok").size();
    ASSERT_TRUE(harness().client().remove(kube::kLeases, ns(), "tok-leader").ok());
    expectTokenAbove("tok", before, highest, events_before);
    auto lease = getLease("tok-leader");
    ASSERT_TRUE(lease);
    EXPECT_EQ((*lease)["spec"].value("leaseTransitions", -1), maxToken("tok"));
  }
}

TEST_F(OperatorTokensTest, DeletedLeaseAndLeaderTogetherContinueAboveEveryToken) {
  createWorkload(workloadObject("both", 3));
  ASSERT_TRUE(waitForSteadyLeader("both", kSteady)) << auditor().describe("both");
  failOver("both");
  for (int round = 0; round < rounds(); ++round) {
    SCOPED_TRACE(round);
    auto leader = waitForSteadyLeader("both", kSteady);
    ASSERT_TRUE(leader) << auditor().describe("both");
    ASSERT_TRUE(waitForPodsReady("both", 3, kSteady));
    const auto highest = maxToken("both");
    const auto before = auditor().leaderships("both").size();
    const auto events_before = leaseRecreatedEvents("both").size();
    // The Lease, then at once the leader: the operator sees the failover before (or with) the missing Lease.
    ASSERT_TRUE(harness().client().remove(kube::kLeases, ns(), "both-leader").ok());
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
    expectTokenAbove("both", before, highest, events_before);
  }
}

TEST_F(OperatorTokensTest, DeletedLeaseAndLeaderWhileNoOperatorRunsContinueAboveEveryToken) {
  createWorkload(workloadObject("off", 3));
  ASSERT_TRUE(waitForSteadyLeader("off", kSteady)) << auditor().describe("off");
  failOver("off");
  for (int round = 0; round < rounds(); ++round) {
    SCOPED_TRACE(round);
    auto leader = waitForSteadyLeader("off", kSteady);
    ASSERT_TRUE(leader) << auditor().describe("off");
    ASSERT_TRUE(waitForPodsReady("off", 3, kSteady));
    const auto highest = maxToken("off");
    const auto before = auditor().leaderships("off").size();
    const auto events_before = leaseRecreatedEvents("off").size();
    // Every operator stops (an upgrade, an outage): the restarted ones remember nothing but what the API shows.
    for (int i = 0; i < harness().operatorCount(); ++i) harness().signalOperator(i, SIGTERM);
    for (int i = 0; i < harness().operatorCount(); ++i) {
      EXPECT_TRUE(harness().waitOperatorExit(i, 20s)) << harness().operatorLogTail(i);
    }
    ASSERT_TRUE(harness().client().remove(kube::kLeases, ns(), "off-leader").ok());
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
    ASSERT_TRUE(auditor().waitUntil(
        [&](const LeaderAuditor::State& s) {
          const auto w = s.workloads.find("off");
          return w == s.workloads.end() || !w->second.pods.contains(leader->name) ||
                 w->second.pods.at(leader->name).uid != leader->uid;
        },
        kSteady))
        << "the deleted leader pod did not go";
    harness().ensureOperatorsRunning();
    expectTokenAbove("off", before, highest, events_before);
  }
}

}  // namespace
}  // namespace singleton::testing
