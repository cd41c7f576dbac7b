#include "pod_status.h"

#include <gtest/gtest.h>

#include "util/time_format.h"

namespace singleton::sim {
namespace {

const util::WallTime kNow = util::WallTime(std::chrono::seconds(1'700'000'000));
const std::string kNowText = util::formatTime(kNow);

Json boundPod() {
  return Json::parse(R"({
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
    "spec": {"nodeName": "sim-node-0", "containers": [{"name": "app", "image": "busybox:1"}]},
    "status": {"phase": "Pending", "conditions": [
      {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-01-01T00:00:00Z"}]}
  })");
}

PodFacts facts() {
  PodFacts f;
  f.now = kNow;
  f.pod_ip = "10.244.0.1";
  return f;
}

const Json& conditionOf(const Json& status, const std::string& type) {
  const Json* found = findByType(status["conditions"], type);
  EXPECT_NE(found, nullptr) << type;
  static const Json none;
  return found != nullptr ? *found : none;
}

// The pod as the apiserver holds it after our write.
Json applied(Json pod, const PodPlan& plan) {
  pod["status"] = plan.status;
  return pod;
}

TEST(PlanPod, BoundPodBecomesRunningAndReady) {
  const PodPlan plan = planPod(boundPod(), facts());
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  const Json& s = plan.status;
  EXPECT_EQ(s["phase"], "Running");
  EXPECT_EQ(s["podIP"], "10.244.0.1");
  EXPECT_EQ(s["podIPs"], Json::parse(R"([{"ip": "10.244.0.1"}])"));
  EXPECT_EQ(s["hostIP"], "127.0.0.1");
  EXPECT_EQ(s["startTime"], kNowText);
  for (const char* type : {"PodScheduled", "Initialized", "ContainersReady", "Ready"}) {
    EXPECT_EQ(conditionOf(s, type)["status"], "True") << type;
  }
  // An unchanged condition keeps its transition time.
  EXPECT_EQ(conditionOf(s, "PodScheduled")["lastTransitionTime"], "2023-01-01T00:00:00Z");
  EXPECT_EQ(conditionOf(s, "Ready")["lastTransitionTime"], kNowText);
  ASSERT_EQ(s["containerStatuses"].size(), 1u);
  const Json& c = s["containerStatuses"][0];
  EXPECT_EQ(c["name"], "app");
  EXPECT_EQ(c["ready"], true);
  EXPECT_EQ(c["started"], true);
  EXPECT_EQ(c["image"], "busybox:1");
  EXPECT_EQ(c["imageID"], "sim://busybox:1");
  EXPECT_EQ(c["containerID"], "sim://u-1/app");
  EXPECT_EQ(c["state"]["running"]["startedAt"], kNowText);
  EXPECT_FALSE(s.contains("initContainerStatuses"));
}

TEST(PlanPod, PodAlreadyInDesiredStateNeedsNoWrite) {
  const Json pod = applied(boundPod(), planPod(boundPod(), facts()));
  PodFacts later = facts();
  later.now += std::chrono::minutes(5);
  later.pod_ip = "10.244.9.9";  // a pod that has an IP keeps it
  EXPECT_EQ(planPod(pod, later).action, PodPlan::Action::kNothing);
}

TEST(PlanPod, ReadyAnnotationFalseFailsReadinessAndTrueRestoresIt) {
  Json pod = applied(boundPod(), planPod(boundPod(), facts()));
  pod["metadata"]["annotations"][kReadyAnnotation] = "false";
  PodFacts later = facts();
  later.now += std::chrono::seconds(30);
  const PodPlan failed = planPod(pod, later);
  ASSERT_EQ(failed.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(failed.status["phase"], "Running");
  for (const char* type : {"Ready", "ContainersReady"}) {
    EXPECT_EQ(conditionOf(failed.status, type)["status"], "False");
    EXPECT_EQ(conditionOf(failed.status, type)["reason"], kSimulatedFailure);
    EXPECT_EQ(conditionOf(failed.status, type)["lastTransitionTime"], util::formatTime(later.now));
  }
  EXPECT_EQ(conditionOf(failed.status, "Initialized")["status"], "True");
  EXPECT_EQ(failed.status["containerStatuses"][0]["ready"], false);
  EXPECT_EQ(failed.status["containerStatuses"][0]["started"], true);
  // The container keeps running since it started.
  EXPECT_EQ(failed.status["containerStatuses"][0]["state"]["running"]["startedAt"], kNowText);
  EXPECT_EQ(failed.status["podIP"], "10.244.0.1");

  pod = applied(pod, failed);
  EXPECT_EQ(planPod(pod, later).action, PodPlan::Action::kNothing);
  pod["metadata"]["annotations"][kReadyAnnotation] = "true";
  const PodPlan back = planPod(pod, later);
  ASSERT_EQ(back.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(conditionOf(back.status, "Ready")["status"], "True");
  EXPECT_FALSE(conditionOf(back.status, "Ready").contains("reason"));

  pod["metadata"]["annotations"].erase(kReadyAnnotation);
  EXPECT_EQ(planPod(pod, later).action, PodPlan::Action::kWriteStatus);
}

TEST(PlanPod, ReadyFalseSetBySomeoneElseIsRepaired) {
  // The node-lifecycle controller marks pods not ready when their node is lost; once it is back, we repair them.
  Json pod = applied(boundPod(), planPod(boundPod(), facts()));
  for (Json& c : pod["status"]["conditions"]) {
    if (c["type"] == "Ready") c["status"] = "False";
  }
  const PodPlan plan = planPod(pod, facts());
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(conditionOf(plan.status, "Ready")["status"], "True");
}

TEST(PlanPod, PhaseAnnotationFailsThePodForGood) {
  Json pod = applied(boundPod(), planPod(boundPod(), facts()));
  pod["metadata"]["annotations"][kPhaseAnnotation] = "Failed";
  const PodPlan plan = planPod(pod, facts());
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["phase"], "Failed");
  EXPECT_EQ(conditionOf(plan.status, "Ready")["status"], "False");
  const Json& c = plan.status["containerStatuses"][0];
  EXPECT_EQ(c["ready"], false);
  EXPECT_EQ(c["state"]["terminated"]["exitCode"], 1);
  EXPECT_EQ(c["state"]["terminated"]["startedAt"], kNowText);
  // Terminal: even without the annotation nothing changes any more.
  pod = applied(pod, plan);
  pod["metadata"]["annotations"].erase(kPhaseAnnotation);
  EXPECT_EQ(planPod(pod, facts()).action, PodPlan::Action::kNothing);
}

TEST(PlanPod, PhaseAnnotationSucceeded) {
  Json pod = boundPod();
  pod["metadata"]["annotations"][kPhaseAnnotation] = "Succeeded";
  const PodPlan plan = planPod(pod, facts());
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["phase"], "Succeeded");
  EXPECT_EQ(plan.status["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0);
  EXPECT_EQ(conditionOf(plan.status, "Ready")["reason"], "PodCompleted");
}

TEST(PlanPod, DeletionTimestampMeansDelete) {
  Json pod = applied(boundPod(), planPod(boundPod(), facts()));
  pod["metadata"]["deletionTimestamp"] = kNowText;
  EXPECT_EQ(planPod(pod, facts()).action, PodPlan::Action::kDelete);
  pod["status"]["phase"] = "Failed";  // also when terminal
  EXPECT_EQ(planPod(pod, facts()).action, PodPlan::Action::kDelete);
}

TEST(PlanPod, ReadyDelayStartsThePodNotReady) {
  PodFacts waiting = facts();
  waiting.ready_delay_elapsed = false;
  const PodPlan plan = planPod(boundPod(), waiting);
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["phase"], "Running");
  EXPECT_EQ(conditionOf(plan.status, "Ready")["status"], "False");
  EXPECT_EQ(conditionOf(plan.status, "Ready")["reason"], "ContainersNotReady");
  const Json pod = applied(boundPod(), plan);
  EXPECT_EQ(planPod(pod, waiting).action, PodPlan::Action::kNothing);
  EXPECT_EQ(planPod(pod, facts()).action, PodPlan::Action::kWriteStatus);
}

TEST(PlanPod, InitContainersAndHostNetwork) {
  Json pod = boundPod();
  pod["spec"]["initContainers"] = Json::parse(R"([{"name": "init", "image": "busybox:1"}])");
  pod["spec"]["hostNetwork"] = true;
  PodFacts f = facts();
  f.pod_ip = "";
  const PodPlan plan = planPod(pod, f);
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["podIP"], "127.0.0.1");
  const Json& init = plan.status["initContainerStatuses"][0];
  EXPECT_EQ(init["state"]["terminated"]["reason"], "Completed");
  EXPECT_EQ(init["ready"], true);
  EXPECT_EQ(planPod(applied(pod, plan), f).action, PodPlan::Action::kNothing);
}

TEST(PlanPod, GarbageNeverThrows) {
  for (const char* text : {"null", "[]", "42", R"({"metadata": 3})", R"({"spec": {"containers": 5}})",
                           R"({"spec": {"containers": [1, {"name": 2}, {"name": "x"}]}, "status": []})",
                           R"({"metadata": {"annotations": {"sim.singleton.dev/ready": 1}}})"}) {
    EXPECT_NO_THROW((void)planPod(Json::parse(text), facts())) << text;
  }
}

}  // namespace
}  // namespace singleton::sim
