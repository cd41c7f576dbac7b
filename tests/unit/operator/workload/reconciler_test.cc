// The reconciler against a fake API: election, failover triggers, switchover, no-leader, self-fencing, and that a
// settled workload costs no writes.
#include <gtest/gtest.h>

#include "reconciler_harness.h"

namespace singleton::op {
namespace {

using testing::Harness;
using testing::kNs;
using Action = controller::ReconcileResult::Action;

class ReconcilerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
  }
  Harness h;
};

TEST_F(ReconcilerTest, CreatesPodsWithOwnerReferencesAndNoLeaderUntilOneIsReady) {
  const Json workload = h.addWorkload("w", 3);
  const controller::ReconcileResult created_pass = h.reconcile("w");
  // The status waits for the new pods' first changes (or a second): it would be rewritten at once.
  EXPECT_EQ(created_pass.action, Action::kRequeueAfter);
  EXPECT_EQ(created_pass.after, Reconciler::kStatusAfterCreate);
  EXPECT_EQ(h.status("w"), Json::object());
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);

  for (const std::string name : {"w-0", "w-1", "w-2"}) {
    const auto pod = h.pod(name);
    ASSERT_TRUE(pod) << name;
    const Json& ref = (*pod)["metadata"]["ownerReferences"][0];
    EXPECT_EQ(ref["apiVersion"], "singleton.dev/v1alpha1");
    EXPECT_EQ(ref["kind"], "SingletonWorkload");
    EXPECT_EQ(ref["name"], "w");
    EXPECT_EQ(ref["uid"], workload["metadata"]["uid"]);
    EXPECT_EQ(ref["controller"], true);
    EXPECT_EQ(ref["blockOwnerDeletion"], true);
    EXPECT_EQ(labelOf(*pod, kLabelWorkload), "w");
    EXPECT_EQ(labelOf(*pod, "app"), "demo");
    EXPECT_EQ(h.role(name), kRoleStandby);
    EXPECT_FALSE(h.token(name));
  }
  EXPECT_FALSE(h.pod("w-3"));
  // One Event for the three pods of one pass: Events are API writes too, and a cold start creates many pods.
  const auto created = h.events("PodCreated");
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0]["message"], "created pods w-0, w-1, w-2");
  // Nobody is Ready: no Lease, no leader, and the status says why.
  EXPECT_FALSE(h.lease("w"));
  EXPECT_TRUE(h.leaders().empty());
  EXPECT_EQ(h.condition("w", "LeaderElected"), "False");
  EXPECT_EQ(h.condition("w", "LeaderElected", "reason"), "NoReadyReplica");
  EXPECT_EQ(h.status("w")["readySummary"], "0/3");
}

TEST_F(ReconcilerTest, StartupElectionPicksTheLowestReadyOrdinalWithTokenZero) {
  h.addWorkload("w", 3, {{"leaseDurationSeconds", 20}});
  ASSERT_EQ(h.reconcile("w").action, Action::kRequeueAfter);  // created the pods
  h.setReady("w-2", true);
  h.setReady("w-1", true);
  ASSERT_EQ(h.reconcile("w").action, Action::kForget);

  const auto lease = h.lease("w");
  ASSERT_TRUE(lease);
  EXPECT_EQ((*lease)["spec"]["holderIdentity"], "w-1");
  EXPECT_EQ((*lease)["spec"]["leaseTransitions"], 0);
  EXPECT_EQ((*lease)["spec"]["leaseDurationSeconds"], 20);
  EXPECT_EQ(annotationOf(*lease, kAnnotationLeaderUid), metaString(*h.pod("w-1"), "uid"));
  EXPECT_EQ(annotationOf(*lease, kAnnotationOperatorTerm), "1");
  EXPECT_EQ(labelOf(*lease, kLabelWorkload), "w");
  EXPECT_TRUE(isControlledBy(*lease, metaString(*h.cluster->get(kWorkloads, kNs, "w"), "uid")));

  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "0");
  EXPECT_EQ(h.role("w-0"), kRoleStandby);
  EXPECT_EQ(h.role("w-2"), kRoleStandby);
  EXPECT_EQ(h.events("LeaderElected").size(), 1u);

  const Json status = h.status("w");
  EXPECT_EQ(status["leader"], "w-1");
  EXPECT_EQ(status["fencingToken"], 0);
  EXPECT_EQ(status["replicas"], 3);
  EXPECT_EQ(status["readyReplicas"], 2);
  EXPECT_EQ(status["readySummary"], "2/3");
  EXPECT_EQ(status["observedGeneration"], 1);
  EXPECT_FALSE(status.contains("lastFailoverTime"));
  EXPECT_EQ(h.condition("w", "LeaderElected"), "True");
  EXPECT_EQ(h.condition("w", "Ready"), "True");
  EXPECT_EQ(h.condition("w", "Progressing"), "False");
  EXPECT_EQ(h.metrics.gauge("singleton_workload_fencing_token", "", {{"namespace", kNs}, {"name", "w"}}).value(), 0);
}

TEST_F(ReconcilerTest, SteadyStateMakesNoWrites) {
  h.steadyWorkload("w", 3, {{"service", {{"ports", Json::array({{{"port", 80}}})}}}});
  const int before = h.cluster->writeCount();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.cluster->writeCount(), before)
      << "writes: " << h.cluster->writes().back().method << " " << h.cluster->writes().back().path;
}

struct FailoverCase {
  std::string name;
  std::function<void(Harness&)> break_leader;
  std::string reason;  // singleton_failovers_total{reason}
};

class FailoverTest : public ReconcilerTest, public ::testing::WithParamInterface<FailoverCase> {};

TEST_P(FailoverTest, MovesTheLeaseThenTheLabelsWithTheNextToken) {
  h.steadyWorkload("w", 3);
  const int lease_writes = h.cluster->writeCount("/leases/");
  GetParam().break_leader(h);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);

  EXPECT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_EQ(h.cluster->writeCount("/leases/"), lease_writes + 1);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "1");
  if (h.pod("w-0")) {
    EXPECT_NE(h.role("w-0"), kRoleLeader);
    EXPECT_FALSE(h.token("w-0"));
  }
  EXPECT_EQ(h.counter("singleton_failovers_total", {{"reason", GetParam().reason}}), 1);
  EXPECT_EQ(h.events("Failover").size(), 1u);
  EXPECT_EQ(h.status("w")["leader"], "w-1");
  EXPECT_EQ(h.status("w")["fencingToken"], 1);
  EXPECT_TRUE(h.status("w").contains("lastFailoverTime"));
  EXPECT_EQ(h.metrics.histogram("singleton_failover_duration_seconds", "", controller::latencyBuckets()).count(), 1u);
  EXPECT_EQ(h.metrics.gauge("singleton_workload_fencing_token", "", {{"namespace", kNs}, {"name", "w"}}).value(), 1);

  // And it settles: the deleted pod comes back as a standby, then nothing more is written.
  EXPECT_GE(h.converge("w"), 0);
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

INSTANTIATE_TEST_SUITE_P(
    Triggers, FailoverTest,
    ::testing::Values(FailoverCase{"Deleted", [](Harness& h) { h.cluster->erase(kube::kPods, kNs, "w-0"); }, "deleted"},
                      FailoverCase{"Terminating", [](Harness& h) { h.markTerminating("w-0"); }, "terminating"},
                      FailoverCase{"Failed", [](Harness& h) { h.setPhase("w-0", "Failed"); }, "failed"},
                      FailoverCase{"Succeeded", [](Harness& h) { h.setPhase("w-0", "Succeeded"); }, "failed"},
                      FailoverCase{"NotReady", [](Harness& h) { h.setReady("w-0", false); }, "notready"},
                      FailoverCase{"ReadyConditionMissing",
                                   [](Harness& h) {
                                     h.cluster->modify(kube::kPods, kNs, "w-0", [](Json& p) {
                                       p["status"] = {{"phase", "Running"}};
                                     });
                                   },
                                   "notready"}),
    [](const ::testing::TestParamInfo<FailoverCase>& param) { return param.param.name; });

TEST_F(ReconcilerTest, NoReadyPodMeansNoLeaderThenTheNextReadyPodLeadsWithAHigherToken) {
  h.steadyWorkload("w", 3);
  h.setReady("w-1", false);
  h.setReady("w-2", false);
  ASSERT_GE(h.converge("w", false), 0);
  EXPECT_EQ(h.holder("w"), "w-0");

  h.setReady("w-0", false);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.holder("w"), "");
  EXPECT_EQ(h.transitions("w"), 0);  // the token stays; the next holder gets the next one
  EXPECT_FALSE(annotationOf(*h.lease("w"), kAnnotationLeaderUid));
  EXPECT_TRUE(h.leaders().empty());
  EXPECT_FALSE(h.token("w-0"));
  EXPECT_EQ(h.condition("w", "LeaderElected"), "False");
  EXPECT_EQ(h.condition("w", "LeaderElected", "reason"), "NoReadyReplica");
  EXPECT_EQ(h.condition("w", "Ready"), "False");
  EXPECT_FALSE(h.status("w").contains("leader"));
  EXPECT_EQ(h.events("NoReadyReplica").size(), 1u);
  ASSERT_GE(h.converge("w", false), 0);

  h.setReady("w-2", true);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.holder("w"), "w-2");
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_EQ(h.token("w-2"), "1");
  // The failover that began when w-0 went NotReady ends here.
  EXPECT_EQ(h.metrics.histogram("singleton_failover_duration_seconds", "", controller::latencyBuckets()).count(), 1u);
}

TEST_F(ReconcilerTest, SwitchoverToAReadyPodMovesLeadershipAndRemovesTheAnnotation) {
  h.steadyWorkload("w", 3);
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);

  EXPECT_EQ(h.holder("w"), "w-2");
  EXPECT_EQ(h.transitions("w"), 1);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
  EXPECT_EQ(h.token("w-2"), "1");
  EXPECT_EQ(h.role("w-0"), kRoleStandby);
  EXPECT_FALSE(annotationOf(*h.cluster->get(kWorkloads, kNs, "w"), kAnnotationSwitchoverTo));
  EXPECT_EQ(h.events("Switchover").size(), 1u);
  EXPECT_EQ(h.counter("singleton_failovers_total", {{"reason", "switchover"}}), 1);
  EXPECT_GE(h.converge("w"), 0);
  EXPECT_EQ(h.transitions("w"), 1);
}

TEST_F(ReconcilerTest, SwitchoverToAnInvalidTargetIsRejectedWithAnEvent) {
  h.steadyWorkload("w", 3);
  h.setReady("w-1", false);
  for (const std::string target : {"w-9", "w-1", "other-0"}) {
    const int lease_writes = h.cluster->writeCount("/leases/");
    h.changeWorkload("w", [&](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = target; });
    EXPECT_EQ(h.reconcile("w").action, Action::kForget);
    EXPECT_EQ(h.holder("w"), "w-0") << target;
    EXPECT_EQ(h.cluster->writeCount("/leases/"), lease_writes) << target;
    EXPECT_FALSE(annotationOf(*h.cluster->get(kWorkloads, kNs, "w"), kAnnotationSwitchoverTo)) << target;
  }
  const auto rejected = h.events("SwitchoverRejected");
  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected[0]["type"], "Warning");
  EXPECT_EQ(h.transitions("w"), 0);
}

TEST_F(ReconcilerTest, SwitchoverToTheLeaderItselfIsDone) {
  h.steadyWorkload("w", 2);
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-0"; });
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.transitions("w"), 0);
  EXPECT_FALSE(annotationOf(*h.cluster->get(kWorkloads, kNs, "w"), kAnnotationSwitchoverTo));
}

TEST_F(ReconcilerTest, StaleOperatorTermMakesNoWrites) {
  h.steadyWorkload("w", 3);
  h.cluster->modify(kube::kLeases, kNs, "w-leader",
                    [](Json& l) { l["metadata"]["annotations"][kAnnotationOperatorTerm] = "5"; });
  h.gate.term_value = 3;
  h.cluster->erase(kube::kPods, kNs, "w-0");  // a failover would be due
  const int before = h.cluster->writeCount();
  const controller::ReconcileResult result = h.reconcile("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(result.after, Reconciler::kStaleTermRecheck);
  EXPECT_EQ(h.cluster->writeCount(), before);

  // The newer term (ours, once we are that leader) writes, and records itself.
  h.gate.term_value = 5;
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(annotationOf(*h.lease("w"), kAnnotationOperatorTerm), "5");
}

TEST_F(ReconcilerTest, ClosedGateMakesNoWrites) {
  h.addWorkload("w", 3);
  h.gate.may_write = false;
  const controller::ReconcileResult result = h.reconcile("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(h.cluster->writeCount(), 0);
}

TEST_F(ReconcilerTest, ALeaderLabelTheLeaseDoesNotNameIsRemoved) {
  h.steadyWorkload("w", 3);
  h.cluster->modify(kube::kPods, kNs, "w-2", [](Json& p) {
    p["metadata"]["labels"][kLabelRole] = kRoleLeader;
    // Not above the Lease's: a higher token on any pod would make the operator write the Lease above it first
    // (ReconcilerTokenTest).
    p["metadata"]["annotations"][kAnnotationFencingToken] = "0";
  });
  h.cluster->clearViolations();  // the test made two leaders; the reconciler must end it
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});
  EXPECT_FALSE(h.token("w-2"));
  EXPECT_EQ(h.transitions("w"), 0);
}

TEST_F(ReconcilerTest, WorkloadGoneForgetsItsMetrics) {
  h.steadyWorkload("w", 2);
  EXPECT_NE(h.metrics.render().find("singleton_workload_fencing_token{name=\"w\""), std::string::npos);
  h.cluster->erase(kWorkloads, kNs, "w");  // garbage collection takes pods and Lease with it
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.metrics.render().find("singleton_workload_fencing_token{name=\"w\""), std::string::npos);
  EXPECT_TRUE(h.cluster->list(kube::kPods, kNs).empty());
}

TEST_F(ReconcilerTest, ServiceSelectsTheLeaderAndGoesWithTheField) {
  h.steadyWorkload("w", 2, {{"service", {{"ports", Json::array({{{"port", 80}, {"targetPort", 8080}}})}}}});
  auto service = h.cluster->get(kube::kServices, kNs, "w");
  ASSERT_TRUE(service);
  EXPECT_EQ((*service)["spec"]["selector"][kLabelRole], kRoleLeader);
  EXPECT_EQ((*service)["spec"]["selector"][kLabelWorkload], "w");
  EXPECT_EQ((*service)["spec"]["ports"][0]["targetPort"], 8080);
  EXPECT_EQ((*service)["spec"]["type"], "ClusterIP");

  h.changeWorkload("w", [](Json& w) { w["spec"]["service"]["ports"][0]["port"] = 81; });
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_EQ((*h.cluster->get(kube::kServices, kNs, "w"))["spec"]["ports"][0]["port"], 81);

  h.changeWorkload("w", [](Json& w) { w["spec"].erase("service"); });
  ASSERT_GE(h.converge("w"), 0);
  EXPECT_FALSE(h.cluster->get(kube::kServices, kNs, "w"));
}

TEST_F(ReconcilerTest, EventsDescribeTheWorkloadAndFoldRepeats) {
  const Json workload = h.addWorkload("w", 1);
  ASSERT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  const auto created = h.events("PodCreated");
  ASSERT_EQ(created.size(), 1u);
  const Json& e = created[0];
  EXPECT_EQ(e["involvedObject"]["kind"], "SingletonWorkload");
  EXPECT_EQ(e["involvedObject"]["apiVersion"], "singleton.dev/v1alpha1");
  EXPECT_EQ(e["involvedObject"]["name"], "w");
  EXPECT_EQ(e["involvedObject"]["namespace"], kNs);
  EXPECT_EQ(e["involvedObject"]["uid"], workload["metadata"]["uid"]);
  EXPECT_EQ(e["type"], "Normal");
  EXPECT_EQ(e["source"]["component"], "singleton-operator");
  EXPECT_EQ(e["reportingInstance"], "operator-0");
  EXPECT_EQ(e["count"], 1);
  EXPECT_TRUE(e.contains("firstTimestamp"));
  EXPECT_TRUE(e.contains("lastTimestamp"));

  // The same pod deleted and created again: one Event object, count 2.
  h.cluster->erase(kube::kPods, kNs, "w-0");
  ASSERT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  const auto again = h.events("PodCreated");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]["count"], 2);
}

TEST_F(ReconcilerTest, EventFailuresNeverFailTheReconcile) {
  h.addWorkload("w", 1);
  h.cluster->failWrite(2);  // the pod, then (last, best-effort) the PodCreated event; the status waits
  EXPECT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  EXPECT_TRUE(h.pod("w-0"));
  EXPECT_TRUE(h.events("PodCreated").empty());
}

TEST_F(ReconcilerTest, InvalidPodTemplateIsReportedOnReady) {
  h.addWorkload("w", 1);
  h.cluster->failWrite(1, 422);
  EXPECT_EQ(h.reconcile("w").action, Action::kRetry);
  EXPECT_EQ(h.condition("w", "Ready"), "False");
  EXPECT_EQ(h.condition("w", "Ready", "reason"), "PodCreateFailed");
}

}  // namespace
}  // namespace singleton::op
