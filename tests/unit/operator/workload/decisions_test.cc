// The reconciler's pure decisions (operator/workload/decisions.h) on plain objects: no fake API, no clock.
#include "operator/workload/decisions.h"

#include <gtest/gtest.h>

namespace singleton::op {
namespace {

class DecisionsTest : public ::testing::Test {
 protected:
  DecisionsTest() {
    workload.ns = "prod";
    workload.name = "app";
    workload.uid = "w-uid";
    workload.replicas = 3;
    workload.template_hash = "h1";
  }

  // A Ready pod of the workload, standby, running template `hash`.
  Json& addPod(int ordinal, bool ready = true, const std::string& hash = "h1") {
    const std::string name = workload.podName(ordinal);
    Json pod = {{"metadata",
                 {{"name", name},
                  {"uid", name + "-uid"},
                  {"labels", {{kLabelWorkload, "app"}, {kLabelRole, kRoleStandby}}},
                  {"annotations", {{kAnnotationTemplateHash, hash}}},
                  {"ownerReferences", Json::array({{{"uid", "w-uid"}, {"controller", true}}})}}},
                {"status",
                 {{"phase", "Running"},
                  {"conditions", Json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}})}}}};
    return pods[name] = std::move(pod);
  }
  void lead(int ordinal, long long token) {
    kube::Lease l;
    l.name = "app-leader";
    l.ns = "prod";
    l.spec.holder_identity = workload.podName(ordinal);
    l.spec.lease_transitions = token;
    // The Lease as the API holds it (raw), which the hand-off reads, and as parsed (spec).
    l.raw = {{"metadata", {{"annotations", {{kAnnotationLeaderUid, workload.podName(ordinal) + "-uid"}}}}},
             {"spec", {{"holderIdentity", workload.podName(ordinal)}, {"leaseTransitions", token}}}};
    lease = std::move(l);
  }
  static void label(Json& pod, long long token) {
    pod["metadata"]["labels"][kLabelRole] = kRoleLeader;
    pod["metadata"]["annotations"][kAnnotationFencingToken] = std::to_string(token);
  }
  WorkloadView view() const { return {workload, pods, lease}; }

  Workload workload;
  std::map<std::string, Json> pods;
  std::optional<kube::Lease> lease;
};

TEST_F(DecisionsTest, HolderHealthNamesWhatIsWrongWithTheHolder) {
  EXPECT_EQ(holderHealth(view()), Health::kNone);
  lead(0, 1);
  EXPECT_EQ(holderHealth(view()), Health::kDeleted);
  Json& holder = addPod(0);
  EXPECT_EQ(holderHealth(view()), Health::kHealthy);
  holder["metadata"]["uid"] = "another";
  EXPECT_EQ(holderHealth(view()), Health::kReplaced);
  holder["metadata"]["uid"] = "app-0-uid";
  holder["status"]["conditions"][0]["status"] = "False";
  EXPECT_EQ(holderHealth(view()), Health::kNotReady);
  holder["status"]["phase"] = "Failed";
  EXPECT_EQ(holderHealth(view()), Health::kExited);
  workload.replicas = 3;
  addPod(3);
  lead(3, 2);
  EXPECT_EQ(holderHealth(view()), Health::kScaledDown);
  EXPECT_STREQ(failoverReason(Health::kScaledDown), "scaledown");
  EXPECT_STREQ(describe(Health::kNotReady), "is not Ready");
}

TEST_F(DecisionsTest, SuccessorIsTheLowestReadyStandbyOnTheCurrentTemplate) {
  addPod(0);
  addPod(1, true, "old");
  addPod(2);
  EXPECT_EQ(chooseSuccessor(view(), "", false), "app-0");
  EXPECT_EQ(chooseSuccessor(view(), "app-0-uid", false), "app-2");  // current wins over a lower ordinal
  pods.erase("app-2");
  EXPECT_EQ(chooseSuccessor(view(), "app-0-uid", false), "app-1");
  EXPECT_EQ(chooseSuccessor(view(), "app-0-uid", /*current_only=*/true), "");
  addPod(2, /*ready=*/false);
  EXPECT_EQ(chooseSuccessor(view(), "app-0-uid", true), "");
}

TEST_F(DecisionsTest, RolloutMovesTheLeaderOnlyOnceEveryStandbyIsReplaced) {
  addPod(0, true, "old");
  addPod(1, true, "old");
  addPod(2);
  lead(0, 1);
  EXPECT_FALSE(rolloutMovesLeader(view()));
  addPod(1);
  EXPECT_TRUE(rolloutMovesLeader(view()));
  addPod(0);
  EXPECT_FALSE(rolloutMovesLeader(view()));
}

TEST_F(DecisionsTest, HighestTokenSeenTakesEverySource) {
  EXPECT_EQ(highestTokenSeen(view(), -1), -1);
  lead(0, 4);
  EXPECT_EQ(highestTokenSeen(view(), 2), 4);
  EXPECT_EQ(highestTokenSeen(view(), 6), 6);
  workload.status["fencingToken"] = 7;
  EXPECT_EQ(highestTokenSeen(view(), 6), 7);
  label(addPod(1), 9);
  EXPECT_EQ(highestTokenSeen(view(), 6), 9);
}

TEST_F(DecisionsTest, SwitchoverIsHonouredOnlyForAReadyReplica) {
  addPod(0);
  addPod(1, /*ready=*/false);
  lead(0, 1);
  EXPECT_FALSE(decideSwitchover(view(), true).remove_request);  // no request
  workload.switchover_to = "app-0";
  EXPECT_TRUE(decideSwitchover(view(), true).already_leader);
  workload.switchover_to = "app-1";
  EXPECT_EQ(decideSwitchover(view(), true).rejection, "app-1 is not Ready");
  workload.switchover_to = "app-7";
  EXPECT_EQ(decideSwitchover(view(), true).rejection, "no pod app-7 belongs to this workload");
  addPod(2);
  workload.switchover_to = "app-2";
  const SwitchoverDecision accepted = decideSwitchover(view(), true);
  EXPECT_EQ(accepted.successor, "app-2");
  EXPECT_FALSE(accepted.remove_request);  // only once the Lease has moved
}

TEST_F(DecisionsTest, LabelPlanDemotesEveryOtherLeaderBeforePromotingTheHolder) {
  addPod(0);
  label(addPod(1), 1);
  lead(0, 2);
  LabelPlan plan = planLabels(view(), false, "");
  EXPECT_EQ(plan.target, "app-0");
  EXPECT_TRUE(plan.promote);
  EXPECT_EQ(plan.demote, std::vector<std::string>{"app-1"});
  // WaitForStop with the hand-off pending: the holder waits unlabelled (a standby already, so nothing to demote).
  plan = planLabels(view(), /*hold_successor=*/true, "");
  EXPECT_EQ(plan.target, "");
  EXPECT_EQ(plan.demote, std::vector<std::string>{"app-1"});
  label(pods["app-0"], 2);
  pods["app-1"]["metadata"]["labels"][kLabelRole] = kRoleStandby;
  pods["app-1"]["metadata"]["annotations"].erase(kAnnotationFencingToken);
  plan = planLabels(view(), false, "");
  EXPECT_FALSE(plan.promote);
  EXPECT_TRUE(plan.demote.empty());
  EXPECT_EQ(planLabels(view(), false, "app-1").demote, std::vector<std::string>{"app-1"});
  EXPECT_EQ(otherLeaderLabelled(view(), "app-1"), std::vector<std::string>{"app-0"});
  EXPECT_TRUE(labelledLeader(pods["app-0"], "app-0-uid", 2));
  EXPECT_FALSE(labelledLeader(pods["app-0"], "app-0-uid", 3));
}

TEST_F(DecisionsTest, PodsAreCreatedForMissingOrdinalsAndScaledDownFromTheTop) {
  addPod(1);
  EXPECT_EQ(missingOrdinals(view()), (std::vector<int>{0, 2}));
  addPod(0);
  addPod(2);
  addPod(3);
  addPod(4);
  addPod(5)["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";  // going already
  lead(4, 1);                                                           // the leader goes last
  EXPECT_EQ(scaleDownOrder(view()), std::vector<std::string>{"app-3"});
}

TEST_F(DecisionsTest, RolloutReplacesOneOutdatedStandbyAtATime) {
  addPod(0, true, "old");
  addPod(1, true, "old");
  addPod(2, true, "old");
  lead(0, 1);
  auto step = nextRolloutStep(view());
  ASSERT_TRUE(step);
  EXPECT_EQ(step->pod, "app-2");
  EXPECT_EQ(step->why, "rolling update to template h1");
  addPod(2, /*ready=*/false);  // its replacement is starting
  EXPECT_FALSE(nextRolloutStep(view()));
  pods.erase("app-2");  // or still missing
  EXPECT_FALSE(nextRolloutStep(view()));

  pods.clear();
  workload.replicas = 1;
  addPod(0, true, "old");
  step = nextRolloutStep(view());
  ASSERT_TRUE(step);
  EXPECT_EQ(step->pod, "app-0");
  EXPECT_EQ(step->why, "rolling update to template h1 (single replica)");
}

TEST_F(DecisionsTest, HandoffNamesThePodThatMustStopFirst) {
  lead(0, 1);  // complete: no handoff-from annotation
  kube::Lease next = *lease;
  recordHandoff(lease, /*wait_for_stop=*/true, "app-1-uid", next);
  EXPECT_EQ(next.raw["metadata"]["annotations"][election::kHandoffFromAnnotation], "app-0");
  EXPECT_EQ(next.raw["metadata"]["annotations"][election::kHandoffFromUidAnnotation], "app-0-uid");
  // The same incarnation keeps leading: nobody to wait for.
  recordHandoff(lease, true, "app-0-uid", next);
  EXPECT_EQ(next.raw["metadata"]["annotations"][election::kHandoffFromAnnotation], "");
  // Immediate: no hand-off recorded at all.
  recordHandoff(lease, false, "app-1-uid", next);
  EXPECT_FALSE(next.raw["metadata"]["annotations"].contains(election::kHandoffFromAnnotation));
}

TEST_F(DecisionsTest, StopEvidenceNeedsTheIncarnationGoneOrStoppedForGood) {
  Json& pod = addPod(0);
  EXPECT_EQ(stopEvidence(pod, "other-uid"), election::AckedBy::kPodGone);
  EXPECT_EQ(stopEvidence(pod, "app-0-uid"), std::nullopt);
  pod["status"]["phase"] = "Succeeded";
  EXPECT_EQ(stopEvidence(pod, "app-0-uid"), election::AckedBy::kContainersTerminated);
  election::HandoffView handoff;
  handoff.holder = "app-1";
  handoff.from = "app-0";
  handoff.token = 3;
  EXPECT_EQ(handoffCompleteMessage(handoff, election::AckedBy::kLeaseExpired),
            "hand-off to app-1 (fencing token 3) complete: app-0 outlived its lease");
}

TEST_F(DecisionsTest, StatusConditionsFollowTheFindings) {
  addPod(0);
  addPod(1);
  addPod(2);
  lead(0, 1);
  Findings findings;
  findings.leader = "app-0";
  StatusPlan plan = desiredStatus(view(), findings, false, "2026-01-01T00:00:00Z");
  EXPECT_EQ(plan.status["leader"], "app-0");
  EXPECT_EQ(plan.status["fencingToken"], 1);
  EXPECT_EQ(plan.status["readySummary"], "3/3");
  EXPECT_EQ(plan.status["conditions"][0]["reason"], "LeaderReady");
  EXPECT_EQ(plan.status["conditions"][2]["reason"], "Immediate");
  EXPECT_EQ(plan.status["conditions"][3]["reason"], "UpToDate");
  EXPECT_FALSE(plan.leader_lost);

  // The workload showed that leader; now nobody leads.
  workload.status = plan.status;
  findings.leader.clear();
  findings.problem("PodCreateFailed", "quota");
  plan = desiredStatus(view(), findings, false, "2026-01-01T00:00:01Z");
  EXPECT_FALSE(plan.status.contains("leader"));
  EXPECT_EQ(plan.status["conditions"][0]["reason"], "PodCreateFailed");
  EXPECT_EQ(plan.status["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:01Z");
  EXPECT_EQ(plan.status["conditions"][2]["lastTransitionTime"], "2026-01-01T00:00:00Z");  // unchanged
  EXPECT_TRUE(plan.leader_lost);
}

TEST_F(DecisionsTest, StatusPatchNullsWhatIsNoLongerSetAndDeferralKeepsLeadershipNews) {
  const Json current = {
      {"leader", "app-0"}, {"fencingToken", 1}, {"handoff", {{"mode", "Auto"}, {"pendingFrom", "x"}}}};
  const Json desired = {{"fencingToken", 1}, {"handoff", {{"mode", "Auto"}}}};
  EXPECT_EQ(statusPatch(current, current), std::nullopt);
  const auto patch = statusPatch(desired, current);
  ASSERT_TRUE(patch);
  EXPECT_TRUE((*patch)["leader"].is_null());
  EXPECT_TRUE((*patch)["handoff"]["pendingFrom"].is_null());

  Findings findings;
  EXPECT_FALSE(deferStatus(findings, current, current));
  findings.created_pods = true;
  EXPECT_TRUE(deferStatus(findings, current, current));
  EXPECT_FALSE(deferStatus(findings, desired, current));  // the leader changed: written at once
}

TEST_F(DecisionsTest, ServiceUpdateKeepsAllocatedNodePorts) {
  workload.service = Json{{"type", "NodePort"}, {"ports", Json::array({{{"port", 80}}})}};
  Json service = desiredService(workload);
  EXPECT_EQ(service["spec"]["selector"][kLabelRole], kRoleLeader);
  EXPECT_EQ(serviceUpdate(service, workload), std::nullopt);
  service["spec"]["ports"][0]["nodePort"] = 30080;
  service["spec"]["selector"] = Json::object();
  const auto updated = serviceUpdate(service, workload);
  ASSERT_TRUE(updated);
  EXPECT_EQ((*updated)["spec"]["ports"][0]["nodePort"], 30080);
  EXPECT_EQ((*updated)["spec"]["selector"][kLabelWorkload], "app");
}

}  // namespace
}  // namespace singleton::op
