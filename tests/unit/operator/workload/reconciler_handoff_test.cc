// The operator's side of the hand-off (docs/handoff.md, operator/workload/reconcile_handoff.cc): the move names who
// must stop first, the successor is not labelled before the hand-off is complete, and the operator completes it on
// its own evidence (pod gone, containers terminated, lease expired at exactly the bound on the fake clock).
#include <gtest/gtest.h>

#include "election/handoff.h"
#include "reconciler_harness.h"

namespace singleton::op {
namespace {

using testing::Harness;
using testing::kNs;
using Action = controller::ReconcileResult::Action;

Json agentTemplate() {
  Json t = testing::podTemplate();
  t["spec"]["containers"][0]["command"] = Json::array({"/usr/local/bin/singleton-agent", "--", "/app/server"});
  return t;
}

std::string annotation(const Json& object, const char* key) { return annotationOf(object, key).value_or("<none>"); }

std::string uidOf(const Harness& h, const std::string& pod) { return h.pod(pod)->at("metadata").value("uid", ""); }

// w-0 leads (token 0) with w-1 and w-2 as Ready standbys; then w-0 turns NotReady and the Lease moves to w-1.
void moveFromW0(Harness& h, const Json& extra_spec = {{"template", agentTemplate()}}) {
  h.steadyWorkload("w", 3, extra_spec);
  h.setReady("w-0", false);
  (void)h.reconcile("w");
  ASSERT_EQ(h.holder("w"), "w-1");
  ASSERT_EQ(h.transitions("w"), 1);
}

void terminateContainers(Harness& h, const std::string& pod) {
  ASSERT_TRUE(h.cluster->modify(kube::kPods, kNs, pod, [](Json& p) {
    p["status"]["containerStatuses"] =
        Json::array({{{"name", "main"}, {"state", {{"terminated", {{"exitCode", 0}}}}}}});
  }));
}

TEST(ReconcilerHandoffModeTest, AutoDetectsSingletonAgentInAnyContainer) {
  EXPECT_TRUE(templateRunsAgent(agentTemplate()));
  Json plain = testing::podTemplate();
  EXPECT_FALSE(templateRunsAgent(plain));
  plain["spec"]["containers"][0]["command"] = Json::array({"singleton-agent"});
  EXPECT_TRUE(templateRunsAgent(plain));
  plain["spec"]["containers"][0]["command"] = Json::array({"/bin/singleton-agent-old"});
  EXPECT_FALSE(templateRunsAgent(plain));
  plain["spec"]["containers"][0]["command"] = Json::array({"/bin/sh", "-c", "singleton-agent"});
  EXPECT_FALSE(templateRunsAgent(plain)) << "only command[0] counts";
  Json sidecar = testing::podTemplate();
  sidecar["spec"]["initContainers"] =
      Json::array({{{"name", "agent"}, {"restartPolicy", "Always"}, {"command", {"/agent/singleton-agent"}}}});
  EXPECT_TRUE(templateRunsAgent(sidecar));

  const auto mode = [](const Json& spec) {
    Json object = {{"metadata", {{"name", "w"}, {"namespace", kNs}}}, {"spec", spec}};
    return Workload::fromJson(object)->effectiveHandoff();
  };
  EXPECT_EQ(mode({{"template", agentTemplate()}}), HandoffMode::kWaitForStop);
  EXPECT_EQ(mode({{"template", testing::podTemplate()}}), HandoffMode::kImmediate);
  EXPECT_EQ(mode({{"template", testing::podTemplate()}, {"handoff", "WaitForStop"}}), HandoffMode::kWaitForStop);
  EXPECT_EQ(mode({{"template", agentTemplate()}, {"handoff", "Immediate"}}), HandoffMode::kImmediate);
}

TEST(ReconcilerHandoffTest, FirstElectionHasNobodyToWaitFor) {
  Harness h;
  h.steadyWorkload("w", 2, {{"template", agentTemplate()}});
  const Json lease = *h.lease("w");
  EXPECT_EQ(annotation(lease, election::kHandoffFromAnnotation), "");
  EXPECT_TRUE(election::parseHandoff(lease).complete);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-0"});
  EXPECT_EQ(h.status("w")["handoff"], Json({{"mode", "WaitForStop"}}));
  EXPECT_EQ(h.condition("w", "ExclusiveActivation"), "True");
}

TEST(ReconcilerHandoffTest, MoveRecordsWhoMustStopFirstAndDoesNotLabelTheSuccessor) {
  Harness h;
  moveFromW0(h);
  const Json lease = *h.lease("w");
  EXPECT_EQ(annotation(lease, election::kHandoffFromAnnotation), "w-0");
  EXPECT_EQ(annotation(lease, election::kHandoffFromUidAnnotation), uidOf(h, "w-0"));
  EXPECT_EQ(annotation(lease, election::kLeaderUidAnnotation), uidOf(h, "w-1"));
  EXPECT_FALSE(election::parseHandoff(lease).complete);
  EXPECT_TRUE(h.leaders().empty()) << "w-0 demoted, w-1 not yet labelled";
  EXPECT_EQ(h.role("w-1"), kRoleStandby);

  // The pod is alive and its agent has not acked: the operator waits exactly one lease duration (15 s).
  const auto result = h.reconcile("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(result.after, util::Millis(15'000));
  EXPECT_TRUE(h.leaders().empty());
  EXPECT_EQ(h.status("w")["handoff"], Json({{"mode", "WaitForStop"}, {"pendingFrom", "w-0"}, {"pendingTo", "w-1"}}));
  EXPECT_EQ(h.condition("w", "Ready", "reason"), "HandoffPending");
  EXPECT_EQ(h.condition("w", "LeaderElected", "reason"), "HandoffPending");
  // A hand-off in progress is not a workload without a Ready replica: no NoReadyReplica warning.
  EXPECT_TRUE(h.events("NoReadyReplica").empty());
}

TEST(ReconcilerHandoffTest, AgentAckLetsTheSuccessorBeLabelled) {
  Harness h;
  moveFromW0(h);
  ASSERT_TRUE(h.cluster->modify(kube::kLeases, kNs, "w-leader", [](Json& l) {
    l["metadata"]["annotations"][election::kHandoffAckedAnnotation] = "1";
    l["metadata"]["annotations"][election::kHandoffAckedByAnnotation] = "agent";
  }));
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "1");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "agent");
  EXPECT_EQ(h.status("w")["handoff"], Json({{"mode", "WaitForStop"}}));
  EXPECT_EQ(h.condition("w", "Ready", "reason"), "LeaderReady");
}

TEST(ReconcilerHandoffTest, PodGoneCompletesTheHandoff) {
  Harness h;
  moveFromW0(h);
  h.cluster->erase(kube::kPods, kNs, "w-0");
  (void)h.reconcile("w");
  const Json lease = *h.lease("w");
  EXPECT_EQ(annotation(lease, election::kHandoffAckedAnnotation), "1");
  EXPECT_EQ(annotation(lease, election::kHandoffAckedByAnnotation), "pod-gone");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.events("HandoffComplete").size(), 1u);
}

TEST(ReconcilerHandoffTest, PodReplacedUnderTheSameNameCountsAsGone) {
  Harness h;
  moveFromW0(h);
  ASSERT_TRUE(h.cluster->modify(kube::kPods, kNs, "w-0", [](Json& p) { p["metadata"]["uid"] = "another"; }));
  (void)h.reconcile("w");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "pod-gone");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

TEST(ReconcilerHandoffTest, TerminatingPodWithEveryContainerTerminatedCompletesTheHandoff) {
  Harness h;
  moveFromW0(h);
  h.markTerminating("w-0");
  terminateContainers(h, "w-0");
  (void)h.reconcile("w");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "containers-terminated");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

TEST(ReconcilerHandoffTest, ContainersTerminatedInARunningPodDoNotCount) {
  Harness h;
  moveFromW0(h);
  // All of w-0's containers terminated, but the pod is neither terminating nor finished: the kubelet restarts them.
  terminateContainers(h, "w-0");
  EXPECT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  EXPECT_TRUE(h.leaders().empty());
  // A Failed pod never runs a container again.
  h.setPhase("w-0", "Failed");
  (void)h.reconcile("w");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "containers-terminated");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

TEST(ReconcilerHandoffTest, OneContainerStillRunningKeepsWaiting) {
  Harness h;
  moveFromW0(h);
  h.markTerminating("w-0");
  ASSERT_TRUE(h.cluster->modify(kube::kPods, kNs, "w-0", [](Json& p) {
    p["status"]["containerStatuses"] = Json::array({{{"name", "a"}, {"state", {{"terminated", Json::object()}}}},
                                                    {{"name", "b"}, {"state", {{"running", Json::object()}}}}});
  }));
  EXPECT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  EXPECT_TRUE(h.leaders().empty());
}

TEST(ReconcilerHandoffTest, LeaseExpiresExactlyOneDurationAfterTheCasAnswer) {
  Harness h;
  moveFromW0(h);  // the CAS answer arrived at the fake clock's current instant
  h.clock.advance(util::Millis(14'999));
  auto result = h.reconcile("w");
  EXPECT_EQ(result.action, Action::kRequeueAfter);
  EXPECT_EQ(result.after, util::Millis(1)) << "requeued for the exact instant, not polled";
  EXPECT_TRUE(h.leaders().empty()) << "1 ms before the bound";
  EXPECT_FALSE(election::parseHandoff(*h.lease("w")).complete);

  h.clock.advance(util::Millis(1));
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "lease-expired");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

TEST(ReconcilerHandoffTest, NewTermMeasuresFromItsFirstSight) {
  Harness h;
  moveFromW0(h);
  h.clock.advance(util::Millis(10'000));
  h.reconciler.endTerm();  // another operator term: no record of the CAS answer
  auto result = h.reconcile("w");
  EXPECT_EQ(result.after, util::Millis(15'000)) << "a full duration from now, not the 5 s the old term had left";
  h.clock.advance(util::Millis(14'999));
  EXPECT_EQ(h.reconcile("w").action, Action::kRequeueAfter);
  EXPECT_TRUE(h.leaders().empty());
  h.clock.advance(util::Millis(1));
  (void)h.reconcile("w");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
}

TEST(ReconcilerHandoffTest, ConflictOnTheAckRereadsAndDecidesAgain) {
  Harness h;
  moveFromW0(h);
  h.markTerminating("w-0");
  terminateContainers(h, "w-0");
  h.sync();  // the caches show the terminated containers and the Lease before the agent's ack below
  ASSERT_TRUE(h.cluster->modify(kube::kLeases, kNs, "w-leader", [](Json& l) {
    l["metadata"]["annotations"][election::kHandoffAckedAnnotation] = "1";
    l["metadata"]["annotations"][election::kHandoffAckedByAnnotation] = "agent";
  }));
  EXPECT_EQ(h.reconcileStale("w").action, Action::kRequeue) << "409: re-read and decide again (on the key's backoff)";
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "agent");
  EXPECT_TRUE(h.leaders().empty());

  (void)h.reconcileStale("w");  // the re-read Lease, not yet in the cache: complete
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "agent");
}

TEST(ReconcilerHandoffTest, MoveDuringAPendingHandoffStillWaitsForTheFirstLeader) {
  Harness h;
  moveFromW0(h);
  h.setReady("w-1", false);  // the successor fails before it ever ran
  (void)h.reconcile("w");
  ASSERT_EQ(h.holder("w"), "w-2");
  const Json lease = *h.lease("w");
  EXPECT_EQ(annotation(lease, election::kHandoffFromAnnotation), "w-0") << "w-1 never ran; w-0 may still";
  EXPECT_EQ(annotation(lease, election::kHandoffFromUidAnnotation), uidOf(h, "w-0"));
  EXPECT_TRUE(h.leaders().empty());
}

TEST(ReconcilerHandoffTest, SwitchoverWaitsForTheHealthyLeaderToStop) {
  Harness h;
  h.steadyWorkload("w", 3, {{"template", agentTemplate()}});
  h.changeWorkload("w", [](Json& w) { w["metadata"]["annotations"][kAnnotationSwitchoverTo] = "w-2"; });
  (void)h.reconcile("w");
  ASSERT_EQ(h.holder("w"), "w-2");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffFromAnnotation), "w-0");
  EXPECT_TRUE(h.leaders().empty()) << "w-0 still runs until its agent sees the move";
  ASSERT_TRUE(h.cluster->modify(kube::kLeases, kNs, "w-leader", [](Json& l) {
    l["metadata"]["annotations"][election::kHandoffAckedAnnotation] = "1";
    l["metadata"]["annotations"][election::kHandoffAckedByAnnotation] = "agent";
  }));
  (void)h.reconcile("w");
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-2"});
}

TEST(ReconcilerHandoffTest, ReleasedLeaderMustStopBeforeTheNextOneLeads) {
  Harness h;
  h.steadyWorkload("w", 2, {{"template", agentTemplate()}});
  h.setReady("w-0", false);
  h.setReady("w-1", false);
  (void)h.reconcile("w");
  ASSERT_EQ(h.holder("w"), "");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffFromAnnotation), "w-0");
  EXPECT_FALSE(election::parseHandoff(*h.lease("w")).complete) << "the release keeps the token; no old ack counts";

  h.setReady("w-1", true);
  (void)h.reconcile("w");
  ASSERT_EQ(h.holder("w"), "w-1");
  EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffFromAnnotation), "w-0");
  EXPECT_TRUE(h.leaders().empty());
}

// An operator that fails at any write of the hand-off (the move, the demotion, the ack, the promotion, the status;
// before it is applied or with its answer lost) is repaired by the next reconcile from the Lease: one move, one ack,
// never a label before the hand-off is complete.
TEST(ReconcilerHandoffTest, InterruptedHandoffIsRepairedFromTheLease) {
  for (const bool after_apply : {false, true}) {
    for (int nth = 1; nth <= 7; ++nth) {
      SCOPED_TRACE("write " + std::to_string(nth) + (after_apply ? ", answer lost" : ", failed"));
      Harness h;
      h.steadyWorkload("w", 3, {{"template", agentTemplate()}});
      h.cluster->erase(kube::kPods, kNs, "w-0");
      h.cluster->failWrite(nth, 500, after_apply);
      for (int round = 0; round < 6; ++round) {
        (void)h.reconcile("w");
        const auto lease = h.lease("w");
        if (!h.leaders().empty()) {
          EXPECT_TRUE(election::parseHandoff(*lease).complete) << "labelled before the hand-off completed";
        }
        EXPECT_LE(h.leaders().size(), 1u);
      }
      EXPECT_TRUE(h.cluster->violations().empty()) << ::testing::PrintToString(h.cluster->violations());
      EXPECT_EQ(h.holder("w"), "w-1");
      EXPECT_EQ(h.transitions("w"), 1);
      EXPECT_EQ(annotation(*h.lease("w"), election::kHandoffAckedByAnnotation), "pod-gone");
      EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
      EXPECT_EQ(h.status("w")["leader"], "w-1");
    }
  }
}

TEST(ReconcilerHandoffTest, ImmediateModeLabelsAtOnceAndRecordsNoHandoff) {
  Harness h;
  moveFromW0(h, Json::object());  // the plain template: no agent
  EXPECT_EQ(h.leaders(), std::vector<std::string>{"w-1"});
  EXPECT_EQ(h.token("w-1"), "1");
  const Json lease = *h.lease("w");
  EXPECT_FALSE(annotationOf(lease, election::kHandoffFromAnnotation));
  EXPECT_TRUE(election::parseHandoff(lease).complete);
  EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  EXPECT_EQ(h.status("w")["handoff"], Json({{"mode", "Immediate"}}));
  EXPECT_EQ(h.condition("w", "ExclusiveActivation"), "False");
  EXPECT_EQ(h.condition("w", "ExclusiveActivation", "reason"), "Immediate");
}

}  // namespace
}  // namespace singleton::op
