// The operator's hand-off on real processes (issue 12, parts 2 and 4): three operator replicas, a SingletonWorkload
// whose pods run `singleton-agent -- COMMAND` as real processes under the simulated kubelet (the agent's in-cluster
// config, with the RBAC of manifests/agent-rbac.yaml), and a COMMAND that logs start, a heartbeat every 10 ms and stop
// on CLOCK_MONOTONIC (std::chrono::steady_clock here) and takes 2 s to stop after SIGTERM. The test reads those logs:
// every window, not samples of them. Triggers: leader pod deleted, Ready=False, operator leader SIGKILLed between the
// move and the ack, agent + COMMAND SIGKILLed (pod force-deleted / pod Failed), agent blackholed (lease expiry),
// switchover, rollout (template change), node heartbeat lost.
//
// These tests can fail: with the wait removed, each run once on 2026-12-01 (scratch builds, not committed) failed on
// the windows' overlap, the successor's COMMAND starting while the old one still ran its 2 s shutdown:
//   - spec.handoff: Immediate in agentWorkload() (the operator records no handoff-from, so the Lease is complete at
//     once and the successor's agent starts): overlap 1827 ms (pod deleted), 1788 ms (switchover), 1695 ms
//     (rollout), 1813 ms (node heartbeat lost); the ack / label-order checks failed too;
//   - the agent's calls of mayBeActive replaced by a copy without `complete` (cli/singleton-agent/agent.cc starts
//     COMMAND without waiting for the hand-off; the operator unchanged, still labelling after the ack): overlap 1694,
//     1690, 1395 and 1846 ms, and only the windows' checks failed: the logs, not the operator's bookkeeping, catch it.
// Restored, the same four passed (gaps of +214 to +627 ms, acked by the agent) in two runs of the whole suite.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "election/handoff.h"
#include "support/activity_log.h"
#include "support/operator_harness.h"
#include "support/tcp_proxy.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The exec readiness probes' timeout: the default 1 s can pass while a loaded sanitizer run forks the shell, and a
// probe that times out moves leadership before the test's trigger.
constexpr int kProbeTimeoutSeconds = 10;

// Heartbeats every 10 ms; after SIGTERM it keeps beating for 2 s, then logs stop and exits (a slow shutdown).
constexpr const char* kCommandScript = R"(
import os, signal, sys, time
f = open(os.path.join(sys.argv[1], os.environ['POD_NAME'] + '.log'), 'a', buffering=1)
def now(): return time.monotonic_ns() // 1000
f.write('start %d %s %s\n' % (now(), os.environ.get('SINGLETON_FENCING_TOKEN', ''), os.environ.get('POD_UID', '')))
asked = [0.0]
def term(*_):
    asked[0] = time.monotonic()
signal.signal(signal.SIGTERM, term)
while True:
    f.write('beat %d\n' % now())
    if asked[0] and time.monotonic() - asked[0] >= 2.0:
        f.write('stop %d\n' % now())
        sys.exit(0)
    time.sleep(0.01)
)";

std::string agentBinary() { return std::string(SINGLETON_BINARY_DIR) + "/cli/singleton-agent"; }
std::string python() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "/usr/local/bin/python3"; }

class OperatorHandoffTest : public OperatorTest {
 protected:
  void SetUp() override {
    OperatorTest::SetUp();
    dir_ = fs::temp_directory_path() / ("operator-handoff-" + std::to_string(::getpid()) + "-" + ns());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::all);
    // The Role the docs tell users to grant; the agents run under it (in-cluster config, TokenRequest token).
    const auto applied = kubectl({"apply", "-f", std::string(SINGLETON_SOURCE_DIR) + "/manifests/agent-rbac.yaml"});
    ASSERT_TRUE(applied.ok()) << applied.err;
  }
  void TearDown() override {
    OperatorTest::TearDown();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // The harness's workload, with each replica running singleton-agent around the Python COMMAND. No env: the
  // operator injects the agent's identity (SINGLETON_WORKLOAD, POD_NAME, POD_NAMESPACE, POD_UID).
  Json agentWorkload(const std::string& name, int replicas) const {
    Json object = workloadObject(name, replicas);
    Json& spec = object["spec"]["template"]["spec"];
    spec["serviceAccountName"] = "singleton-agent";
    spec["terminationGracePeriodSeconds"] = 10;
    spec["containers"] = Json::array({{
        {"name", "main"},
        {"image", "host"},
        {"command", {agentBinary(), "--", python(), "-c", kCommandScript, dir_.string()}},
    }});
    object["spec"]["leaseDurationSeconds"] = 15;
    return object;
  }

  // The window of `pod` with `token`, once its log shows it.
  std::optional<Window> windowOf(const std::string& pod, long long token) const {
    for (const Window& w : readWindows(dir_)) {
      if (w.pod == pod && w.token == token) return w;
    }
    return std::nullopt;
  }

  // What a hand-off must show besides the common checks.
  struct Expect {
    std::string acked_by;  // the evidence that completed it; "" for any
    bool graceful = true;  // the old COMMAND logged its stop about 2 s after the trigger (not killed)
    std::chrono::milliseconds min_trigger_to_start{0};  // the successor's COMMAND started no sooner after the trigger
  };
  void runHandoff(const std::string& name, const std::string& label, const Expect& expect,
                  const std::function<void(const std::string&)>& trigger);

  fs::path dir_;
};

// Trigger `trigger` on the leader of `name` (its COMMAND takes 2 s to stop), then check the hand-off from the logs
// and the etcd revisions; `label` names the trigger in the output.
void OperatorHandoffTest::runHandoff(const std::string& name, const std::string& label, const Expect& expect,
                                     const std::function<void(const std::string&)>& trigger) {
  // The leader to trigger on: steady, its COMMAND running, every pod Ready, and still the same leader once all that
  // holds. On a loaded machine leadership can move before the trigger (CI: a probe flickered and the Lease moved 0.8 s
  // before it), and the hand-off under test is the trigger's: settle again then.
  std::optional<LeaderAuditor::PodView> first;
  for (int attempt = 1; attempt <= 3 && !first; ++attempt) {
    auto leader = waitForSteadyLeader(name, 90s);
    ASSERT_TRUE(leader) << harness().diagnostics();
    const long long token = std::stoll(leader->token.value_or("-1"));
    ASSERT_TRUE(eventually([&] { return windowOf(leader->name, token).has_value(); }, 30s))
        << "the leader's COMMAND never started\n"
        << harness().diagnostics();
    ASSERT_TRUE(waitForPodsReady(name, 3, 60s)) << harness().diagnostics();
    auto still = waitForSteadyLeader(name, 60s);
    ASSERT_TRUE(still) << harness().diagnostics();
    if (still->name == leader->name && still->token == leader->token) {
      first = leader;
    } else {
      std::cout << "leadership moved from " << leader->name << " to " << still->name
                << " before the trigger; settling again (attempt " << attempt << ")\n";
    }
  }
  ASSERT_TRUE(first) << "leadership never settled before the trigger\n" << harness().diagnostics();
  const std::string old_leader = first->name;
  const long long old_token = std::stoll(first->token.value_or("-1"));
  auto workload = getWorkload(name);
  ASSERT_TRUE(workload);
  EXPECT_EQ((*workload)["status"]["handoff"]["mode"], "WaitForStop");
  EXPECT_EQ(conditionOf(*workload, "ExclusiveActivation"), "True");
  const std::size_t leaderships_before = auditor().leaderships(name).size();

  const auto triggered_at = std::chrono::steady_clock::now();
  trigger(old_leader);

  ASSERT_TRUE(auditor().waitForLeadership(name, leaderships_before, 60s)) << harness().diagnostics();
  auto next = waitForSteadyLeader(name, 60s);
  ASSERT_TRUE(next) << harness().diagnostics();
  ASSERT_NE(next->name, old_leader);
  const long long new_token = std::stoll(next->token.value_or("-1"));
  EXPECT_GT(new_token, old_token);
  ASSERT_TRUE(eventually([&] { return windowOf(next->name, new_token).has_value(); }, 30s))
      << "the successor's COMMAND never started\n"
      << harness().diagnostics();

  // Read the old window once it has ended (its stop logged; a killed COMMAND's window ended at the trigger): with the
  // hand-off working this waits for nothing, and without it an overlap is measured in full, not only up to the
  // successor's start.
  if (expect.graceful) {
    EXPECT_TRUE(eventually([&] { return windowOf(old_leader, old_token)->stopped; }, 30s))
        << "the old COMMAND never logged its stop";
  }
  // The old COMMAND's last heartbeat (its stop) precedes the new one's start, on one clock.
  const Window old_window = *windowOf(old_leader, old_token);
  const Window new_window = *windowOf(next->name, new_token);
  EXPECT_LT(old_window.last, new_window.start) << "the two leaders' windows overlap";
  if (expect.graceful) {
    EXPECT_TRUE(old_window.stopped) << "the old COMMAND was killed, not stopped";
    EXPECT_GE(old_window.last - steadyMicros(triggered_at), 1'900'000) << "the old COMMAND stopped in about 2 s";
  }
  EXPECT_GE(new_window.start - steadyMicros(triggered_at),
            std::chrono::duration_cast<std::chrono::microseconds>(expect.min_trigger_to_start).count());
  std::cout << label << ": hand-off gap (old COMMAND's stop -> new COMMAND's start) "
            << (new_window.start - old_window.last) / 1000.0 << " ms; trigger -> new start "
            << (new_window.start - steadyMicros(triggered_at)) / 1000.0 << " ms\n";

  // No two windows of any pods overlap, and tokens strictly increase in order of start.
  const auto windows = readWindows(dir_);
  for (std::size_t i = 1; i < windows.size(); ++i) {
    EXPECT_LT(windows[i - 1].last, windows[i].start) << windows[i - 1].pod << " and " << windows[i].pod;
    EXPECT_LT(windows[i - 1].token, windows[i].token);
  }

  // The hand-off was completed (by the old agent's ack, or the operator's evidence) before the successor was
  // labelled: etcd revisions order the Lease's ack and the label, and nothing writes the Lease after the ack.
  const auto lease = getLease(name + "-leader");
  ASSERT_TRUE(lease);
  const election::HandoffView view = election::parseHandoff(*lease);
  EXPECT_EQ(view.token, new_token);
  EXPECT_EQ(view.from, old_leader);
  EXPECT_TRUE(view.acked) << lease->dump();
  std::cout << label << ": hand-off completed by " << view.acked_by << "\n";
  if (!expect.acked_by.empty()) {
    EXPECT_EQ(view.acked_by, expect.acked_by);
  }
  const auto leaderships = auditor().leaderships(name);
  ASSERT_GT(leaderships.size(), leaderships_before);
  const auto& labelled = leaderships.back();
  EXPECT_EQ(labelled.pod, next->name);
  EXPECT_LT(std::stoull(view.resource_version), std::stoull(labelled.resource_version))
      << "the successor was labelled before the hand-off completed";
  EXPECT_GT(steadyMicros(labelled.at), old_window.last) << "labelled while the old COMMAND still ran";
}

TEST_F(OperatorHandoffTest, DeletedLeaderStopsBeforeTheSuccessorStarts) {
  createWorkload(agentWorkload("ho", 3));
  runHandoff("ho", "pod deleted", {}, [&](const std::string& leader) {
    // Its agent gets SIGTERM; its COMMAND takes 2 s to stop.
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader).ok());
  });
}

TEST_F(OperatorHandoffTest, NotReadyLeaderStopsBeforeTheSuccessorStarts) {
  // Ready from an exec probe each pod fails once the test creates <dir>/<pod>.notready; the process stays alive.
  Json object = agentWorkload("nr", 3);
  object["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
      {"exec", {{"command", {"/bin/sh", "-c", "test ! -e " + dir_.string() + "/$POD_NAME.notready"}}}},
      {"periodSeconds", 1},
      {"timeoutSeconds", kProbeTimeoutSeconds},
      {"failureThreshold", 1}};
  createWorkload(object);
  runHandoff("nr", "Ready=False", {},
             [&](const std::string& leader) { std::ofstream(dir_ / (leader + ".notready")) << ""; });
}

TEST_F(OperatorHandoffTest, OperatorLeaderKilledBetweenTheMoveAndTheAck) {
  createWorkload(agentWorkload("ok", 3));
  std::optional<int> killed;
  runHandoff("ok", "operator SIGKILLed after the move", {}, [&](const std::string& leader) {
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader).ok());
    // The move is in the Lease and the hand-off still pending (the old COMMAND takes 2 s to stop): kill the operator
    // leader now. The next one finishes from the Lease.
    ASSERT_TRUE(eventually(
        [&] {
          const auto lease = getLease("ok-leader");
          if (!lease) return false;
          const election::HandoffView view = election::parseHandoff(*lease);
          return view.from == leader && !view.complete;
        },
        10s))
        << harness().diagnostics();
    killed = harness().operatorLeader();
    ASSERT_TRUE(killed);
    harness().signalOperator(*killed, SIGKILL);
  });
  if (killed) {
    EXPECT_TRUE(harness().waitForOperatorLeader(30s, OperatorHarness::identity(*killed)));
  }
  harness().ensureOperatorsRunning();
}

// The old leader's agent and COMMAND are SIGKILLed (its node crashed) and the pod is then force-deleted: no agent is
// left to ack, so the operator's own evidence completes the hand-off: the pod with that UID is gone. The kubelet is
// frozen meanwhile, so it neither restarts the agent (a restarted agent acks at once) nor reports the containers
// terminated first (`containers-terminated`): only `pod-gone` can complete it.
TEST_F(OperatorHandoffTest, KilledAndForceDeletedLeaderIsCompletedByPodGone) {
  createWorkload(agentWorkload("pg", 3));
  runHandoff("pg", "agent and COMMAND SIGKILLed, pod force-deleted", {.acked_by = "pod-gone", .graceful = false},
             [&](const std::string& leader) {
               const auto pod = getPod(leader);
               ASSERT_TRUE(pod);
               const std::string uid = (*pod)["metadata"].value("uid", "");
               struct Thaw {
                 Process& kubelet;
                 ~Thaw() { kubelet.signal(SIGCONT); }
               } thaw{harness().kubelet()};
               harness().kubelet().signal(SIGSTOP);
               const auto pids = processesOfPod(uid);
               ASSERT_GE(pids.size(), 2u) << "the agent and its COMMAND";
               for (const pid_t pid : pids) ::kill(pid, SIGKILL);
               ASSERT_TRUE(eventually([&] { return processesOfPod(uid).empty(); }, 5s));
               kube::DeleteOptions now;
               now.grace_period_seconds = 0;
               ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader, now).ok());
               // Completed while the kubelet is still frozen: nothing but the pod's absence can have done it.
               ASSERT_TRUE(eventually(
                   [&] {
                     const auto lease = getLease("pg-leader");
                     if (!lease) return false;
                     const election::HandoffView view = election::parseHandoff(*lease);
                     return view.from == leader && view.complete;
                   },
                   30s))
                   << harness().diagnostics();
             });
}

// The old leader's agent and COMMAND are SIGKILLed in a pod that does not restart its containers (restartPolicy
// Never): the kubelet reports them terminated and the pod Failed, no agent is left to ack, and the pod stays. The
// operator completes the hand-off from the pod's status: `containers-terminated`.
TEST_F(OperatorHandoffTest, KilledLeaderInAFailedPodIsCompletedByContainersTerminated) {
  Json object = agentWorkload("ct", 3);
  object["spec"]["template"]["spec"]["restartPolicy"] = "Never";
  createWorkload(object);
  runHandoff("ct", "agent and COMMAND SIGKILLed, pod Failed", {.acked_by = "containers-terminated", .graceful = false},
             [&](const std::string& leader) {
               const auto pod = getPod(leader);
               ASSERT_TRUE(pod);
               const std::string uid = (*pod)["metadata"].value("uid", "");
               const auto pids = processesOfPod(uid);
               ASSERT_GE(pids.size(), 2u) << "the agent and its COMMAND";
               for (const pid_t pid : pids) ::kill(pid, SIGKILL);
             });
}

// The old leader turns NotReady and its agent is cut off from the apiserver (a TCP proxy of its own, blackholed): it
// cannot see the move nor ack it, and its pod and containers stay. Only the lease's expiry completes the hand-off:
// the agent stops its COMMAND by itself within renew-deadline + grace (its last confirmation was before the move),
// and the operator acks `lease-expired` once leaseDurationSeconds (15 s) has passed since its move.
TEST_F(OperatorHandoffTest, UnreachableLeaderIsCompletedByLeaseExpiry) {
  // One proxy per pod name: the container's shell points KUBERNETES_SERVICE_PORT at its own (in-cluster config,
  // the manifest's RBAC and the TokenRequest token otherwise unchanged), so one agent can be cut off alone.
  std::map<std::string, std::unique_ptr<TcpProxy>> proxies;
  for (int i = 0; i < 3; ++i) {
    const std::string pod = "lx-" + std::to_string(i);
    proxies[pod] = std::make_unique<TcpProxy>(harness().cluster().apiserverPort());
    std::ofstream(dir_ / (pod + ".port")) << proxies[pod]->port();
  }
  Json object = agentWorkload("lx", 3);
  Json& container = object["spec"]["template"]["spec"]["containers"][0];
  Json command = Json::array({"/bin/sh", "-c",
                              "port=$(cat \"$0/$POD_NAME.port\") && export KUBERNETES_SERVICE_PORT=$port "
                              "KUBERNETES_SERVICE_PORT_HTTPS=$port && exec \"$@\"",
                              dir_.string()});
  for (const Json& arg : container["command"]) command.push_back(arg);
  container["command"] = command;
  container["readinessProbe"] = {
      {"exec", {{"command", {"/bin/sh", "-c", "test ! -e " + dir_.string() + "/$POD_NAME.notready"}}}},
      {"periodSeconds", 1},
      {"timeoutSeconds", kProbeTimeoutSeconds},
      {"failureThreshold", 1}};
  object["spec"]["handoff"] = "WaitForStop";  // command[0] is the shell: Auto would not see the agent
  createWorkload(object);
  runHandoff("lx", "NotReady leader blackholed from the apiserver",
             {.acked_by = "lease-expired", .min_trigger_to_start = 15s}, [&](const std::string& leader) {
               proxies.at(leader)->blackhole();
               std::ofstream(dir_ / (leader + ".notready")) << "";
             });
}

// A planned switchover to a named standby: the operator moves the Lease while the old leader is healthy; its agent
// sees the move, stops COMMAND (2 s) and acks; only then is the named pod labelled and its COMMAND started.
TEST_F(OperatorHandoffTest, SwitchoverWaitsForTheOldLeaderToStop) {
  createWorkload(agentWorkload("so", 3));
  std::string target;
  runHandoff("so", "switchover", {.acked_by = "agent"}, [&](const std::string& leader) {
    target = leader == "so-2" ? "so-1" : "so-2";
    const auto annotated = kubectl({"annotate", "sw", "so", "singleton.dev/switchover-to=" + target});
    ASSERT_TRUE(annotated.ok()) << annotated.err;
  });
  if (HasFatalFailure()) return;
  const auto leader = auditor().currentLeader("so");
  ASSERT_TRUE(leader);
  EXPECT_EQ(leader->name, target) << "the named standby leads";
  EXPECT_TRUE(waitForStatus(
      "so",
      [](const Json& w) {
        return !w["metadata"].value("annotations", Json::object()).contains("singleton.dev/switchover-to");
      },
      30s))
      << "the one-shot annotation is removed";
}

// A template change rolls every pod: the outdated standbys are replaced first, then leadership moves once to an
// updated standby (the old leader's agent stops COMMAND and acks), and the old leader's pod is replaced last. Over
// the whole roll, no two windows overlap and the roll costs exactly one change of leader (docs/api.md).
TEST_F(OperatorHandoffTest, RolloutReplacesEveryPodWithNonOverlappingLeaders) {
  createWorkload(agentWorkload("ro", 3));
  std::string old_hash;
  std::size_t leaderships_before = 0;
  long long token_before = -1;
  runHandoff("ro", "rollout", {}, [&](const std::string& leader) {
    const auto view = auditor().pod("ro", leader);
    ASSERT_TRUE(view);
    old_hash = view->template_hash;
    ASSERT_FALSE(old_hash.empty());
    leaderships_before = auditor().leaderships("ro").size();
    token_before = std::stoll(view->token.value_or("-1"));
    // A new env var in the container: every pod must be replaced.
    const kube::Resource workloads{"singleton.dev", "v1alpha1", "singletonworkloads", true};
    const auto patched =
        harness().client().jsonPatch(workloads, ns(), "ro",
                                     Json::array({{{"op", "add"},
                                                   {"path", "/spec/template/spec/containers/0/env"},
                                                   {"value", Json::array({{{"name", "ROLLOUT"}, {"value", "2"}}})}}}));
    ASSERT_TRUE(patched.ok()) << patched.error().describe();
  });
  if (HasFatalFailure()) return;

  // Done when three Ready, non-terminating pods carry the new hash and the leader is steady on one of them (as in
  // OperatorLifecycleTest.TemplateChangeRollsEveryPodWithExactlyOneFailover).
  std::string new_hash;
  ASSERT_TRUE(auditor().waitUntil(
      [&](const LeaderAuditor::State& s) {
        auto it = s.workloads.find("ro");
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
      << auditor().describe("ro");
  const auto steady = waitForSteadyLeader("ro", 60s);
  ASSERT_TRUE(steady) << auditor().describe("ro");
  EXPECT_EQ(steady->template_hash, new_hash);
  EXPECT_TRUE(waitForStatus(
      "ro",
      [](const Json& w) {
        return conditionOf(w, "Progressing") == "False" &&
               w["status"].value("observedGeneration", 0) == w["metadata"].value("generation", -1);
      },
      60s))
      << getWorkload("ro").value_or(Json()).dump(2);
  // One rollout, one change of leader, one token increment.
  EXPECT_EQ(auditor().leaderships("ro").size(), leaderships_before + 1) << auditor().describe("ro");
  EXPECT_EQ(std::stoll(steady->token.value_or("-1")), token_before + 1);

  // Over the whole roll (every pod re-created; a re-created pod appends to its name's log): two windows, no overlap.
  const auto windows = readWindows(dir_);
  EXPECT_EQ(windows.size(), 2u) << "the first leader's and the successor's";
  for (std::size_t i = 1; i < windows.size(); ++i) {
    EXPECT_LT(windows[i - 1].last, windows[i].start) << windows[i - 1].pod << " and " << windows[i].pod;
    EXPECT_LT(windows[i - 1].token, windows[i].token);
  }
  for (const Window& w : windows) {
    std::cout << "rollout: window of " << w.pod << " token " << w.token << ": " << (w.last - w.start) / 1000.0 << " ms"
              << (w.stopped ? ", stopped" : ", running") << "\n";
  }
}

// The leader's node stops its heartbeat (the sim kubelet's annotation: a partitioned kubelet that writes nothing for
// the node or its pods, while the processes keep running and still reach the apiserver). After
// node-monitor-grace-period (10 s) the node-lifecycle controller marks the pods not Ready; the operator moves the
// Lease; the old agent, still connected, sees the move, stops COMMAND and acks. One pod per node, so the successor
// runs elsewhere. The heartbeat is restored at the end: the node's pod is Ready again and stays a standby.
TEST_F(OperatorHandoffTest, NodeHeartbeatLostMovesLeadershipOnlyAfterTheOldLeaderStops) {
  Json object = agentWorkload("nl", 3);
  object["spec"]["template"]["spec"]["affinity"] = {
      {"podAntiAffinity",
       {{"requiredDuringSchedulingIgnoredDuringExecution",
         Json::array(
             {{{"labelSelector", {{"matchLabels", {{"app", "nl"}}}}}, {"topologyKey", "kubernetes.io/hostname"}}})}}}};
  createWorkload(object);

  struct Restore {
    OperatorHarness& h;
    std::string node;
    ~Restore() {
      if (node.empty()) return;
      (void)h.client().mergePatch(kube::kNodes, "", node,
                                  {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", nullptr}}}}}});
    }
  } restore{harness(), ""};
  std::string old_leader;
  std::size_t leaderships_before = 0;
  runHandoff(
      "nl", "node heartbeat lost", {.acked_by = "agent", .min_trigger_to_start = 8s}, [&](const std::string& leader) {
        const auto view = auditor().pod("nl", leader);
        ASSERT_TRUE(view);
        ASSERT_FALSE(view->node.empty());
        old_leader = leader;
        leaderships_before = auditor().leaderships("nl").size();
        restore.node = view->node;
        ASSERT_TRUE(harness()
                        .client()
                        .mergePatch(kube::kNodes, "", view->node,
                                    {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", "stopped"}}}}}})
                        .ok());
      });
  if (restore.node.empty()) return;
  const auto next = auditor().currentLeader("nl");
  if (next) {
    EXPECT_NE(next->node, restore.node) << "the successor runs on another node";
  }
  // The old leader was marked not Ready by the node-lifecycle controller, not deleted.
  const auto old = auditor().pod("nl", old_leader);
  ASSERT_TRUE(old);
  EXPECT_FALSE(old->ready);

  // The node comes back: its pod is Ready again and stays a standby; the node loses its taints (later tests).
  ASSERT_TRUE(harness()
                  .client()
                  .mergePatch(kube::kNodes, "", restore.node,
                              {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", nullptr}}}}}})
                  .ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto p = auditor().pod("nl", old_leader);
        return p && p->ready;
      },
      60s))
      << auditor().describe("nl");
  EXPECT_TRUE(eventually(
      [&] {
        auto n = harness().client().get(kube::kNodes, "", restore.node);
        if (!n.ok()) return false;
        for (const Json& t : (*n)["spec"].value("taints", Json::array())) {
          if (t.value("key", "").rfind("node.kubernetes.io/", 0) == 0) return false;
        }
        return true;
      },
      60s));
  EXPECT_EQ(auditor().leaderships("nl").size(), leaderships_before + 1) << auditor().describe("nl");
  // Back and Ready, the old leader's agent stays a standby: still only the two windows, not overlapping.
  const auto windows = readWindows(dir_);
  EXPECT_EQ(windows.size(), 2u);
  for (std::size_t i = 1; i < windows.size(); ++i) {
    EXPECT_LT(windows[i - 1].last, windows[i].start) << windows[i - 1].pod << " and " << windows[i].pod;
    EXPECT_LT(windows[i - 1].token, windows[i].token);
  }
}

// Only the leader's agent is SIGKILLed (its pod stays, the kubelet restarts the container at once): COMMAND dies with
// its supervisor (the death signal of lib/process), so when the restarted agent, or another pod's after a failover,
// starts COMMAND again, the killed one has ended. Either outcome is allowed; what must hold is that no two windows
// overlap, that a window of another pod has a higher token, and that the workload leads again with a COMMAND running.
// Both outcomes occurred in runs here (a failover to another pod with token + 1, gaps 236-335 ms; the restarted agent
// with the same token, 226-238 ms). Two layers end the COMMAND: lib/process's watcher (tests/unit/process) and the
// container's teardown by the kubelet, as a real runtime ends every process of a container whose main process died.
// With the first disabled (the watcher pausing instead of killing the group) this test still passed: it checks the
// system, not the agent's own mechanism.
TEST_F(OperatorHandoffTest, KilledAgentsCommandEndsBeforeAnyOtherStarts) {
  createWorkload(agentWorkload("ak", 3));
  auto first = waitForSteadyLeader("ak", 90s);
  ASSERT_TRUE(first) << harness().diagnostics();
  const long long token = std::stoll(first->token.value_or("-1"));
  ASSERT_TRUE(eventually([&] { return windowOf(first->name, token).has_value(); }, 30s)) << harness().diagnostics();
  ASSERT_TRUE(waitForPodsReady("ak", 3, 60s)) << harness().diagnostics();
  const std::size_t windows_before = readWindows(dir_).size();

  // The agent is the process of the pod whose command line starts with singleton-agent.
  pid_t agent_pid = 0;
  for (const pid_t pid : processesOfPod(first->uid)) {
    std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string argv0;
    std::getline(cmdline, argv0, '\0');
    if (fs::path(argv0).filename() == "singleton-agent") agent_pid = pid;
  }
  ASSERT_NE(agent_pid, 0) << "no singleton-agent process for " << first->name;
  ASSERT_EQ(::kill(agent_pid, SIGKILL), 0);

  // A new window starts (in the restarted agent's pod with the same token, or in another pod with a higher one).
  ASSERT_TRUE(eventually([&] { return readWindows(dir_).size() > windows_before; }, 60s)) << harness().diagnostics();
  auto steady = waitForSteadyLeader("ak", 60s);
  ASSERT_TRUE(steady) << harness().diagnostics();
  const long long now_token = std::stoll(steady->token.value_or("-1"));
  EXPECT_TRUE(eventually([&] { return windowOf(steady->name, now_token).has_value(); }, 30s))
      << "the leader's COMMAND runs again";
  const auto windows = readWindows(dir_);
  for (std::size_t i = 1; i < windows.size(); ++i) {
    EXPECT_LT(windows[i - 1].last, windows[i].start) << windows[i - 1].pod << " and " << windows[i].pod;
    if (windows[i - 1].pod != windows[i].pod) {
      EXPECT_LT(windows[i - 1].token, windows[i].token);
    }
    EXPECT_LE(windows[i - 1].token, windows[i].token);
  }
  std::cout << "agent SIGKILL: " << (steady->name == first->name ? "the restarted agent" : steady->name)
            << " runs COMMAND with token " << now_token << " (was " << token << "); gap "
            << (windows.back().start - windows[windows.size() - 2].last) / 1000.0 << " ms\n";
}

}  // namespace
}  // namespace singleton::testing
