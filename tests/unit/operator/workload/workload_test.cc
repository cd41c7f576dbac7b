#include "operator/workload/workload.h"

#include <gtest/gtest.h>

#include "operator/workload/informers.h"
#include "util/time_format.h"

namespace singleton::op {
namespace {

Json workloadJson() {
  return Json::parse(R"({
    "apiVersion": "singleton.dev/v1alpha1", "kind": "SingletonWorkload",
    "metadata": {"name": "billing", "namespace": "prod", "uid": "w-uid", "generation": 4, "resourceVersion": "7",
                 "annotations": {"singleton.dev/switchover-to": "billing-1"}},
    "spec": {"replicas": 3, "leaseDurationSeconds": 20,
             "template": {"metadata": {"labels": {"app": "billing", "singleton.dev/role": "leader"},
                                       "annotations": {"team": "payments", "singleton.dev/fencing-token": "9"}},
                          "spec": {"containers": [{"name": "main", "image": "billing:1"}]}},
             "service": {"ports": [{"port": 80}]}},
    "status": {"leader": "billing-0"}
  })");
}

Json pod(const std::string& name, bool ready, const std::string& phase = "Running") {
  Json p = {{"metadata", {{"name", name}, {"namespace", "prod"}, {"uid", name + "-uid"}}},
            {"status", {{"phase", phase}, {"conditions", Json::array()}}}};
  p["status"]["conditions"].push_back(
      {{"type", "Ready"}, {"status", ready ? "True" : "False"}, {"lastTransitionTime", "2026-01-02T03:04:05Z"}});
  return p;
}

TEST(WorkloadTest, ReadsSpecMetadataAndAnnotation) {
  auto w = Workload::fromJson(workloadJson());
  ASSERT_TRUE(w.ok()) << w.error().describe();
  EXPECT_EQ(w->key(), "prod/billing");
  EXPECT_EQ(w->uid, "w-uid");
  EXPECT_EQ(w->generation, 4);
  EXPECT_EQ(w->replicas, 3);
  EXPECT_EQ(w->lease_duration_seconds, 20);
  EXPECT_EQ(w->switchover_to, "billing-1");
  EXPECT_TRUE(w->service.has_value());
  EXPECT_FALSE(w->deleting);
  EXPECT_EQ(w->status["leader"], "billing-0");
  EXPECT_EQ(w->podName(2), "billing-2");
  EXPECT_EQ(w->leaseName(), "billing-leader");
  EXPECT_EQ(w->template_hash, templateHash(workloadJson()["spec"]["template"]));
}

TEST(WorkloadTest, DefaultsAndRefusals) {
  Json object = workloadJson();
  object["spec"].erase("replicas");
  object["spec"].erase("leaseDurationSeconds");
  object["spec"].erase("service");
  auto w = Workload::fromJson(object);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->replicas, kDefaultReplicas);
  EXPECT_EQ(w->lease_duration_seconds, kDefaultLeaseDurationSeconds);
  EXPECT_FALSE(w->service.has_value());

  object["spec"].erase("template");
  EXPECT_FALSE(Workload::fromJson(object).ok());
  EXPECT_FALSE(Workload::fromJson(Json::object()).ok());
}

TEST(WorkloadTest, OwnerReferenceIsAControllerReference) {
  auto w = Workload::fromJson(workloadJson());
  ASSERT_TRUE(w.ok());
  const Json ref = w->ownerReference();
  EXPECT_EQ(ref["apiVersion"], "singleton.dev/v1alpha1");
  EXPECT_EQ(ref["kind"], "SingletonWorkload");
  EXPECT_EQ(ref["name"], "billing");
  EXPECT_EQ(ref["uid"], "w-uid");
  EXPECT_EQ(ref["controller"], true);
  EXPECT_EQ(ref["blockOwnerDeletion"], true);
  Json owned = {{"metadata", {{"ownerReferences", Json::array({ref})}}}};
  EXPECT_TRUE(isControlledBy(owned, "w-uid"));
  EXPECT_FALSE(isControlledBy(owned, "other"));
  owned["metadata"]["ownerReferences"][0]["controller"] = false;
  EXPECT_FALSE(isControlledBy(owned, "w-uid"));
}

TEST(WorkloadTest, TemplateHashIsStableAndSensitive) {
  const Json a = Json::parse(
      R"({"spec": {"containers": [{"name": "m", "image": "x:1"}]}, "metadata": {"labels": {"a": "1", "b": "2"}}})");
  const Json b = Json::parse(
      R"({"metadata": {"labels": {"b": "2", "a": "1"}}, "spec": {"containers": [{"image": "x:1", "name": "m"}]}})");
  const Json c = Json::parse(
      R"({"metadata": {"labels": {"b": "2", "a": "1"}}, "spec": {"containers": [{"image": "x:2", "name": "m"}]}})");
  EXPECT_EQ(templateHash(a), templateHash(b));  // key order does not matter
  EXPECT_NE(templateHash(a), templateHash(c));
  EXPECT_EQ(templateHash(a).size(), 16u);
  // FNV-1a 64 of "{}".
  EXPECT_EQ(templateHash(Json::object()), "08f44b07b5901a25");
}

TEST(WorkloadTest, DesiredPodCarriesOurLabelsAnnotationsAndOwner) {
  auto w = Workload::fromJson(workloadJson());
  ASSERT_TRUE(w.ok());
  const Json p = desiredPod(*w, 1, 7);
  EXPECT_EQ(p["metadata"]["name"], "billing-1");
  EXPECT_EQ(p["metadata"]["namespace"], "prod");
  EXPECT_EQ(p["metadata"]["labels"]["app"], "billing");
  EXPECT_EQ(p["metadata"]["labels"][kLabelWorkload], "billing");
  // Reserved keys from the template never reach the pod: a pod is born a standby, without a token.
  EXPECT_EQ(p["metadata"]["labels"][kLabelRole], kRoleStandby);
  EXPECT_EQ(p["metadata"]["annotations"]["team"], "payments");
  EXPECT_FALSE(p["metadata"]["annotations"].contains(kAnnotationFencingToken));
  EXPECT_EQ(p["metadata"]["annotations"][kAnnotationTemplateHash], w->template_hash);
  EXPECT_EQ(p["metadata"]["annotations"][kAnnotationOperatorTerm], "7");  // its creator's stamp (the label fence)
  EXPECT_TRUE(isControlledBy(p, "w-uid"));
  EXPECT_EQ(p["spec"]["containers"][0]["image"], "billing:1");
}

TEST(PodHelpersTest, ReadinessPhaseAndTermination) {
  EXPECT_TRUE(isReady(pod("a", true)));
  EXPECT_FALSE(isReady(pod("a", false)));
  Json no_conditions = pod("a", true);
  no_conditions["status"].erase("conditions");
  EXPECT_FALSE(isReady(no_conditions));
  EXPECT_TRUE(isAvailable(pod("a", true)));
  EXPECT_TRUE(hasExited(pod("a", true, "Failed")));
  EXPECT_TRUE(hasExited(pod("a", true, "Succeeded")));
  EXPECT_FALSE(isAvailable(pod("a", true, "Failed")));

  Json terminating = pod("a", true);
  terminating["metadata"]["deletionTimestamp"] = "2026-01-02T03:05:00Z";
  terminating["metadata"]["deletionGracePeriodSeconds"] = 30;
  EXPECT_TRUE(isTerminating(terminating));
  EXPECT_FALSE(isAvailable(terminating));
  // The deletion was requested grace-period seconds before deletionTimestamp.
  EXPECT_EQ(util::formatTime(*unhealthySince(terminating)), "2026-01-02T03:04:30Z");
  EXPECT_EQ(util::formatTime(*unhealthySince(pod("a", false))), "2026-01-02T03:04:05Z");
  EXPECT_FALSE(unhealthySince(pod("a", true)).has_value());
}

TEST(PodHelpersTest, Ordinals) {
  EXPECT_EQ(ordinalOf("web-0", "web"), 0);
  EXPECT_EQ(ordinalOf("web-12", "web"), 12);
  EXPECT_EQ(ordinalOf("web-a-3", "web-a"), 3);
  EXPECT_FALSE(ordinalOf("web-01", "web").has_value());
  EXPECT_FALSE(ordinalOf("web-", "web").has_value());
  EXPECT_FALSE(ordinalOf("web-x", "web").has_value());
  EXPECT_FALSE(ordinalOf("webb-1", "web").has_value());
  EXPECT_FALSE(ordinalOf("web-a-3", "web").has_value());
}

TEST(PodHelpersTest, PointersEscapeSlashes) {
  EXPECT_EQ(labelPointer("singleton.dev/role"), "/metadata/labels/singleton.dev~1role");
  EXPECT_EQ(annotationPointer("a~b/c"), "/metadata/annotations/a~0b~1c");
}

TEST(PodHelpersTest, StripPodKeepsWhatTheReconcilerReads) {
  Json p = pod("a", true);
  p["metadata"]["managedFields"] = Json::array({{{"manager", "kubelet"}}});
  p["metadata"]["labels"] = {{kLabelWorkload, "w"}};
  p["spec"] = {{"containers", Json::array({{{"name", "m"}}})}};
  p["status"]["podIP"] = "10.0.0.1";
  p["status"]["conditions"].push_back({{"type", "PodScheduled"}, {"status", "True"}});
  stripPod(p);
  EXPECT_FALSE(p["metadata"].contains("managedFields"));
  EXPECT_FALSE(p.contains("spec"));
  EXPECT_FALSE(p["status"].contains("podIP"));
  EXPECT_EQ(p["status"]["conditions"].size(), 1u);
  EXPECT_TRUE(isReady(p));
  EXPECT_EQ(p["status"]["phase"], "Running");
  EXPECT_EQ(workloadKeyOf(p), "prod/w");
}

TEST(PodHelpersTest, StripPodKeepsEachContainersStateOnly) {
  Json p = pod("a", true);
  p["status"]["containerStatuses"] = Json::array(
      {{{"name", "a"}, {"image", "x"}, {"state", {{"terminated", {{"exitCode", 0}, {"reason", "Completed"}}}}}},
       {{"name", "b"}, {"state", {{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}}}});
  EXPECT_FALSE(containersTerminated(p));
  stripPod(p);
  EXPECT_EQ(p["status"]["containerStatuses"],
            Json::parse(R"([{"name":"a","state":{"terminated":{}}},{"name":"b","state":{"running":{}}}])"));
  EXPECT_FALSE(containersTerminated(p));
  p["status"]["containerStatuses"][1]["state"] = {{"terminated", Json::object()}};
  EXPECT_TRUE(containersTerminated(p));
  p["status"]["containerStatuses"] = Json::array();
  EXPECT_FALSE(containersTerminated(p)) << "no container listed: nothing known";
}

}  // namespace
}  // namespace singleton::op
