// singleton-operator on a real control plane (3 operator replicas, a simulated kubelet with 3 Nodes): the election
// of a leader pod at start-up and every kind of failover. The LeaderAuditor of each test watches the pods
// independently and fails the test if two pods of a workload are ever labelled leader at once or a token does not
// grow.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <iostream>
#include <regex>
#include <set>
#include <thread>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;    // creating pods, scheduling, Ready, election
constexpr auto kFailover = 30s;  // generous: the target is milliseconds

long long tokenOf(const LeaderAuditor::PodView& pod) { return std::stoll(pod.token.value_or("-1")); }

std::string labelOf(const Json& object, const std::string& key) {
  const Json& labels = object["metadata"].value("labels", Json::object());
  return labels.value(key, "");
}

std::optional<std::string> annotationOf(const Json& object, const std::string& key) {
  const Json& annotations = object["metadata"].value("annotations", Json::object());
  if (!annotations.contains(key)) return std::nullopt;
  return annotations[key].get<std::string>();
}

bool hasEvent(OperatorHarness& h, const std::string& ns, const std::string& workload, const std::string& reason) {
  for (const Json& e : h.events(ns, workload, "SingletonWorkload")) {
    if (e.value("reason", "") == reason) return true;
  }
  return false;
}

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

class OperatorElectionTest : public OperatorTest {};

TEST_F(OperatorElectionTest, StartupElectsExactlyOneLeaderWithTokenLeaseAndStatus) {
  const Json created = createWorkload(workloadObject("web", 3));
  ASSERT_TRUE(created.is_object());
  const std::string uid = created["metadata"].value("uid", "");

  auto leader = waitForSteadyLeader("web", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("web");

  // Pods web-0..2 from the template, owned by the workload, one leader and two standbys.
  std::vector<Json> pods;
  ASSERT_TRUE(eventually(
      [&] {
        pods = listPods("web");
        if (pods.size() != 3) return false;
        for (const Json& p : pods) {
          if (!podView(p).ready) return false;
        }
        return true;
      },
      kSteady));
  std::set<std::string> names, hashes;
  int leaders = 0;
  for (const Json& p : pods) {
    const std::string name = p["metadata"]["name"];
    names.insert(name);
    EXPECT_EQ(labelOf(p, "singleton.dev/workload"), "web") << name;
    EXPECT_EQ(labelOf(p, "app"), "web") << name << ": the template's labels";
    const Json& owners = p["metadata"].value("ownerReferences", Json::array());
    ASSERT_EQ(owners.size(), 1u) << name;
    EXPECT_EQ(owners[0].value("uid", ""), uid) << name;
    EXPECT_EQ(owners[0].value("kind", ""), "SingletonWorkload") << name;
    EXPECT_TRUE(owners[0].value("controller", false)) << name;
    EXPECT_TRUE(owners[0].value("blockOwnerDeletion", false)) << name;
    const auto hash = annotationOf(p, "singleton.dev/template-hash");
    ASSERT_TRUE(hash) << name;
    hashes.insert(*hash);
    EXPECT_EQ(p["spec"]["containers"][0].value("image", ""), "busybox:1.36");
    if (labelOf(p, "singleton.dev/role") == "leader") {
      ++leaders;
      EXPECT_EQ(name, leader->name);
      EXPECT_EQ(annotationOf(p, "singleton.dev/fencing-token"), leader->token);
    } else {
      EXPECT_EQ(labelOf(p, "singleton.dev/role"), "standby") << name;
      EXPECT_FALSE(annotationOf(p, "singleton.dev/fencing-token")) << name << ": a standby has no token";
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"web-0", "web-1", "web-2"}));
  EXPECT_EQ(hashes.size(), 1u) << "one template, one hash";
  EXPECT_EQ(leaders, 1);

  // The Lease web-leader: holder = the leader pod, token = leaseTransitions, the pod's UID, the operator's term.
  auto lease = getLease("web-leader");
  ASSERT_TRUE(lease);
  EXPECT_EQ((*lease)["spec"].value("holderIdentity", ""), leader->name);
  EXPECT_EQ(std::to_string((*lease)["spec"].value("leaseTransitions", -1)), *leader->token);
  EXPECT_EQ((*lease)["spec"].value("leaseDurationSeconds", 0), 15) << "the operator's default";
  EXPECT_TRUE((*lease)["spec"].contains("renewTime"));
  EXPECT_TRUE((*lease)["spec"].contains("acquireTime"));
  EXPECT_EQ(annotationOf(*lease, "singleton.dev/leader-uid"), leader->uid);
  EXPECT_TRUE(annotationOf(*lease, "singleton.dev/operator-term"));
  EXPECT_EQ(labelOf(*lease, "singleton.dev/workload"), "web");
  const Json& lease_owners = (*lease)["metadata"].value("ownerReferences", Json::array());
  ASSERT_EQ(lease_owners.size(), 1u);
  EXPECT_EQ(lease_owners[0].value("uid", ""), uid);

  // Status and conditions.
  auto ws = waitForStatus(
      "web",
      [](const Json& w) {
        return w["status"].value("readyReplicas", 0) == 3 && conditionOf(w, "Progressing") == "False" &&
               w["status"].value("observedGeneration", 0) == w["metadata"].value("generation", -1);
      },
      kSteady);
  ASSERT_TRUE(ws) << getWorkload("web").value_or(Json()).dump(2);
  const Json& status = (*ws)["status"];
  EXPECT_EQ(status.value("leader", ""), leader->name);
  EXPECT_EQ(std::to_string(status.value("fencingToken", -1)), *leader->token);
  EXPECT_EQ(status.value("replicas", 0), 3);
  EXPECT_EQ(status.value("readySummary", ""), "3/3");
  EXPECT_EQ(conditionOf(*ws, "Ready"), "True");
  EXPECT_EQ(conditionOf(*ws, "Ready", "reason"), "LeaderReady");
  EXPECT_EQ(conditionOf(*ws, "LeaderElected"), "True");
  EXPECT_EQ(conditionOf(*ws, "LeaderElected", "reason"), "Elected");
  EXPECT_EQ(conditionOf(*ws, "Progressing", "reason"), "UpToDate");

  // The printer columns.
  auto table = kubectl({"get", "sw", "web"});
  ASSERT_TRUE(table.ok()) << table.err;
  std::cout << table.out;
  EXPECT_NE(table.out.find("LEADER"), std::string::npos);
  EXPECT_NE(table.out.find(leader->name), std::string::npos);
  EXPECT_NE(table.out.find("3/3"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return hasEvent(harness(), ns(), "web", "LeaderElected"); }, 20s));

  // Quiet: no further change of leader and no write to the pods while nothing happens.
  ASSERT_TRUE(waitForPodsReady("web", 3, kSteady));
  const auto events_before = auditor().eventCount();
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(auditor().leaderships("web").size(), 1u) << auditor().describe("web");
  EXPECT_EQ(auditor().eventCount(), events_before) << "pods were written while the workload was steady";
}

TEST_F(OperatorElectionTest, DeletedLeaderPodFailsOverAndIsRecreatedAsStandby) {
  createWorkload(workloadObject("del", 3));
  auto leader = waitForSteadyLeader("del", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("del");
  const auto before = auditor().leaderships("del").size();

  const auto deleted_at = Clock::now();
  ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
  auto next = auditor().waitForLeadership("del", before, kFailover);
  ASSERT_TRUE(next) << auditor().describe("del");
  std::cout << "failover after deleting " << leader->name << ": " << next->pod << " leads with token " << next->token
            << " after " << ms(next->at - deleted_at) << " ms\n";
  EXPECT_NE(next->pod, leader->name);
  EXPECT_EQ(next->token, tokenOf(*leader) + 1);

  // The deleted pod comes back under its name, as a new pod (new UID), as a standby.
  ASSERT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("del", leader->name);
        return p && p->uid != leader->uid && p->ready && p->role == "standby" && !p->token;
      },
      kSteady))
      << auditor().describe("del");
  auto steady = waitForSteadyLeader("del", kSteady);
  ASSERT_TRUE(steady);
  EXPECT_EQ(steady->name, next->pod);
  EXPECT_EQ(auditor().leaderships("del").size(), before + 1) << auditor().describe("del");
  auto ws = waitForStatus(
      "del", [](const Json& w) { return w["status"].value("readyReplicas", 0) == 3; }, kSteady);
  ASSERT_TRUE(ws);
  EXPECT_TRUE((*ws)["status"].contains("lastFailoverTime"));
  EXPECT_TRUE(eventually([&] { return hasEvent(harness(), ns(), "del", "Failover"); }, 20s));

  // A steady operator leader's pod cache is past its own leadership and its label writes: promotions need no reads.
  const auto op = harness().operatorLeader();
  ASSERT_TRUE(op);
  const auto [code, metrics] = harness().httpGet(harness().metricsPort(*op), "/metrics");
  ASSERT_EQ(code, 200);
  std::smatch cached;
  ASSERT_TRUE(std::regex_search(metrics, cached, std::regex(R"(singleton_promotions_total\{check="cache"\} (\d+))")))
      << metrics;
  EXPECT_GE(std::stoi(cached[1]), 1) << metrics;
}

TEST_F(OperatorElectionTest, LeaderNotReadyFailsOverAndTheOldLeaderStaysStandby) {
  createWorkload(workloadObject("nr", 3));
  auto leader = waitForSteadyLeader("nr", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("nr");
  const auto before = auditor().leaderships("nr").size();

  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kPods, ns(), leader->name,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", "false"}}}}}})
                  .ok());
  auto next = auditor().waitForLeadership("nr", before, kFailover);
  ASSERT_TRUE(next) << auditor().describe("nr");
  EXPECT_NE(next->pod, leader->name);
  EXPECT_EQ(next->token, tokenOf(*leader) + 1);
  // Time from the Ready=False status reaching the watch to the new leader's label.
  for (const auto& e : auditor().events("nr")) {
    if (e.pod.name == leader->name && !e.pod.ready) {
      std::cout << "failover after " << leader->name << " turned not Ready: " << ms(next->at - e.at) << " ms\n";
      break;
    }
  }
  ASSERT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("nr", leader->name);
        return p && p->role == "standby" && !p->token;
      },
      kFailover))
      << auditor().describe("nr");
  auto ws = waitForStatus(
      "nr",
      [&](const Json& w) {
        return w["status"].value("leader", "") == next->pod && w["status"].value("readyReplicas", 0) == 2;
      },
      kSteady);
  EXPECT_TRUE(ws) << getWorkload("nr").value_or(Json()).dump(2);

  // Ready again: it stays a standby, leadership does not move back.
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kPods, ns(), leader->name,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", nullptr}}}}}})
                  .ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("nr", leader->name);
        return p && p->ready;
      },
      kFailover));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(auditor().leaderships("nr").size(), before + 1) << auditor().describe("nr");
  EXPECT_EQ(auditor().currentLeader("nr").value_or(LeaderAuditor::PodView{}).name, next->pod);
}

TEST_F(OperatorElectionTest, LeaderPodFailedFailsOver) {
  createWorkload(workloadObject("failed", 2));
  auto leader = waitForSteadyLeader("failed", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("failed");
  const auto before = auditor().leaderships("failed").size();
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kPods, ns(), leader->name,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/phase", "Failed"}}}}}})
                  .ok());
  auto next = auditor().waitForLeadership("failed", before, kFailover);
  ASSERT_TRUE(next) << auditor().describe("failed");
  EXPECT_NE(next->pod, leader->name);
  EXPECT_EQ(next->token, tokenOf(*leader) + 1);
}

TEST_F(OperatorElectionTest, NodeHeartbeatStopsPodsTurnNotReadyAndLeadershipMovesOffTheNode) {
  // One pod per node, so the leader's node holds no other pod of the workload.
  Json spec = {{"template", workloadObject("lost", 3)["spec"]["template"]}};
  spec["template"]["spec"]["affinity"] = {{"podAntiAffinity",
                                           {{"requiredDuringSchedulingIgnoredDuringExecution",
                                             Json::array({{{"labelSelector", {{"matchLabels", {{"app", "lost"}}}}},
                                                           {"topologyKey", "kubernetes.io/hostname"}}})}}}};
  createWorkload(workloadObject("lost", 3, spec));
  auto leader = waitForSteadyLeader("lost", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("lost");
  ASSERT_FALSE(leader->node.empty());
  const auto before = auditor().leaderships("lost").size();

  struct Restore {
    OperatorHarness& h;
    std::string node;
    ~Restore() {
      (void)h.client().mergePatch(kube::kNodes, "", node,
                                  {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", nullptr}}}}}});
    }
  } restore{harness(), leader->node};
  const auto stopped_at = Clock::now();
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kNodes, "", leader->node,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", "stopped"}}}}}})
                  .ok());
  auto next = auditor().waitForLeadership("lost", before, 90s);
  ASSERT_TRUE(next) << auditor().describe("lost");
  std::cout << "node " << leader->node << " lost: " << next->pod << " leads after " << ms(next->at - stopped_at)
            << " ms (node-monitor-grace-period 10s)\n";
  EXPECT_NE(next->pod, leader->name);
  EXPECT_EQ(next->token, tokenOf(*leader) + 1);
  auto new_leader = auditor().pod("lost", next->pod);
  ASSERT_TRUE(new_leader);
  EXPECT_NE(new_leader->node, leader->node);
  // The old leader was marked not Ready by the node-lifecycle controller, not deleted.
  auto old = auditor().pod("lost", leader->name);
  ASSERT_TRUE(old);
  EXPECT_FALSE(old->ready);
  EXPECT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("lost", leader->name);
        return p && p->role == "standby";
      },
      kFailover))
      << auditor().describe("lost");

  // The node comes back; its pod is Ready again and stays a standby.
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kNodes, "", leader->node,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", nullptr}}}}}})
                  .ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("lost", leader->name);
        return p && p->ready;
      },
      60s))
      << auditor().describe("lost");
  EXPECT_EQ(auditor().leaderships("lost").size(), before + 1) << auditor().describe("lost");
  // Leave the node schedulable for later tests: Ready, without the unreachable taint.
  EXPECT_TRUE(eventually(
      [&] {
        auto n = harness().client().get(kube::kNodes, "", leader->node);
        if (!n.ok()) return false;
        for (const Json& t : (*n)["spec"].value("taints", Json::array())) {
          if (t.value("key", "").rfind("node.kubernetes.io/", 0) == 0) return false;
        }
        return true;
      },
      60s));
}

TEST_F(OperatorElectionTest, SwitchoverMovesLeadershipToTheNamedPodAndClearsTheAnnotation) {
  createWorkload(workloadObject("sw", 3));
  auto leader = waitForSteadyLeader("sw", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("sw");
  const auto before = auditor().leaderships("sw").size();
  const std::string target = leader->name == "sw-2" ? "sw-1" : "sw-2";

  auto r = kubectl({"annotate", "sw", "sw", "singleton.dev/switchover-to=" + target});
  ASSERT_TRUE(r.ok()) << r.err;
  auto next = auditor().waitForLeadership("sw", before, kFailover);
  ASSERT_TRUE(next) << auditor().describe("sw");
  EXPECT_EQ(next->pod, target);
  EXPECT_EQ(next->token, tokenOf(*leader) + 1);
  EXPECT_TRUE(waitForStatus(
      "sw",
      [](const Json& w) {
        return !w["metadata"].value("annotations", Json::object()).contains("singleton.dev/switchover-to");
      },
      kFailover))
      << "the one-shot annotation is removed";
  auto steady = waitForSteadyLeader("sw", kSteady);
  ASSERT_TRUE(steady);
  EXPECT_EQ(steady->name, target);
  EXPECT_TRUE(eventually([&] { return hasEvent(harness(), ns(), "sw", "Switchover"); }, 20s));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(auditor().leaderships("sw").size(), before + 1) << auditor().describe("sw");
}

TEST_F(OperatorElectionTest, InvalidSwitchoverTargetIsRejectedWithAnEventAndCleared) {
  createWorkload(workloadObject("badsw", 2));
  auto leader = waitForSteadyLeader("badsw", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("badsw");
  const auto before = auditor().leaderships("badsw").size();
  auto annotationGone = [](const Json& w) {
    return !w["metadata"].value("annotations", Json::object()).contains("singleton.dev/switchover-to");
  };

  // A pod that does not exist.
  auto r = kubectl({"annotate", "sw", "badsw", "singleton.dev/switchover-to=badsw-7"});
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_TRUE(waitForStatus("badsw", annotationGone, kFailover)) << "the rejected annotation is removed";
  bool warned = eventually(
      [&] {
        for (const Json& e : harness().events(ns(), "badsw", "SingletonWorkload")) {
          if (e.value("reason", "") == "SwitchoverRejected") {
            EXPECT_EQ(e.value("type", ""), "Warning");
            EXPECT_NE(e.value("message", "").find("badsw-7"), std::string::npos) << e.dump();
            return true;
          }
        }
        return false;
      },
      20s);
  EXPECT_TRUE(warned);

  // A pod of another workload's name pattern, and the current leader (changes nothing).
  r = kubectl({"annotate", "sw", "badsw", "singleton.dev/switchover-to=" + leader->name});
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_TRUE(waitForStatus("badsw", annotationGone, kFailover));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(auditor().leaderships("badsw").size(), before) << auditor().describe("badsw");
  auto steady = waitForSteadyLeader("badsw", kSteady);
  ASSERT_TRUE(steady);
  EXPECT_EQ(steady->name, leader->name);
  EXPECT_EQ(steady->token, leader->token);
}

TEST_F(OperatorElectionTest, NoReadyPodMeansNoLeaderUntilOneIsReady) {
  // Both pods fail readiness from the start: the sim kubelet's command is in the template's annotations.
  Json spec = {{"template", workloadObject("none", 2)["spec"]["template"]}};
  spec["template"]["metadata"]["annotations"] = {{"sim.singleton.dev/ready", "false"}};
  createWorkload(workloadObject("none", 2, spec));
  auto ws = waitForStatus(
      "none",
      [](const Json& w) {
        return conditionOf(w, "LeaderElected") == "False" &&
               conditionOf(w, "LeaderElected", "reason") == "NoReadyReplica" && conditionOf(w, "Ready") == "False";
      },
      kSteady);
  ASSERT_TRUE(ws) << getWorkload("none").value_or(Json()).dump(2);
  EXPECT_EQ((*ws)["status"].value("leader", ""), "");
  EXPECT_TRUE(auditor().currentLeaders("none").empty());

  // One pod turns Ready: it is elected.
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kPods, ns(), "none-1",
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", "true"}}}}}})
                  .ok());
  auto leader = waitForSteadyLeader("none", kSteady);
  ASSERT_TRUE(leader) << auditor().describe("none");
  EXPECT_EQ(leader->name, "none-1");
  EXPECT_TRUE(waitForStatus(
      "none", [](const Json& w) { return conditionOf(w, "LeaderElected") == "True"; }, kSteady));
}

}  // namespace
}  // namespace singleton::testing
