// A label write whose answer is lost, on a real control plane (issue 7, scenario 3): one operator replica, talking
// to the apiserver through an ApiProxy. A workload of 3 plain pods leads steadily with P1. The proxy delays every
// byte of the operator's pod watch by kWatchDelay, and is armed to lose the answer of the next leader-label PATCH to
// a pod of the workload. The test deletes P1: the operator fails over, moves the Lease to a standby P2 and sends the
// promotion of P2; the apiserver applies it, and the proxy discards its answer and keeps the operator waiting. The
// test then asks for a switchover to the third pod P3, waits until the proxy has passed the workload's watch event
// to the operator (so the operator's next reconcile of the workload is the switchover: a failed reconcile is
// retried within milliseconds, and a retried promotion of P2 that got its answer would show the operator where P2
// stands), and lets the proxy close the operator's connection: the promotion of P2 has an unknown outcome. The
// operator's pod cache does not show P2 labelled for another ~kWatchDelay, so the switchover reconcile must not trust
// it: with the fix (Reconciler::noteUnknownOutcome marks the workload unconfirmed and podCacheCoversLabels says no
// until a read from the API confirms) it reads the pods from the API, demotes P2, then promotes P3. The LeaderAuditor
// (its own watch, not through the proxy) fails the test on two pods labelled leader at one instant or a token going
// back. SINGLETON_UNKNOWN_ROUNDS=n runs n rounds (default 3).
//
// Each round prints what happened; a round counts as reading back when the operator's log shows the switchover's
// promotion demoting P2 ("demoting P2, which still carries the leader label"), and at least one round must.
// How it fails (checked on a build with podCacheCoversLabels ignoring ctx.labels_unconfirmed, so the switchover
// promotes P3 from the pod cache): two pods labelled leader in 3 of 3 rounds in each of two runs, for 1514, 1324
// and 1356 ms, then 1027, 1462 and 839 ms (P2 keeps the label until the delayed watch shows it to the operator), and
// no round read P2 back; the auditor's violations fail the test. With the code as it is: 3 of 3 rounds read P2 back
// and demoted it before promoting P3, never two leaders; the test takes about 7 s after the cluster is up (the
// promotion of P2 lands ~1.55 s after the deletion, its answer is lost 20-300 ms later).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "support/operator_harness.h"
#include "support/test_text.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;
constexpr auto kWatchDelay = 1500ms;
const kube::Resource kWorkloadResource{"singleton.dev", "v1alpha1", "singletonworkloads", true};

int rounds() { return roundsFromEnv("SINGLETON_UNKNOWN_ROUNDS", 3); }

long long millisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// How long two or more pods were labelled leader at once, per stretch, replaying the auditor's events.
std::vector<long long> twoLeaderWindows(const std::vector<LeaderAuditor::PodEvent>& events) {
  std::vector<long long> windows;
  std::set<std::string> leaders;
  bool two = false;
  Clock::time_point since{};
  for (const auto& e : events) {
    if (e.type != "DELETED" && e.pod.leader()) {
      leaders.insert(e.pod.name);
    } else {
      leaders.erase(e.pod.name);
    }
    if (leaders.size() >= 2 && !two) since = e.at;
    if (leaders.size() < 2 && two) windows.push_back(millisBetween(since, e.at));
    two = leaders.size() >= 2;
  }
  if (two) windows.push_back(millisBetween(since, Clock::now()));
  return windows;
}

class OperatorUnknownWriteTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    OperatorHarness::Options options;
    options.operators = 1;
    options.api_proxy_operators = true;
    startHarness(std::move(options));
  }
};

TEST_F(OperatorUnknownWriteTest, APromotionWhoseAnswerWasLostIsReadBackBeforeTheNextPromotion) {
  const std::string workload = "uw";
  createWorkload(workloadObject(workload, 3));
  ApiProxy& proxy = harness().operatorApiProxy(0);
  const std::string pods_path = "/api/v1/namespaces/" + ns() + "/pods/";
  const auto pod_watch = [](const ApiProxy::Request& r) { return r.watch() && r.path.ends_with("/pods"); };
  const auto workload_watch = [](const ApiProxy::Request& r) {
    return r.watch() && r.path.ends_with("/singletonworkloads");
  };
  const auto promotion = [pods_path](const ApiProxy::Request& r) {
    return r.method == "PATCH" && r.path.starts_with(pods_path) &&
           r.body.find(R"("value":"leader")") != std::string::npos;
  };
  int two_leader_rounds = 0;
  int read_back_rounds = 0;  // the switchover's promotion read the pods from the API and demoted P2 first
  for (int round = 1; round <= rounds(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    proxy.setWatchDelay(nullptr, 0ms);
    proxy.disarmDrop();
    auto p1 = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(p1) << auditor().describe(workload);
    ASSERT_TRUE(waitForPodsReady(workload, 3, kSteady)) << auditor().describe(workload);
    const std::size_t leaderships_before = auditor().leaderships(workload).size();
    const std::size_t events_before = auditor().events(workload).size();
    const std::size_t log_before = fileText(harness().operatorLogPath(0)).size();
    const std::size_t drops_before = proxy.drops().size();
    const std::size_t violations_before = auditor().violations().size();

    // 1. The operator's pod watch runs kWatchDelay behind; the next promotion's answer will be lost, and the
    //    operator kept waiting for it.
    proxy.setWatchDelay(pod_watch, kWatchDelay);
    proxy.dropNextAnswer(promotion, /*hold=*/true);
    const auto started = Clock::now();
    kube::DeleteOptions now;
    now.grace_period_seconds = 0;
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), p1->name, now).ok());
    ASSERT_TRUE(eventually([&] { return proxy.drops().size() > drops_before; }, 30s))
        << "no promotion reached the proxy\n"
        << auditor().describe(workload);
    const ApiProxy::Drop drop = proxy.drops().back();
    const std::string p2 = drop.path.substr(pods_path.size());
    std::string p3;
    for (int i = 0; i < 3; ++i) {
      const std::string name = workload + "-" + std::to_string(i);
      if (name != p1->name && name != p2) p3 = name;
    }
    ASSERT_FALSE(p3.empty()) << p1->name << " " << p2;
    const auto p3_view = auditor().pod(workload, p3);
    ASSERT_TRUE(p3_view && p3_view->ready && !p3_view->terminating) << auditor().describe(workload);

    // 2. A switchover to P3, seen by the operator while it still waits for the promotion's answer: its next
    //    reconcile of the workload is the switchover. Then the answer is lost (the connection closes).
    // The operator's watch may show the change before the patch's answer reaches us: the clock starts first.
    const auto annotated = Clock::now();
    ASSERT_TRUE(harness()
                    .client()
                    .mergePatch(kWorkloadResource, ns(), workload,
                                {{"metadata", {{"annotations", {{"singleton.dev/switchover-to", p3}}}}}})
                    .ok());
    // Within the operator's request timeout (10 s), or the promotion times out by itself.
    const bool delivered = eventually(
        [&] {
          const auto at = proxy.lastWatchDelivery(workload_watch);
          return at && *at > annotated;
        },
        5s);
    proxy.releaseHeld();
    ASSERT_TRUE(delivered) << "the switchover never reached the operator's workload watch";
    const auto released = Clock::now();

    // 3. P3 leads, above P2's token, and P2 lost the label; the operator knew the outcome was unknown.
    ASSERT_TRUE(auditor().waitUntil(
        [&](const LeaderAuditor::State& s) {
          const auto& w = s.workloads.at(workload);
          return w.leaders == std::set<std::string>{p3} && w.leaderships.size() > leaderships_before &&
                 w.leaderships.back().pod == p3;
        },
        kSteady))
        << auditor().describe(workload);
    proxy.setWatchDelay(nullptr, 0ms);
    auto steady = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(steady) << auditor().describe(workload);
    EXPECT_EQ(steady->name, p3);
    std::int64_t p2_token = -1;
    std::int64_t p3_token = -1;
    const auto leaderships = auditor().leaderships(workload);
    for (std::size_t i = leaderships_before; i < leaderships.size(); ++i) {
      if (leaderships[i].pod == p2) p2_token = leaderships[i].token;
      if (leaderships[i].pod == p3) p3_token = leaderships[i].token;
    }
    EXPECT_GT(p2_token, 0) << "the auditor never saw the lost promotion of " << p2 << " applied\n"
                           << auditor().describe(workload);
    EXPECT_GT(p3_token, p2_token) << auditor().describe(workload);
    const std::string log = fileText(harness().operatorLogPath(0)).substr(log_before);
    EXPECT_NE(log.find("a label write to pod " + p2 + " has an unknown outcome"), std::string::npos)
        << "the operator did not see the lost answer as an unknown outcome";
    const bool read_back = log.find("demoting " + p2 + ", which still carries the leader label") != std::string::npos;
    if (read_back) ++read_back_rounds;

    auto events = auditor().events(workload);
    events.erase(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(events_before));
    const auto windows = twoLeaderWindows(events);
    if (!windows.empty()) ++two_leader_rounds;
    std::cout << "round " << round << ": " << p1->name << " deleted; promotion of " << p2 << " applied after "
              << millisBetween(started, drop.at) << " ms, its answer lost " << millisBetween(drop.at, released)
              << " ms later (the switchover to " << p3 << " delivered first); " << p3 << " leads with token "
              << p3_token << " (" << p2 << ": " << p2_token << "); "
              << (read_back ? "its promotion demoted " + p2 + " first" : p2 + " demoted only later")
              << "; two leaders: ";
    if (windows.empty()) std::cout << "never";
    for (long long ms : windows) std::cout << ms << " ms ";
    std::cout << "\n";
    // Every round runs, so a failing build shows how often (TearDown fails the test on any violation too).
    EXPECT_EQ(auditor().violations().size(), violations_before) << auditor().describe(workload);
  }
  std::cout << "two leaders in " << two_leader_rounds << " of " << rounds() << " rounds; " << read_back_rounds
            << " rounds read the lost promotion back from the API before promoting\n";
  EXPECT_GE(read_back_rounds, 1)
      << "no round's switchover read the lost promotion back from the API before promoting (it trusted the pod "
         "cache, or the scenario missed the window)";
}

}  // namespace
}  // namespace singleton::testing
