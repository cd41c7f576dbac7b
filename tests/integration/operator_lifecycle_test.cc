// A SingletonWorkload's life on a real control plane (3 operator replicas, simulated kubelet): template rollout with
// exactly one change of leader, scaling down with the leader last, the leader-only Service and its endpoints, and
// garbage collection of everything on deletion.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;
constexpr auto kFailover = 30s;

const kube::Resource kEndpoints{"", "v1", "endpoints", true};
const kube::Resource kWorkloads{"singleton.dev", "v1alpha1", "singletonworkloads", true};

long long tokenOf(const LeaderAuditor::PodView& pod) { return std::stoll(pod.token.value_or("-1")); }

bool hasEvent(OperatorHarness& h, const std::string& ns, const std::string& workload, const std::string& reason) {
  for (const Json& e : h.events(ns, workload, "SingletonWorkload")) {
    if (e.value("reason", "") == reason) return true;
  }
  return false;
}

class OperatorLifecycleTest : public OperatorTest {};

TEST_F(OperatorLifecycleTest, TemplateChangeRollsEveryPodWithExactlyOneFailover) {
  createWorkload(workloadObject("roll", 3));
  auto leader = waitForSteadyLeader("roll", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("roll");
  const std::string old_hash = leader->template_hash;
  ASSERT_FALSE(old_hash.empty());
  const auto before = auditor().leaderships("roll");

  // A new container command: every pod must be replaced.
  auto patched = harness().client().jsonPatch(kWorkloads, ns(), "roll",
                                              Json::array({{{"op", "replace"},
                                                            {"path", "/spec/template/spec/containers/0/command"},
                                                            {"value", {"sleep", "2000000"}}}}));
  ASSERT_TRUE(patched.ok()) << patched.error().describe();

  // Done when three Ready, non-terminating pods carry the new hash and the leader is steady on one of them.
  std::string new_hash;
  ASSERT_TRUE(auditor().waitUntil(
      [&](const LeaderAuditor::State& s) {
        auto it = s.workloads.find("roll");
        if (it == s.workloads.end() || it->second.pods.size() != 3) return false;
        std::set<std::string> hashes;
        for (const auto& [name, p] : it->second.pods) {
          if (!p.ready || p.terminating) return false;
          hashes.insert(p.template_hash);
        }
        if (hashes.size() != 1 || *hashes.begin() == old_hash) return false;
        new_hash = *hashes.begin();
        return it->second.leaders.size() == 1;
      },
      120s))
      << auditor().describe("roll");
  auto steady = waitForSteadyLeader("roll", kSteady);
  ASSERT_TRUE(steady) << auditor().describe("roll");
  EXPECT_EQ(steady->template_hash, new_hash);
  for (const Json& p : listPods("roll")) {
    EXPECT_EQ(p["spec"]["containers"][0]["command"], Json({"sleep", "2000000"})) << p["metadata"]["name"];
  }
  std::this_thread::sleep_for(2s);
  const auto after = auditor().leaderships("roll");
  EXPECT_EQ(after.size(), before.size() + 1) << "one rollout, one change of leader\n" << auditor().describe("roll");
  EXPECT_EQ(tokenOf(*steady), tokenOf(*leader) + 1);
  auto ws = waitForStatus(
      "roll",
      [](const Json& w) {
        return conditionOf(w, "Progressing") == "False" && w["status"].value("readyReplicas", 0) == 3 &&
               w["status"].value("observedGeneration", 0) == w["metadata"].value("generation", -1);
      },
      kSteady);
  EXPECT_TRUE(ws) << getWorkload("roll").value_or(Json()).dump(2);
  EXPECT_TRUE(eventually([&] { return hasEvent(harness(), ns(), "roll", "RolloutComplete"); }, 20s));
}

TEST_F(OperatorLifecycleTest, ScaleDownDeletesHighestOrdinalsAndTheLeaderLast) {
  createWorkload(workloadObject("scale", 3));
  auto leader = waitForSteadyLeader("scale", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("scale");
  // Make the highest ordinal the leader, then scale to 1: it must hand over before it goes.
  if (leader->name != "scale-2") {
    const auto before = auditor().leaderships("scale").size();
    ASSERT_TRUE(kubectl({"annotate", "sw", "scale", "singleton.dev/switchover-to=scale-2"}).ok());
    auto next = auditor().waitForLeadership("scale", before, kFailover);
    ASSERT_TRUE(next) << auditor().describe("scale");
    ASSERT_EQ(next->pod, "scale-2");
    leader = waitForSteadyLeader("scale", kSteady);
    ASSERT_TRUE(leader);
  }
  const auto before = auditor().leaderships("scale").size();
  auto r = kubectl({"scale", "sw/scale", "--replicas=1"});
  ASSERT_TRUE(r.ok()) << r.err;
  ASSERT_TRUE(auditor().waitUntil(
      [](const LeaderAuditor::State& s) {
        auto it = s.workloads.find("scale");
        return it != s.workloads.end() && it->second.pods.size() == 1 && it->second.pods.count("scale-0") &&
               it->second.leaders.count("scale-0");
      },
      kSteady))
      << auditor().describe("scale");
  auto steady = waitForSteadyLeader("scale", kSteady);
  ASSERT_TRUE(steady);
  EXPECT_EQ(steady->name, "scale-0");
  EXPECT_EQ(auditor().leaderships("scale").size(), before + 1) << auditor().describe("scale");
  // Was scale-2 still there (not yet deleted) when scale-0 became leader? The leader goes last.
  bool leader_deleted_before_handover = false;
  const auto handover = auditor().leaderships("scale").back();
  for (const auto& e : auditor().events("scale")) {
    if (e.pod.name == "scale-2" && e.type == "DELETED" && e.at < handover.at) leader_deleted_before_handover = true;
  }
  EXPECT_FALSE(leader_deleted_before_handover) << auditor().describe("scale");
  EXPECT_TRUE(waitForStatus(
      "scale", [](const Json& w) { return w["status"].value("readySummary", "") == "1/1"; }, kSteady));

  // And up again: new standbys under the old names.
  ASSERT_TRUE(kubectl({"scale", "sw/scale", "--replicas=3"}).ok());
  EXPECT_TRUE(waitForStatus(
      "scale", [](const Json& w) { return w["status"].value("readyReplicas", 0) == 3; }, kSteady));
  std::set<std::string> names;
  for (const Json& p : listPods("scale")) names.insert(p["metadata"]["name"]);
  EXPECT_EQ(names, (std::set<std::string>{"scale-0", "scale-1", "scale-2"}));
  EXPECT_EQ(auditor().currentLeader("scale").value_or(LeaderAuditor::PodView{}).name, "scale-0");
}

TEST_F(OperatorLifecycleTest, ServiceSelectsOnlyTheLeaderAndFollowsFailover) {
  Json service = {{"ports", Json::array({{{"name", "http"}, {"port", 80}, {"targetPort", 8080}}})}};
  const Json created = createWorkload(workloadObject("svc", 3, {{"service", service}}));
  auto leader = waitForSteadyLeader("svc", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("svc");

  std::optional<Json> svc;
  ASSERT_TRUE(eventually([&] { return (svc = harness().getService(ns(), "svc")).has_value(); }, kSteady));
  const Json& spec = (*svc)["spec"];
  EXPECT_EQ(spec["selector"], Json({{"singleton.dev/workload", "svc"}, {"singleton.dev/role", "leader"}}));
  ASSERT_EQ(spec["ports"].size(), 1u);
  EXPECT_EQ(spec["ports"][0].value("port", 0), 80);
  EXPECT_EQ(spec["ports"][0].value("targetPort", Json()), 8080);
  EXPECT_EQ(spec["ports"][0].value("name", ""), "http");
  EXPECT_EQ(spec.value("type", ""), "ClusterIP");
  const Json& owners = (*svc)["metadata"].value("ownerReferences", Json::array());
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners[0].value("uid", ""), created["metadata"].value("uid", ""));

  // The endpoints controller resolves the selector to the leader's pod only.
  auto endpointPods = [&] {
    std::set<std::string> pods;
    auto ep = harness().client().get(kEndpoints, ns(), "svc");
    if (!ep.ok()) return pods;
    for (const Json& subset : (*ep).value("subsets", Json::array())) {
      for (const Json& a : subset.value("addresses", Json::array())) {
        pods.insert(a.value("targetRef", Json::object()).value("name", ""));
      }
    }
    return pods;
  };
  EXPECT_TRUE(eventually([&] { return endpointPods() == std::set<std::string>{leader->name}; }, kSteady))
      << "endpoints: " << endpointPods().size();

  const auto before = auditor().leaderships("svc").size();
  ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
  auto next = auditor().waitForLeadership("svc", before, kFailover);
  ASSERT_TRUE(next) << auditor().describe("svc");
  EXPECT_TRUE(eventually([&] { return endpointPods() == std::set<std::string>{next->pod}; }, kSteady))
      << "the Service follows the leader";

  // Removing spec.service deletes the Service.
  auto patched = harness().client().jsonPatch(kWorkloads, ns(), "svc",
                                              Json::array({{{"op", "remove"}, {"path", "/spec/service"}}}));
  ASSERT_TRUE(patched.ok()) << patched.error().describe();
  EXPECT_TRUE(eventually([&] { return !harness().getService(ns(), "svc").has_value(); }, kSteady));
}

TEST_F(OperatorLifecycleTest, DeletingTheWorkloadGarbageCollectsPodsLeaseAndService) {
  Json service = {{"ports", Json::array({{{"port", 8080}}})}};
  createWorkload(workloadObject("gone", 3, {{"service", service}}));
  ASSERT_TRUE(waitForSteadyLeader("gone", kSteady)) << auditor().describe("gone");
  ASSERT_TRUE(eventually([&] { return harness().getService(ns(), "gone").has_value(); }, kSteady));
  ASSERT_TRUE(getLease("gone-leader"));

  ASSERT_TRUE(harness().client().remove(kWorkloads, ns(), "gone").ok());
  EXPECT_TRUE(eventually([&] { return listPods("gone").empty(); }, 90s)) << listPods("gone").size() << " pods left";
  EXPECT_TRUE(eventually([&] { return !getLease("gone-leader").has_value(); }, 90s));
  EXPECT_TRUE(eventually([&] { return !harness().getService(ns(), "gone").has_value(); }, 90s));
  // The auditor's pod watch may be a moment behind the list above.
  EXPECT_TRUE(eventually([&] { return auditor().currentLeaders("gone").empty(); }, kSteady))
      << auditor().describe("gone");
  // The operator does not recreate anything for a workload that is gone.
  std::this_thread::sleep_for(2s);
  EXPECT_TRUE(listPods("gone").empty());
  EXPECT_FALSE(getLease("gone-leader").has_value());
}

TEST_F(OperatorLifecycleTest, ManyWorkloadsInOneNamespaceEachGetOneLeader) {
  constexpr int kCount = 10;
  for (int i = 0; i < kCount; ++i) createWorkload(workloadObject("many-" + std::to_string(i), 2));
  for (int i = 0; i < kCount; ++i) {
    const std::string name = "many-" + std::to_string(i);
    EXPECT_TRUE(waitForSteadyLeader(name, kSteady)) << auditor().describe(name);
  }
}

}  // namespace
}  // namespace singleton::testing
