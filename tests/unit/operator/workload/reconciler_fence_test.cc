// The label fence and the tokens' floor (docs/design.md, "Operator self-fencing"; docs/api.md, "Fencing tokens"):
// a label write of an earlier operator term that arrives after a newer term acted is refused by the apiserver; a
// label write whose answer was lost sends the next promotion to the API; a deleted or regressed Lease is written
// again above every token seen, with a Warning event.
#include <gtest/gtest.h>

#include "operator/workload/workload_metrics.h"
#include "reconciler_harness.h"

namespace singleton::op {
namespace {

using testing::FakeCluster;
using testing::FakeGate;
using testing::Harness;
using testing::kNs;
using Action = controller::ReconcileResult::Action;

// A second operator replica on the same cluster and caches: its own reconciler (its own memory) and gate.
struct OtherReplica {
  explicit OtherReplica(Harness& h, long long term) : reconciler(h.client, h.informers, h.recorder, metrics, h.clock) {
    gate.term_value = term;
  }
  controller::ReconcileResult reconcile(Harness& h, const std::string& name) {
    h.sync();
    return reconciler.reconcile(std::string(kNs) + "/" + name, gate);
  }
  controller::Registry metrics;
  Reconciler reconciler;
  FakeGate gate;
};

Json podsPatchBody(const FakeCluster& cluster, const std::string& pod) {
  for (const auto& write : cluster.writes()) {
    if (write.method == "PATCH" && write.path.ends_with("/pods/" + pod)) return Json::parse(write.body);
  }
  return Json();
}

int podPatches(const Harness& h) {
  int count = 0;
  for (const auto& write : h.cluster->writes()) {
    if (write.method == "PATCH" && write.path.find("/pods/") != std::string::npos) ++count;
  }
  return count;
}

// Issue 7, case 1: a promotion of term 1 held on the wire while term 2 fails the workload over again, then
// delivered. Without the fence it lands: two pods labelled leader, and the token on the pods goes from 2 back to 1.
TEST(ReconcilerFenceTest, AnEarlierTermsPromotionArrivingLateIsRefused) {
  Harness h;
  h.steadyWorkload("w", 3);
  ASSERT_EQ(annotationOf(*h.pod("w-2"), kAnnotationOperatorTerm), "1");  // born with its creator's stamp
  h.setReady("w-0", false);
  // Term 1's failover: Lease, demote w-0, then the promotion of w-1 never reaches the apiserver (yet).
  h.cluster->failWrite(3, 504);
  EXPECT_EQ(h.reconcile("w").action, Action::kRetry);
  const Json held = podsPatchBody(*h.cluster, "w-1");
  ASSERT_TRUE(held.is_array()) << "term 1 sent no promotion of w-1";
  ASSERT_EQ(h.leaders(), std::vector<std::string>{});

  // Term 2 takes over; w-1 fails too, so it hands over to w-2.
  OtherReplica newer(h, 2);
  h.setReady("w-1", false);
  EXPECT_EQ(newer.reconcile(h, "w").action, Action::kForget);
  ASSERT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_EQ(h.token("w-2"), "2");

  // The held promotion arrives.
  auto late = h.client.jsonPatch(kube::kPods, kNs, "w-1", held);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, util::ErrorCode::kInvalid);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// Term 2's first label change in a workload stamps each pod first (once per term); steady state and the takeover
// itself write nothing.
TEST(ReconcilerFenceTest, ANewTermStampsAWorkloadsPodsOnceBeforeItsFirstLabelChange) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.gate.term_value = 2;
  const int before = h.stateWrites();
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.stateWrites(), before) << "a takeover with nothing to change writes nothing";

  h.setReady("w-0", false);
  const int pod_patches = podPatches(h);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(podPatches(h) - pod_patches, 3 + 2);  // three stamps, then demote and promote
  for (const std::string pod : {"w-0", "w-1", "w-2"})
    EXPECT_EQ(annotationOf(*h.pod(pod), kAnnotationOperatorTerm), "2");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});

  // The next failover of the same term: no stamps.
  h.setReady("w-0", true);
  h.setReady("w-1", false);
  const int again = podPatches(h);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(podPatches(h) - again, 2);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// Pods stamped by a newer term: this replica is stale and labels nothing.
TEST(ReconcilerFenceTest, PodsStampedByANewerTermStopEveryLabelWrite) {
  Harness h;
  h.steadyWorkload("w", 3);
  for (const std::string pod : {"w-0", "w-1", "w-2"}) {
    h.cluster->modify(kube::kPods, kNs, pod,
                      [](Json& p) { p["metadata"]["annotations"][kAnnotationOperatorTerm] = "7"; });
  }
  h.setReady("w-0", false);
  const int pod_patches = podPatches(h);
  const controller::ReconcileResult result = h.reconcile("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(result.after, Reconciler::kStaleTermRecheck);
  EXPECT_EQ(podPatches(h), pod_patches);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});
}

// A label write refused by the fence is not retried: the pod is read, and the reconcile decides again.
TEST(ReconcilerFenceTest, ARefusedLabelWriteRereadsAndDecidesAgain) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  h.sync();
  // Behind the cache's back, a newer term stamped w-0.
  h.cluster->modify(kube::kPods, kNs, "w-0",
                    [](Json& p) { p["metadata"]["annotations"][kAnnotationOperatorTerm] = "9"; });
  const controller::ReconcileResult result = h.reconcileStale("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(result.after, Reconciler::kStaleTermRecheck);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});  // the demotion was refused, w-1 never promoted
}

// Issue 7, case 3: a promotion applied on the server whose answer was lost, a pod cache whose position is past our
// last confirmed label write but that has not delivered the promotion, then a switchover. The cache shortcut would
// promote w-2 next to w-1.
TEST(ReconcilerFenceTest, ALostAnswerSendsTheNextPromotionToTheApi) {
  Harness h;
  h.unreadyLeaderWithTrackedCache("w", 3, 1);
  h.sync();
  h.cluster->failWrite(3, 504, /*after_apply=*/true);  // Lease, demote w-0, promote w-1: applied, answer lost
  EXPECT_EQ(h.reconcileStale("w").action, Action::kRetry);
  ASSERT_EQ(h.leaders(), std::vector<std::string>{"w-1"});

  // The pod cache: at the demotion's revision (past every label write we know the revision of), without the
  // promotion.
  std::vector<Json> pods = h.cluster->list(kube::kPods, kNs);
  std::string demoted_at;
  for (Json& pod : pods) {
    if (pod["metadata"]["name"] == "w-0") demoted_at = pod["metadata"]["resourceVersion"];
    if (pod["metadata"]["name"] == "w-1") {
      pod["metadata"]["labels"][kLabelRole] = kRoleStandby;
      pod["metadata"]["annotations"].erase(kAnnotationFencingToken);
    }
    stripPod(pod);
  }
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  h.hold_pods_revision = true;
  h.pods_revision = demoted_at;
  h.sync();
  h.informers.pods.onReplace(std::move(pods), demoted_at);

  EXPECT_EQ(h.reconcileStale("w").action, Action::kForget);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "api"}}), 1);
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// Issue 10: the Lease of a led workload is deleted; the operator writes it again above every token, keeps the
// leader, and says so.
TEST(ReconcilerTokenTest, ADeletedLeaseIsRecreatedAboveEveryEarlierToken) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  ASSERT_GE(h.converge("w", false), 0);
  h.setReady("w-0", true);
  h.setReady("w-1", false);
  ASSERT_GE(h.converge("w", false), 0);
  ASSERT_EQ(h.transitions("w"), 2);
  const std::string leader = h.leaders().at(0);

  h.cluster->erase(kube::kLeases, kNs, "w-leader");
  ASSERT_GE(h.converge("w", false), 0);
  EXPECT_EQ(h.transitions("w"), 3);
  EXPECT_EQ(h.holder("w"), leader);  // the leader stays; only its token changes
  EXPECT_EQ(h.token(leader), "3");
  const auto events = h.events("LeaseRecreated");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "Warning");
  EXPECT_NE(events[0]["message"].get<std::string>().find("fencing token 3"), std::string::npos) << events[0];
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// The Lease deleted, and the leader gone too before a fresh operator replica (no memory) looks: the workload's
// status still knows the token.
TEST(ReconcilerTokenTest, ARestartedOperatorRecreatesTheLeaseAboveTheStatusToken) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  ASSERT_GE(h.converge("w", false), 0);
  ASSERT_EQ(h.transitions("w"), 1);
  ASSERT_EQ(h.status("w")["fencingToken"], 1);

  h.cluster->erase(kube::kLeases, kNs, "w-leader");
  h.cluster->erase(kube::kPods, kNs, "w-1");  // the leader
  OtherReplica restarted(h, 1);
  for (int round = 0; round < 5; ++round) (void)restarted.reconcile(h, "w");
  EXPECT_GE(h.transitions("w"), 2);
  ASSERT_EQ(h.leaders().size(), 1u);
  EXPECT_EQ(h.token(h.leaders()[0]), std::to_string(h.transitions("w")));
  EXPECT_EQ(restarted.reconcile(h, "w").action, Action::kForget);
  EXPECT_FALSE(h.events("LeaseRecreated").empty());
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// A Lease restored from an old copy (its token below what the pods carry): rewritten above, never relabelled down.
TEST(ReconcilerTokenTest, ALeaseWhoseTokenWentBackwardsIsRewrittenAbove) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  ASSERT_GE(h.converge("w", false), 0);
  ASSERT_EQ(h.token("w-1"), "1");
  h.cluster->modify(kube::kLeases, kNs, "w-leader", [](Json& l) { l["spec"]["leaseTransitions"] = 0; });
  ASSERT_GE(h.converge("w", false), 0);
  EXPECT_EQ(h.transitions("w"), 2);
  EXPECT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(h.token("w-1"), "2");
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

}  // namespace
}  // namespace singleton::op
