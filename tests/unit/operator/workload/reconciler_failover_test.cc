// The reconciler's safety under faults: a reconcile interrupted after any write is repaired by the next one from the
// Lease, never with two leaders and with exactly one token increment; stale caches; recreated pods; rolling updates
// with exactly one failover; scale-down with the leader last.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "operator/workload/workload_metrics.h"
#include "reconciler_harness.h"

namespace singleton::op {
namespace {

using testing::Harness;
using testing::kNs;
using Action = controller::ReconcileResult::Action;

// Every write of one failover reconcile, failed in turn: before it is applied, and after (the answer lost).
struct Fault {
  int nth;
  bool after_apply;
};

class InterruptedFailoverTest : public ::testing::TestWithParam<Fault> {};

TEST_P(InterruptedFailoverTest, NextReconcileRepairsFromTheLease) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  h.cluster->failWrite(GetParam().nth, 500, GetParam().after_apply);
  (void)h.reconcile("w");  // whatever it answers
  EXPECT_TRUE(h.leaders().size() <= 1);

  ASSERT_GE(h.converge("w", false), 0);
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
  EXPECT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(h.transitions("w"), 1);  // one holder change, one increment, however often it was retried
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "1");
  EXPECT_EQ(h.role("w-0"), kRoleStandby);
  EXPECT_FALSE(h.token("w-0"));
  EXPECT_EQ(h.status("w")["leader"], "w-1");
  EXPECT_EQ(h.status("w")["fencingToken"], 1);
}

// A failover reconcile writes: Lease, demote w-0, promote w-1, status, Failover event. Seven covers them all and
// a write beyond (which then fails the next reconcile's first write, also fine).
INSTANTIATE_TEST_SUITE_P(EveryStep, InterruptedFailoverTest,
                         ::testing::Values(Fault{1, false}, Fault{2, false}, Fault{3, false}, Fault{4, false},
                                           Fault{5, false}, Fault{6, false}, Fault{7, false}, Fault{1, true},
                                           Fault{2, true}, Fault{3, true}, Fault{4, true}, Fault{5, true},
                                           Fault{6, true}, Fault{7, true}),
                         [](const ::testing::TestParamInfo<Fault>& param) {
                           return "Write" + std::to_string(param.param.nth) +
                                  (param.param.after_apply ? "AnswerLost" : "Failed");
                         });

// Without a pod cache known to be complete, every pod is read again before a promotion, one by one: in Kubernetes
// 1.20 a quorum list by label makes the apiserver decode every pod of the namespace from etcd.
TEST(ReconcilerFaultTest, PromotionRereadsEachPodInsteadOfListingTheNamespace) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  const std::size_t before = h.cluster->reads().size();
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  const auto reads = h.cluster->reads();
  std::vector<std::string> during(reads.begin() + static_cast<std::ptrdiff_t>(before), reads.end());
  // w-0's demotion answered for w-0; the others are read.
  for (const std::string pod : {"w-1", "w-2"}) {
    const std::string path = "/api/v1/namespaces/" + std::string(kNs) + "/pods/" + pod;
    EXPECT_NE(std::find(during.begin(), during.end(), path), during.end()) << pod;
  }
  for (const std::string& path : during) EXPECT_EQ(path.find("/pods?"), std::string::npos) << path;
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

std::vector<std::string> podReadsSince(const Harness& h, std::size_t before) {
  std::vector<std::string> out;
  const auto reads = h.cluster->reads();
  for (std::size_t i = before; i < reads.size(); ++i) {
    if (reads[i].find("/pods/") != std::string::npos) out.push_back(reads[i]);
  }
  return out;
}

// A pod cache past this replica's own Lease write and its own last label write shows every leader label: the
// failover costs the Lease write and the two pod patches, no reads.
TEST(ReconcilerFaultTest, PromotionTrustsAPodCachePastOurLeadershipAndOurLabelWrites) {
  Harness h;
  h.unreadyLeaderWithTrackedCache("w", 3, 1);
  const std::size_t before = h.cluster->reads().size();
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(podReadsSince(h, before), std::vector<std::string>{});
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "1");
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "cache"}}), 2);  // the first election and this failover
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "api"}}), 0);
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

// Leading since a revision the pod cache has not reached: an earlier operator leader's last label may be missing.
TEST(ReconcilerFaultTest, PromotionRereadsWhileThePodCacheIsBehindOurLeadership) {
  Harness h;
  h.unreadyLeaderWithTrackedCache("w", 3, std::numeric_limits<std::uint64_t>::max());
  const std::size_t before = h.cluster->reads().size();
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(podReadsSince(h, before).size(), 2u);  // w-0's demotion answered for w-0
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "cache"}}), 0);
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "api"}}), 2);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

// Our own promotion that the pod cache has not shown yet: the next promotion reads the pods again and finds it.
TEST(ReconcilerFaultTest, PromotionRereadsWhileThePodCacheIsBehindOurOwnLabelWrite) {
  Harness h;
  h.unreadyLeaderWithTrackedCache("w", 3, 1);
  h.sync();
  h.hold_pods_revision = true;  // from here on the cache never reports a position past the next promotion
  ASSERT_EQ(h.reconcileStale("w").action, Action::kForget);
  ASSERT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  const std::size_t before = h.cluster->reads().size();
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  // w-1's demotion answered for w-1; the other two are read.
  EXPECT_EQ(podReadsSince(h, before).size(), 2u);
  EXPECT_EQ(h.counter(kPromotions.name, {{"check", "api"}}), 1);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
}

TEST(ReconcilerFaultTest, FailoverWritesTheLeaseFirstThenDemotesThenPromotes) {
  Harness h;
  h.steadyWorkload("w", 3);
  const std::size_t start = h.cluster->writes().size();
  h.setReady("w-0", false);
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  const auto writes = h.cluster->writes();
  ASSERT_GE(writes.size(), start + 3);
  EXPECT_EQ(writes[start].method, "PUT");
  EXPECT_NE(writes[start].path.find("/leases/w-leader"), std::string::npos);
  EXPECT_NE(writes[start + 1].path.find("/pods/w-0"), std::string::npos);
  EXPECT_NE(writes[start + 1].body.find("standby"), std::string::npos);
  EXPECT_NE(writes[start + 2].path.find("/pods/w-1"), std::string::npos);
  EXPECT_NE(writes[start + 2].body.find("leader"), std::string::npos);
}

TEST(ReconcilerFaultTest, InterruptedSwitchoverIsRepairedAndRunsOnce) {
  for (int nth = 1; nth <= 6; ++nth) {
    SCOPED_TRACE(nth);
    Harness h;
    h.steadyWorkload("w", 3);
    h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
    h.cluster->failWrite(nth);
    (void)h.reconcile("w");
    ASSERT_GE(h.converge("w", false), 0);
    EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
    EXPECT_EQ(h.holder("w"), "w-2");
    EXPECT_EQ(h.transitions("w"), 1);
    EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
    EXPECT_FALSE(annotationOf(*h.cluster->get(kWorkloads, kNs, "w"), kAnnotationSwitchoverTo));
  }
}

TEST(ReconcilerFaultTest, ConflictOnTheLeaseRequeuesAtOnceAndDecidesAgain) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.setReady("w-0", false);
  h.sync();
  // Someone else (another operator term, say) moved the Lease after our cache saw it.
  h.cluster->modify(kube::kLeases, kNs, "w-leader",
                    [](Json& l) { l["spec"]["renewTime"] = "2026-01-01T00:00:01.000000Z"; });
  EXPECT_EQ(h.reconcileStale("w").action, Action::kRequeue);
  EXPECT_TRUE(h.leaders() == std::vector<std::string>{"w-0"});  // nothing was relabelled
  // The retry works from the fresh Lease even before the cache has it.
  EXPECT_EQ(h.reconcileStale("w").action, Action::kForget);
  EXPECT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_TRUE(h.cluster->violations().empty());
}

TEST(ReconcilerFaultTest, PromotionDemotesALeaderTheCacheHasNotSeenYet) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  h.sync();
  // Behind the cache's back, w-1 carries the leader label (as if a promotion's watch event were still in flight).
  h.cluster->modify(kube::kPods, kNs, "w-0", [](Json& p) {
    p["metadata"]["labels"][kLabelRole] = kRoleStandby;
    p["metadata"]["annotations"].erase(kAnnotationFencingToken);
  });
  h.cluster->modify(kube::kPods, kNs, "w-1", [](Json& p) {
    p["metadata"]["labels"][kLabelRole] = kRoleLeader;
    p["metadata"]["annotations"][kAnnotationFencingToken] = "0";
  });
  h.cluster->clearViolations();
  EXPECT_EQ(h.reconcileStale("w").action, Action::kForget);
  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_EQ(h.token("w-2"), "1");
}

TEST(ReconcilerFaultTest, RecreatedPodWithTheSameNameGetsANewToken) {
  Harness h;
  h.steadyWorkload("w", 1);
  const std::string old_uid = metaString(*h.pod("w-0"), "uid");
  // Deleted and created again (by someone) before the operator looked, Ready at once, still wearing the label.
  Json copy = *h.pod("w-0");
  h.cluster->erase(kube::kPods, kNs, "w-0");
  copy["metadata"].erase("uid");
  copy["metadata"].erase("resourceVersion");
  h.cluster->put(kube::kPods, copy);
  h.cluster->clearViolations();
  const std::string new_uid = metaString(*h.pod("w-0"), "uid");
  ASSERT_NE(new_uid, old_uid);

  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.holder("w"), "w-0");
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_EQ(annotationOf(*h.lease("w"), kAnnotationLeaderUid), new_uid);
  EXPECT_EQ(h.token("w-0"), "1");
  EXPECT_EQ(h.counter("singleton_failovers_total", {{"reason", "replaced"}}), 1);
  EXPECT_TRUE(h.cluster->violations().empty());
}

TEST(ReconcilerRolloutTest, TemplateChangeReplacesStandbysFirstWithExactlyOneFailover) {
  Harness h;
  h.steadyWorkload("w", 3);
  const std::size_t start = h.cluster->writes().size();
  h.changeWorkload("w", [](Json& w) { w["spec"]["template"] = testing::podTemplate("app:2"); });
  ASSERT_GE(h.converge("w"), 0);

  EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
  EXPECT_EQ(h.transitions("w"), 1);  // one failover
  EXPECT_EQ(h.counter("singleton_failovers_total", {{"reason", "rollout"}}), 1);
  const std::string hash = templateHash(testing::podTemplate("app:2"));
  for (const std::string name : {"w-0", "w-1", "w-2"}) {
    EXPECT_EQ(annotationOf(*h.pod(name), kAnnotationTemplateHash), hash) << name;
  }
  EXPECT_EQ(h.leaders().size(), 1u);
  EXPECT_EQ(h.holder("w"), h.leaders()[0]);

  // Order: both standbys deleted (w-2, then w-1) before the Lease moved, and the old leader deleted after it.
  std::vector<std::string> order;
  const auto writes = h.cluster->writes();
  for (std::size_t i = start; i < writes.size(); ++i) {
    if (writes[i].method == "DELETE") order.push_back("delete " + writes[i].path.substr(writes[i].path.rfind('/') + 1));
    if (writes[i].method == "PUT" && writes[i].path.find("/leases/") != std::string::npos) order.push_back("lease");
  }
  EXPECT_EQ(order, (std::vector<std::string>{"delete w-2", "delete w-1", "lease", "delete w-0"}));
  EXPECT_EQ(h.events("RolloutComplete").size(), 1u);
  EXPECT_EQ(h.condition("w", "Progressing"), "False");
}

TEST(ReconcilerRolloutTest, WaitsForEachReplacementToBeReady) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.changeWorkload("w", [](Json& w) { w["spec"]["template"] = testing::podTemplate("app:2"); });
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);  // deletes w-2
  EXPECT_FALSE(h.pod("w-2"));
  ASSERT_EQ(h.reconcile("w").action, Action::kRequeueAfter);  // creates w-2 (not Ready), the status waits
  ASSERT_TRUE(h.pod("w-2"));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_TRUE(h.pod("w-1"));  // not replaced while w-2 is not Ready
  EXPECT_EQ(h.condition("w", "Progressing", "reason"), "RollingUpdate");
  EXPECT_EQ(h.holder("w"), "w-0");
}

TEST(ReconcilerRolloutTest, SingleReplicaIsReplacedInPlace) {
  Harness h;
  h.steadyWorkload("w", 1);
  h.changeWorkload("w", [](Json& w) { w["spec"]["template"] = testing::podTemplate("app:2"); });
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_TRUE(h.cluster->violations().empty());
  EXPECT_EQ(annotationOf(*h.pod("w-0"), kAnnotationTemplateHash), templateHash(testing::podTemplate("app:2")));
  EXPECT_EQ(h.holder("w"), "w-0");
  EXPECT_EQ(h.transitions("w"), 1);  // a new incarnation: a new token
  EXPECT_EQ(h.token("w-0"), "1");
}

TEST(ReconcilerScaleTest, ScaleDownMovesLeadershipBeforeDeletingTheLeader) {
  Harness h;
  h.steadyWorkload("w", 3);
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  ASSERT_GE(h.converge("w"), 0);
  ASSERT_EQ(h.holder("w"), "w-2");
  const std::size_t start = h.cluster->writes().size();

  h.changeWorkload("w", [](Json& w) { w["spec"]["replicas"] = 1; });
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_TRUE(h.cluster->violations().empty());
  EXPECT_EQ(h.holder("w"), "w-0");
  EXPECT_EQ(h.transitions("w"), 2);
  EXPECT_FALSE(h.pod("w-1"));
  EXPECT_FALSE(h.pod("w-2"));
  std::vector<std::string> order;
  const auto writes = h.cluster->writes();
  for (std::size_t i = start; i < writes.size(); ++i) {
    if (writes[i].method == "DELETE") order.push_back("delete " + writes[i].path.substr(writes[i].path.rfind('/') + 1));
    if (writes[i].method == "PUT" && writes[i].path.find("/leases/") != std::string::npos) order.push_back("lease");
  }
  EXPECT_EQ(order, (std::vector<std::string>{"lease", "delete w-2", "delete w-1"}));
  EXPECT_EQ(h.status("w")["readySummary"], "1/1");
}

TEST(ReconcilerScaleTest, ScaleUpCreatesStandbys) {
  Harness h;
  h.steadyWorkload("w", 1);
  h.changeWorkload("w", [](Json& w) { w["spec"]["replicas"] = 3; });
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_EQ(h.role("w-1"), kRoleStandby);
  EXPECT_EQ(h.role("w-2"), kRoleStandby);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});
  EXPECT_EQ(h.transitions("w"), 0);
  EXPECT_EQ(h.status("w")["observedGeneration"], 2);
}

TEST(ReconcilerScaleTest, GracefulDeletionOfTheLeaderFailsOverWhileItTerminates) {
  Harness h;
  h.cluster->setGracefulPodDeletion(true);
  h.steadyWorkload("w", 2);
  kube::DeleteOptions options;
  ASSERT_TRUE(h.client.remove(kube::kPods, kNs, "w-0", options).ok());  // a user's kubectl delete
  ASSERT_TRUE(h.pod("w-0"));                                            // terminating, still labelled
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.role("w-0"), kRoleStandby);  // demoted while it terminates
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_TRUE(h.cluster->violations().empty());
  EXPECT_EQ(h.transitions("w"), 1);
}

}  // namespace
}  // namespace singleton::op
