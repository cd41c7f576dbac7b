// The operator through control-plane disruption (issue 9), on a real control plane with three operator replicas
// (lease 4 s, renew deadline 3 s, retry 1 s) and the independent LeaderAuditor watching every pod change:
//   - kube-apiserver frozen (SIGSTOP) for 2 x lease, then SIGCONT; kube-apiserver killed and started again on its
//     port; etcd frozen for 2 x lease; etcd SIGKILLed and started again with its data.
//   After each fault: no operator process has exited, an operator leader acts (the Lease names it and its metrics
//   say it leads) within lease + retry period (+ slack for a loaded machine) of the fault clearing, and a deletion of
//   a workload's leader pod is failed over. The auditor checks throughout that no two pods are labelled leader and
//   that tokens only grow (TearDown fails the test otherwise).
//   - The operator's own Lease deleted, under running replicas and before freshly started ones (which remember no
//     token and must raise their term above the workload Leases' records): a leader-pod deletion is still failed
//     over (issue 7: terms survive their Lease).
// Each fault runs once; SINGLETON_DISRUPTION_ROUNDS=N repeats the sequence N times. SINGLETON_STALL_SECONDS sets the
// apiserver freeze (default 2 x lease) during which the replicas' CPU use is measured and printed.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;
constexpr auto kFailover = 30s;
// Beyond lease + retry period: the time a loaded 2-CPU machine (or an ASan build) takes to notice.
constexpr auto kSlack = 3s;

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

int envInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

// user + system CPU time of a process so far (from /proc/PID/stat), in milliseconds.
long long cpuMillis(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  long long utime = 0;
  long long stime = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoll(field);
    if (i == 15) {
      stime = std::stoll(field);
      break;
    }
  }
  return (utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

// Milliseconds of the day of a log line's "ts" ("2026-12-01T11:02:03.456Z"); -1 when absent.
long long tsMillis(const std::string& line) {
  const auto at = line.find("\"ts\":\"");
  if (at == std::string::npos || line.size() < at + 6 + 23) return -1;
  const std::string ts = line.substr(at + 6, 23);
  return ((std::stoll(ts.substr(11, 2)) * 60 + std::stoll(ts.substr(14, 2))) * 60 + std::stoll(ts.substr(17, 2))) *
             1000 +
         std::stoll(ts.substr(20, 3));
}

class OperatorDisruptionTest : public OperatorTest {
 protected:
  // In replica `index`'s log from line `from`: ms between "could not renew" and the next "stopped leading"; -1 when
  // the log does not show both.
  long long stopLatency(int index, std::size_t from) {
    std::ifstream in(harness().operatorLogPath(index));
    long long gave_up = -1;
    std::size_t n = 0;
    for (std::string line; std::getline(in, line); ++n) {
      if (n < from) continue;
      if (line.find("could not renew") != std::string::npos) gave_up = tsMillis(line);
      if (gave_up >= 0 && line.find("stopped leading") != std::string::npos) return tsMillis(line) - gave_up;
    }
    return -1;
  }

  std::size_t logLines(int index) {
    std::ifstream in(harness().operatorLogPath(index));
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  std::vector<pid_t> operatorPids() {
    std::vector<pid_t> pids;
    for (int i = 0; i < harness().operatorCount(); ++i) pids.push_back(harness().operatorProcess(i).pid());
    return pids;
  }

  void expectNoOperatorExited(const std::vector<pid_t>& pids, const std::string& fault) {
    for (int i = 0; i < harness().operatorCount(); ++i) {
      EXPECT_TRUE(harness().operatorRunning(i)) << fault << ": replica " << i << " exited\n"
                                                << harness().operatorLogTail(i);
      EXPECT_EQ(harness().operatorProcess(i).pid(), pids[static_cast<std::size_t>(i)])
          << fault << ": replica " << i << " was restarted";
    }
  }

  // The replica that the Lease names and whose metrics say it leads (its gate is open), if any.
  std::optional<int> actingOperatorLeader() {
    auto holder = harness().operatorLeader();
    if (!holder) return std::nullopt;
    auto [code, body] = harness().httpGet(harness().metricsPort(*holder), "/metrics");
    if (code != 200 || body.find("leader_election_master_status{name=\"singleton-operator\"} 1") == std::string::npos) {
      return std::nullopt;
    }
    return holder;
  }

  // After a fault has cleared at `cleared`: an acting operator leader, then a failover of `workload`.
  void recovers(const std::string& fault, Clock::time_point cleared, const std::string& workload,
                const std::vector<pid_t>& pids) {
    std::optional<int> leader;
    ASSERT_TRUE(eventually(
        [&] {
          leader = actingOperatorLeader();
          return leader.has_value();
        },
        harness().leaseDuration() + kSteady, 20ms))
        << fault << ": no operator leader\n"
        << harness().diagnostics();
    const auto leader_after = Clock::now() - cleared;
    EXPECT_LE(leader_after, harness().leaseDuration() + harness().retryPeriod() + kSlack)
        << fault << ": operator leader " << *leader;

    auto pod_leader = auditor().currentLeader(workload);
    ASSERT_TRUE(pod_leader) << auditor().describe(workload);
    const auto before = auditor().leaderships(workload).size();
    const auto deleted_at = Clock::now();
    ASSERT_TRUE(
        eventually([&] { return harness().client().remove(kube::kPods, ns(), pod_leader->name).ok(); }, 30s, 200ms));
    auto next = auditor().waitForLeadership(workload, before, kFailover);
    ASSERT_TRUE(next) << fault << ": no failover\n" << auditor().describe(workload) << harness().diagnostics();
    std::cout << "[disruption] " << fault << ": operator leader op-" << *leader << " acting " << ms(leader_after)
              << " ms after recovery; leader pod deleted " << ms(deleted_at - cleared)
              << " ms after recovery, failed over to " << next->pod << " (token " << next->token << ") in "
              << ms(next->at - deleted_at) << " ms; first failover done " << ms(next->at - cleared)
              << " ms after recovery\n";
    expectNoOperatorExited(pids, fault);
    ASSERT_TRUE(waitForSteadyLeader(workload, kSteady)) << auditor().describe(workload);
    ASSERT_TRUE(waitForPodsReady(workload, 3, kSteady)) << auditor().describe(workload);
  }

  void freeze(const std::string& component, std::chrono::milliseconds how_long, const std::string& fault,
              const std::string& workload) {
    const auto pids = operatorPids();
    const std::optional<int> leader = harness().operatorLeader();
    const std::size_t log_from = leader ? logLines(*leader) : 0;
    std::vector<long long> cpu_before;
    for (pid_t pid : pids) cpu_before.push_back(cpuMillis(pid));
    const auto frozen_at = Clock::now();
    harness().cluster().signalComponent(component, SIGSTOP);
    struct Thaw {
      LocalCluster& c;
      std::string component;
      ~Thaw() {
        try {
          c.signalComponent(component, SIGCONT);
        } catch (...) {
        }
      }
    } thaw{harness().cluster(), component};
    std::this_thread::sleep_for(how_long);
    const auto stalled = Clock::now() - frozen_at;
    std::ostringstream cpu;
    for (std::size_t i = 0; i < pids.size(); ++i) {
      const long long used = cpuMillis(pids[i]) - cpu_before[i];
      cpu << " op-" << i << " " << used << " ms (" << (100.0 * static_cast<double>(used) / ms(stalled)) << " %)";
    }
    harness().cluster().signalComponent(component, SIGCONT);
    const auto cleared = Clock::now();
    std::cout << "[disruption] " << fault << ": frozen " << ms(stalled)
              << " ms; operator CPU while frozen:" << cpu.str() << "\n";
    if (leader) {
      const long long latency = stopLatency(*leader, log_from);
      std::cout << "[disruption] " << fault << ": op-" << *leader << " \"could not renew\" -> \"stopped leading\" "
                << latency << " ms\n";
      if (latency >= 0) {
        EXPECT_LT(latency, 1000) << "the workers must not hold up the hand-over";
      }
    }
    recovers(fault, cleared, workload, pids);
  }
};

TEST_F(OperatorDisruptionTest, ControlPlaneFaultsNeverStopTheOperator) {
  createWorkload(workloadObject("dis", 3));
  ASSERT_TRUE(waitForSteadyLeader("dis", kSteady)) << auditor().describe("dis");
  ASSERT_TRUE(waitForPodsReady("dis", 3, kSteady)) << auditor().describe("dis");
  const auto lease = harness().leaseDuration();
  const auto stall = std::chrono::milliseconds(envInt("SINGLETON_STALL_SECONDS", 0) * 1000);
  const int rounds = std::max(1, envInt("SINGLETON_DISRUPTION_ROUNDS", 1));
  for (int round = 0; round < rounds; ++round) {
    const std::string r = rounds > 1 ? " (round " + std::to_string(round + 1) + ")" : "";
    freeze("kube-apiserver", stall.count() > 0 ? stall : 2 * lease, "apiserver SIGSTOP" + r, "dis");
    ASSERT_FALSE(HasFatalFailure());

    {
      const auto pids = operatorPids();
      harness().cluster().restartApiserver(/*kill=*/true);
      recovers("apiserver kill + start" + r, Clock::now(), "dis", pids);
      ASSERT_FALSE(HasFatalFailure());
    }

    freeze("etcd", 2 * lease, "etcd SIGSTOP" + r, "dis");
    ASSERT_FALSE(HasFatalFailure());

    {
      const auto pids = operatorPids();
      harness().cluster().restartEtcd(/*kill=*/true);
      recovers("etcd SIGKILL + start" + r, Clock::now(), "dis", pids);
      ASSERT_FALSE(HasFatalFailure());
    }
  }
}

TEST_F(OperatorDisruptionTest, DeletingTheOperatorsLeaseDoesNotFenceItOutOfItsWorkloads) {
  createWorkload(workloadObject("dis-lease", 3));
  ASSERT_TRUE(waitForSteadyLeader("dis-lease", kSteady)) << auditor().describe("dis-lease");
  ASSERT_TRUE(waitForPodsReady("dis-lease", 3, kSteady)) << auditor().describe("dis-lease");
  const auto pids = operatorPids();
  // The workload Lease records the current term; a recreated operator Lease restarts its count.
  ASSERT_TRUE(harness().client().deleteLease(kOperatorNamespace, kOperatorLease).ok());
  const auto deleted_at = Clock::now();
  // Some replica leads again (under a Lease created anew) and acts.
  ASSERT_TRUE(eventually(
      [&] {
        auto l = harness().operatorLease();
        return l && actingOperatorLeader().has_value();
      },
      harness().leaseDuration() + kSteady, 50ms))
      << harness().diagnostics();
  std::cout << "[disruption] operator Lease deleted: a leader acts again after " << ms(Clock::now() - deleted_at)
            << " ms (term " << harness().operatorLease()->spec.lease_transitions.value_or(-1) << ")\n";
  recovers("operator Lease deleted", deleted_at, "dis-lease", pids);
  ASSERT_FALSE(HasFatalFailure());
  const long long term = harness().operatorLease()->spec.lease_transitions.value_or(-1);
  auto workload_lease = getLease("dis-lease-leader");
  ASSERT_TRUE(workload_lease);
  EXPECT_EQ((*workload_lease)["metadata"]["annotations"].value("singleton.dev/operator-term", ""), std::to_string(term))
      << "the failover was written under the current term, above the recorded one";
}

TEST_F(OperatorDisruptionTest, ReplicasStartedAfterTheirLeaseWasDeletedRaiseTheirTermAndFailOver) {
  // No running replica remembers the old Lease's tokens: the recreated Lease starts again from 0, below the terms on
  // the workload Leases, and the first leader must raise its term before it can write.
  createWorkload(workloadObject("dis-fresh", 3));
  ASSERT_TRUE(waitForSteadyLeader("dis-fresh", kSteady)) << auditor().describe("dis-fresh");
  ASSERT_TRUE(waitForPodsReady("dis-fresh", 3, kSteady)) << auditor().describe("dis-fresh");
  auto recorded = getLease("dis-fresh-leader");
  ASSERT_TRUE(recorded);
  const long long recorded_term =
      std::stoll((*recorded)["metadata"]["annotations"].value("singleton.dev/operator-term", "0"));
  for (int i = 0; i < harness().operatorCount(); ++i) harness().signalOperator(i, SIGKILL);
  for (int i = 0; i < harness().operatorCount(); ++i) harness().waitOperatorExit(i, 15s);
  ASSERT_TRUE(harness().client().deleteLease(kOperatorNamespace, kOperatorLease).ok());
  for (int i = 0; i < harness().operatorCount(); ++i) harness().startOperator(i);
  const auto started_at = Clock::now();
  std::optional<int> leader;
  ASSERT_TRUE(eventually(
      [&] {
        leader = actingOperatorLeader();
        return leader.has_value();
      },
      harness().leaseDuration() + kSteady, 50ms))
      << harness().diagnostics();
  const long long term = harness().operatorLease()->spec.lease_transitions.value_or(-1);
  std::cout << "[disruption] fresh replicas after the Lease was deleted: op-" << *leader << " acts after "
            << ms(Clock::now() - started_at) << " ms with term " << term << " (workload Leases recorded "
            << recorded_term << ")\n";
  EXPECT_GT(term, recorded_term) << "raised above the recorded term";
  recovers("fresh replicas, Lease deleted", started_at, "dis-fresh", operatorPids());
  ASSERT_FALSE(HasFatalFailure());
  bool warned = false;
  for (const Json& event : harness().events(kOperatorNamespace, kOperatorLease, "Lease")) {
    warned = warned || event.value("reason", "") == "OperatorTermRaised";
  }
  EXPECT_TRUE(warned) << "a Warning event on the operator's Lease says the term was raised";
}

}  // namespace
}  // namespace singleton::testing
