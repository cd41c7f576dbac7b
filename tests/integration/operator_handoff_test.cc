// The operator's hand-off on real processes (issue 12, parts 2 and 4): three operator replicas, a SingletonWorkload
// whose pods run `singleton-agent -- COMMAND` as real processes under the simulated kubelet (the agent's in-cluster
// config, with the RBAC of manifests/agent-rbac.yaml), and a COMMAND that logs start, a heartbeat every 10 ms and stop
// on CLOCK_MONOTONIC (std::chrono::steady_clock here) and takes 2 s to stop after SIGTERM. The test reads those logs:
// every window, not samples of them.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "election/handoff.h"
#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

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

// One active window of a COMMAND (µs on CLOCK_MONOTONIC).
struct Window {
  std::string pod;
  long long start = 0;
  long long last = 0;  // the last heartbeat or stop
  bool stopped = false;
  long long token = -1;
};

std::vector<Window> readWindows(const fs::path& dir) {
  std::vector<Window> windows;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".log") continue;
    std::ifstream in(entry.path());
    std::string line;
    const std::string pod = entry.path().stem().string();
    std::vector<Window> own;
    while (std::getline(in, line)) {
      std::istringstream s(line);
      std::string kind;
      long long t = 0;
      s >> kind >> t;
      if (kind == "start") {
        own.push_back({pod, t, t, false, -1});
        s >> own.back().token;
      } else if (!own.empty() && (kind == "beat" || kind == "stop")) {
        own.back().last = std::max(own.back().last, t);
        if (kind == "stop") own.back().stopped = true;
      }
    }
    windows.insert(windows.end(), own.begin(), own.end());
  }
  std::sort(windows.begin(), windows.end(), [](const Window& a, const Window& b) { return a.start < b.start; });
  return windows;
}

long long steadyMicros(std::chrono::steady_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
}

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

  // The harness's workload, with each replica running singleton-agent around the Python COMMAND.
  Json agentWorkload(const std::string& name, int replicas) const {
    Json object = workloadObject(name, replicas);
    Json& spec = object["spec"]["template"]["spec"];
    spec["serviceAccountName"] = "singleton-agent";
    spec["terminationGracePeriodSeconds"] = 10;
    const auto field = [](const char* path) { return Json{{"fieldRef", {{"fieldPath", path}}}}; };
    spec["containers"] = Json::array({{
        {"name", "main"},
        {"image", "host"},
        {"command", {agentBinary(), "--", python(), "-c", kCommandScript, dir_.string()}},
        {"env", Json::array({{{"name", "SINGLETON_WORKLOAD"}, {"value", name}},
                             {{"name", "POD_NAME"}, {"valueFrom", field("metadata.name")}},
                             {{"name", "POD_NAMESPACE"}, {"valueFrom", field("metadata.namespace")}},
                             {{"name", "POD_UID"}, {"valueFrom", field("metadata.uid")}}})},
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

  void runHandoff(const std::string& name, const std::string& label,
                  const std::function<void(const std::string&)>& trigger);

  fs::path dir_;
};

// Trigger `trigger` on the leader of `name` (its COMMAND takes 2 s to stop), then check the hand-off from the logs
// and the etcd revisions; `label` names the trigger in the output.
void OperatorHandoffTest::runHandoff(const std::string& name, const std::string& label,
                                     const std::function<void(const std::string&)>& trigger) {
  auto first = waitForSteadyLeader(name, 90s);
  ASSERT_TRUE(first) << harness().diagnostics();
  const std::string old_leader = first->name;
  const long long old_token = std::stoll(first->token.value_or("-1"));
  ASSERT_TRUE(eventually([&] { return windowOf(old_leader, old_token).has_value(); }, 30s))
      << "the leader's COMMAND never started\n"
      << harness().diagnostics();
  ASSERT_TRUE(waitForPodsReady(name, 3, 60s)) << harness().diagnostics();
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

  // The old COMMAND's last heartbeat (its stop) precedes the new one's start, on one clock.
  const Window old_window = *windowOf(old_leader, old_token);
  const Window new_window = *windowOf(next->name, new_token);
  EXPECT_TRUE(old_window.stopped) << "the old COMMAND was killed, not stopped";
  EXPECT_LT(old_window.last, new_window.start) << "the two leaders' windows overlap";
  EXPECT_GE(old_window.last - steadyMicros(triggered_at), 1'900'000) << "the old COMMAND stopped in about 2 s";
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
  runHandoff("ho", "pod deleted", [&](const std::string& leader) {
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
      {"failureThreshold", 1}};
  createWorkload(object);
  runHandoff("nr", "Ready=False",
             [&](const std::string& leader) { std::ofstream(dir_ / (leader + ".notready")) << ""; });
}

TEST_F(OperatorHandoffTest, OperatorLeaderKilledBetweenTheMoveAndTheAck) {
  createWorkload(agentWorkload("ok", 3));
  std::optional<int> killed;
  runHandoff("ok", "operator SIGKILLed after the move", [&](const std::string& leader) {
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

}  // namespace
}  // namespace singleton::testing
