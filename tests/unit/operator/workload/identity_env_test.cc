// The identity env the operator adds to the containers it creates (docs/handoff.md, "The agent"): SINGLETON_WORKLOAD,
// POD_NAME, POD_NAMESPACE, POD_UID in every container and init container, the template's own value kept, and the
// template hash (rollout detection) unchanged by it.
#include <gtest/gtest.h>

#include "operator/workload/workload.h"
#include "reconciler_harness.h"

namespace singleton::op {
namespace {

using testing::Harness;
using testing::kNs;
using Action = controller::ReconcileResult::Action;

Json fieldRef(const char* path) { return {{"fieldRef", {{"fieldPath", path}}}}; }

Json workloadWith(const Json& template_spec) {
  return {{"apiVersion", "singleton.dev/v1alpha1"},
          {"kind", "SingletonWorkload"},
          {"metadata", {{"name", "billing"}, {"namespace", "prod"}, {"uid", "w-uid"}}},
          {"spec", {{"replicas", 2}, {"template", {{"spec", template_spec}}}}}};
}

// The env entry named `name` of a container, or null.
Json envOf(const Json& container, const std::string& name) {
  for (const Json& entry : container.value("env", Json::array())) {
    if (entry.value("name", "") == name) return entry;
  }
  return nullptr;
}

int countOf(const Json& container, const std::string& name) {
  int n = 0;
  for (const Json& entry : container.value("env", Json::array())) n += entry.value("name", "") == name;
  return n;
}

TEST(IdentityEnvTest, InjectedIntoEveryContainerAndInitContainer) {
  const Json template_spec = {
      {"initContainers", Json::array({{{"name", "agent"}, {"image", "singleton:1"}, {"restartPolicy", "Always"}},
                                      {{"name", "migrate"}, {"image", "app:1"}}})},
      {"containers",
       Json::array(
           {{{"name", "main"}, {"image", "app:1"}, {"env", Json::array({{{"name", "ID"}, {"value", "$(POD_NAME)"}}})}},
            {{"name", "side"}, {"image", "side:1"}}})}};
  auto w = Workload::fromJson(workloadWith(template_spec));
  ASSERT_TRUE(w.ok());
  const Json pod = desiredPod(*w, 0, 1);
  for (const char* list : {"initContainers", "containers"}) {
    for (const Json& container : pod["spec"][list]) {
      SCOPED_TRACE(container["name"].get<std::string>());
      EXPECT_EQ(envOf(container, "SINGLETON_WORKLOAD"), (Json{{"name", "SINGLETON_WORKLOAD"}, {"value", "billing"}}));
      EXPECT_EQ(envOf(container, "POD_NAME"), (Json{{"name", "POD_NAME"}, {"valueFrom", fieldRef("metadata.name")}}));
      EXPECT_EQ(envOf(container, "POD_NAMESPACE"),
                (Json{{"name", "POD_NAMESPACE"}, {"valueFrom", fieldRef("metadata.namespace")}}));
      EXPECT_EQ(envOf(container, "POD_UID"), (Json{{"name", "POD_UID"}, {"valueFrom", fieldRef("metadata.uid")}}));
    }
  }
  // Prepended: the template's own entries come after, so they may refer to the identity as $(POD_NAME).
  const Json& main_env = pod["spec"]["containers"][0]["env"];
  ASSERT_EQ(main_env.size(), 5u);
  EXPECT_EQ(main_env[0]["name"], "SINGLETON_WORKLOAD");
  EXPECT_EQ(main_env[4], (Json{{"name", "ID"}, {"value", "$(POD_NAME)"}}));
  // The rest of the spec is the template's.
  EXPECT_EQ(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
  EXPECT_EQ(pod["spec"]["containers"][1]["image"], "side:1");
}

TEST(IdentityEnvTest, TheTemplatesOwnValueIsKept) {
  const Json user_env = Json::array({{{"name", "POD_NAME"}, {"value", "fixed"}},
                                     {{"name", "SINGLETON_WORKLOAD"}, {"value", "other"}},
                                     {{"name", "POD_UID"}, {"valueFrom", fieldRef("metadata.annotations['u']")}}});
  auto w = Workload::fromJson(workloadWith({{"containers", Json::array({{{"name", "main"}, {"env", user_env}}})}}));
  ASSERT_TRUE(w.ok());
  const Json container = desiredPod(*w, 1, 1)["spec"]["containers"][0];
  for (const char* name : {"SINGLETON_WORKLOAD", "POD_NAME", "POD_NAMESPACE", "POD_UID"}) {
    EXPECT_EQ(countOf(container, name), 1) << name;  // never a second entry under the same name
  }
  EXPECT_EQ(envOf(container, "POD_NAME")["value"], "fixed");
  EXPECT_EQ(envOf(container, "SINGLETON_WORKLOAD")["value"], "other");
  EXPECT_EQ(envOf(container, "POD_UID")["valueFrom"], fieldRef("metadata.annotations['u']"));
  EXPECT_EQ(envOf(container, "POD_NAMESPACE")["valueFrom"], fieldRef("metadata.namespace"));  // the only one added
  // The template's entries keep their order, after the one injected.
  EXPECT_EQ(container["env"][0]["name"], "POD_NAMESPACE");
  EXPECT_EQ(Json(std::vector<Json>(container["env"].begin() + 1, container["env"].end())), user_env);
}

TEST(IdentityEnvTest, TemplateHashIsTheHashOfTheTemplateAsWritten) {
  const Json template_spec = {{"containers", Json::array({{{"name", "main"}, {"image", "app:1"}}})}};
  auto w = Workload::fromJson(workloadWith(template_spec));
  ASSERT_TRUE(w.ok());
  const std::string hash = templateHash(Json{{"spec", template_spec}});
  EXPECT_EQ(w->template_hash, hash);
  const Json pod = desiredPod(*w, 0, 1);
  EXPECT_EQ(pod["metadata"]["annotations"][kAnnotationTemplateHash], hash);
  // desiredPod injects into its copy: the workload's template (what the hash and the Auto detection read) is intact.
  EXPECT_EQ(w->pod_template, (Json{{"spec", template_spec}}));
  EXPECT_FALSE(w->pod_template["spec"]["containers"][0].contains("env"));
}

// Pods created by an operator before the injection (no identity env, same template hash) are current: the rollout
// decision reads the hash annotation only, so upgrading the operator replaces no pod.
TEST(IdentityEnvTest, PodsWithoutTheInjectedEnvAreNotRolledOut) {
  Harness h;
  h.steadyWorkload("w", 3);
  for (const std::string name : {"w-0", "w-1", "w-2"}) {
    ASSERT_EQ(countOf(h.pod(name)->at("spec")["containers"][0], "POD_UID"), 1) << name;
    ASSERT_TRUE(h.cluster->modify(kube::kPods, kNs, name, [](Json& p) {
      p["spec"]["containers"][0].erase("env");  // as an earlier operator created it
    }));
  }
  const std::size_t start = h.cluster->writes().size();
  ASSERT_GE(h.converge("w"), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.reconcile("w").action, Action::kForget);
  const auto writes = h.cluster->writes();
  for (std::size_t i = start; i < writes.size(); ++i) {
    EXPECT_NE(writes[i].method, "DELETE") << writes[i].path;
    EXPECT_EQ(writes[i].path.find("/leases/"), std::string::npos) << writes[i].method << " " << writes[i].path;
  }
  EXPECT_EQ(h.holder("w"), "w-0");
  EXPECT_EQ(h.transitions("w"), 0);
  EXPECT_EQ(h.condition("w", "Progressing"), "False");
}

}  // namespace
}  // namespace singleton::op
