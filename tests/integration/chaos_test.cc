// A bounded fault campaign on the local control plane (issue 13, part 1: `make chaos`).
//
// Actors: 3 operator replicas, op-0 and op-1 each behind its own TcpProxy, op-2 behind an ApiProxy (HTTP-aware: it
// answers, delays or drops single requests; see kApiReplica); the simulated kubelet (3 Nodes); 20 SingletonWorkloads of
// 1-3 pods, 4 of which (kAgentWorkloads) run real processes, `singleton-agent -- singleton-activity` (see
// chaos/agent_workloads.h); 3 singleton-elect groups of 3 candidates, each candidate behind its own TcpProxy, whose COMMAND is
// singleton-fenced-client writing with its fencing token to the group's FencedStore. Timings: lease 4 s, renew
// deadline 3 s, retry 1 s (operators and candidates).
//
// Faults are drawn at random from a seed (CHAOS_SEED, printed; random when unset), weighted so that the slow ones are
// rarer, until CHAOS_FAULTS faults (default 60) have been injected or CHAOS_SECONDS (optional) have passed. Several
// faults are active at once (never more than 2 of the 3 operators, or of a group's 3 candidates, held at once; one
// control-plane fault at a time). Kinds: see kKinds below. The "api"/answer/watch/request kinds act on op-2's ApiProxy,
// one at a time, preferably while op-2 leads (a follower sends little but watches), and are disarmed after 2-10 s: the
// next 2-6 matching requests (writes for 409; watches too for 429, 5xx, garbage) get a synthesized 409 / 429
// Retry-After: 1 / 500 or 503 Status, or 1-3 get a garbage or truncated 200 body, without reaching the apiserver; the
// next request is applied and its answer dropped (connection closed); watch answers arrive 1-3 s late; or every request
// reaches the apiserver 100 ms-5 s late. Their table column "api hits" counts the requests actually affected while
// armed (a follower makes few writes, so a 409 may not fire).
//
// Invariants, checked by independent observers, never by the operator's own view:
//   - never two pods of a workload labelled leader, every leader's token above every earlier one of the workload object
//     (LeaderAuditor: its own pod watch, not through any proxy; per workload uid, so a re-created workload may start
//     again);
//   - per agent workload, never two COMMAND windows overlapping, and a window of another pod always with a higher
//     token (the processes' own activity logs, on CLOCK_MONOTONIC);
//   - per elect group, the fenced store's merged history is linearizable as a fenced register and no stale write was
//     accepted (tests/unit/support/fenced_register.h);
//   - after the last fault clears, within kFinalBound: every workload with a Ready replica has exactly one steady
//   leader
//     (auditor, Lease and status agree), every group has a leader writing to its store, an operator replica holds and
//     renews the operators' Lease;
//   - no operator, candidate or kubelet process exited except by an injected signal (a candidate that lost its lease
//     exits 1 by design and is restarted, counted apart).
// Per fault, the recovery time is measured from the moment it clears to the first instant its scope is healthy again
// (operators: a replica not under a fault renews the operators' Lease; group: a running, unfrozen candidate's command
// writes to the store; workload: one Ready leader, the desired number of Ready pods, all of the current template, and
// for an agent workload the leader's COMMAND running).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "chaos/agent_workloads.h"
#include "chaos/peers.h"
#include "kube/config.h"
#include "support/elect_candidate.h"
#include "support/fenced_register.h"
#include "support/fenced_store.h"
#include "support/operator_harness.h"
#include "tools/line_connection.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

const kube::Resource kWorkloadResource{"singleton.dev", "v1alpha1", "singletonworkloads", true};

constexpr int kWorkloadCount = 20;
// The workloads whose pods run singleton-agent around singleton-activity (w01, w06, w11, w16: 2 replicas each).
bool isAgentWorkload(int index) { return index % 5 == 1; }
// An agent is frozen for less than the workloads' lease (15 s) less the agent's renew deadline: within the bound of
// docs/handoff.md (a process frozen past it can act when it resumes; that is the documented exposure, not tested).
constexpr int kAgentFreezeMinMs = 2000;
constexpr int kAgentFreezeMaxMs = 6000;
constexpr int kGroupCount = 3;
constexpr int kCandidatesPerGroup = 3;
constexpr auto kRecoveryBound = 60s;  // per fault: counted as recovered within this
constexpr auto kFinalBound = 60s;     // after the last fault clears

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

std::optional<long long> envNumber(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::strtoll(value, nullptr, 10);
}

std::string clientBinary() { return std::string(SINGLETON_BINARY_DIR) + "/tests/singleton-fenced-client"; }

// Reads a FencedStore's register ("writer/token/seq") over one kept connection.
class StoreReader {
 public:
  explicit StoreReader(int port) : connection_(port, 1) {}
  std::optional<std::string> read() {
    const std::optional<std::string> answer = connection_.call("R");
    if (!answer || answer->rfind("V ", 0) != 0) return std::nullopt;
    return answer->substr(2);
  }

 private:
  LineConnection connection_;
};

// --- fault kinds --------------------------------------------------------------------------------------------------

enum class Kind {
  kOpKill,
  kOpStop,
  kOpBlackhole,
  kOpReset,
  kCandKill,
  kCandStop,
  kCandBlackhole,
  kCandReset,
  kApiRestart,
  kApiStop,
  kEtcdStop,
  kEtcdKill,
  kPodDelete,
  kPodUnready,
  kSwitchover,
  kScale,
  kLeaseDelete,
  kTemplateChange,
  kRecreate,
  kAgentKill,
  kAgentStop,
  kNodeHeartbeat,
  kApiConflict,
  kApiThrottle,
  kApi5xx,
  kApiGarbage,
  kApiDropAnswer,
  kApiWatchLag,
  kApiDelay,
  kApiHold,
  kClientGoKill,
  kClientGoStop,
};

// What a fault's recovery is measured on.
enum class Scope { kOperators, kGroup, kWorkload, kControlPlane, kAllWorkloads };

struct KindInfo {
  Kind kind;
  const char* name;
  int weight;
  Scope scope;
};

constexpr std::array kKinds = {
    KindInfo{Kind::kOpKill, "operator SIGKILL + restart", 8, Scope::kOperators},
    KindInfo{Kind::kOpStop, "operator SIGSTOP > lease, SIGCONT", 5, Scope::kOperators},
    KindInfo{Kind::kOpBlackhole, "operator blackholed > renew deadline", 5, Scope::kOperators},
    KindInfo{Kind::kOpReset, "operator connections reset", 6, Scope::kOperators},
    KindInfo{Kind::kCandKill, "candidate SIGKILL + restart", 8, Scope::kGroup},
    KindInfo{Kind::kCandStop, "candidate SIGSTOP > lease, SIGCONT", 5, Scope::kGroup},
    KindInfo{Kind::kCandBlackhole, "candidate blackholed > renew deadline", 4, Scope::kGroup},
    KindInfo{Kind::kCandReset, "candidate connections reset", 3, Scope::kGroup},
    KindInfo{Kind::kApiRestart, "kube-apiserver restart", 1, Scope::kControlPlane},
    KindInfo{Kind::kApiStop, "kube-apiserver SIGSTOP 2-4 s", 2, Scope::kControlPlane},
    KindInfo{Kind::kEtcdStop, "etcd SIGSTOP 2-5 s", 2, Scope::kControlPlane},
    KindInfo{Kind::kEtcdKill, "etcd SIGKILL + restart", 1, Scope::kControlPlane},
    KindInfo{Kind::kPodDelete, "leader pod deleted", 8, Scope::kWorkload},
    KindInfo{Kind::kPodUnready, "leader Ready=False 3-6 s", 5, Scope::kWorkload},
    KindInfo{Kind::kSwitchover, "switchover annotation", 5, Scope::kWorkload},
    KindInfo{Kind::kScale, "scale up/down (1-3)", 4, Scope::kWorkload},
    KindInfo{Kind::kLeaseDelete, "workload Lease deleted", 5, Scope::kWorkload},
    KindInfo{Kind::kTemplateChange, "pod template changed (rolling update)", 4, Scope::kWorkload},
    KindInfo{Kind::kRecreate, "workload deleted and re-created", 2, Scope::kWorkload},
    // On the agent workloads only.
    KindInfo{Kind::kAgentKill, "agent SIGKILL (its COMMAND dies with it)", 5, Scope::kWorkload},
    KindInfo{Kind::kAgentStop, "agent SIGSTOP 2-6 s, SIGCONT", 4, Scope::kWorkload},
    KindInfo{Kind::kNodeHeartbeat, "node heartbeat stopped 12-15 s", 1, Scope::kAllWorkloads},
    // On op-2's ApiProxy, preferably while op-2 leads.
    KindInfo{Kind::kApiConflict, "api 409 (2-6 writes, 2-5 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiThrottle, "api 429 Retry-After 1 (2-6, 2-5 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApi5xx, "api 500/503 (2-6, 2-5 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiGarbage, "api garbage/truncated body (1-3, 2-5 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiDropAnswer, "answer dropped after apply (1, 3-6 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiWatchLag, "watch lag 1-3 s (5-10 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiDelay, "request delay 100 ms-5 s (3-8 s)", 8, Scope::kOperators},
    KindInfo{Kind::kApiHold, "write held on the wire past a hand-over", 4, Scope::kOperators},
    // On the client-go candidate of group 0 (kClientGoGroup), when its binary is there.
    KindInfo{Kind::kClientGoKill, "client-go candidate SIGKILL + restart", 4, Scope::kGroup},
    KindInfo{Kind::kClientGoStop, "client-go candidate SIGSTOP > lease", 3, Scope::kGroup},
};

// The operator replica behind an ApiProxy (the others keep their TcpProxy for blackholes and resets).
constexpr int kApiReplica = 2;

// client-go's leader-election example joins this group as a 4th candidate (a mixed fleet on one Lease).
constexpr int kClientGoGroup = 0;
// Clock faults (libfaketime): this operator replica runs 30 s ahead and 2 % fast, this candidate 30 s behind and 2 %
// slow; within the drift margin of lib/election/timings.h (10 % of the lease).
constexpr int kFakeTimeReplica = 1;
constexpr const char* kFakeTimeOperator = "+30s x1.02";
constexpr int kFakeTimeGroup = 1;
constexpr int kFakeTimeCandidate = 2;
constexpr const char* kFakeTimeCandidateSpec = "-30s x0.98";

const KindInfo& info(Kind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k;
  }
  return kKinds[0];
}

bool usesApi(Kind kind) {
  return kind == Kind::kPodDelete || kind == Kind::kPodUnready || kind == Kind::kSwitchover || kind == Kind::kScale ||
         kind == Kind::kLeaseDelete || kind == Kind::kNodeHeartbeat || kind == Kind::kTemplateChange ||
         kind == Kind::kRecreate;
}
bool controlPlane(Kind kind) { return info(kind).scope == Scope::kControlPlane; }
bool apiAnswer(Kind kind) {
  return kind == Kind::kApiConflict || kind == Kind::kApiThrottle || kind == Kind::kApi5xx ||
         kind == Kind::kApiGarbage || kind == Kind::kApiDropAnswer || kind == Kind::kApiWatchLag ||
         kind == Kind::kApiDelay;
}

struct KindStats {
  int injected = 0;
  int recovered = 0;
  int unrecovered = 0;
  long long worst_ms = 0;
  long long total_ms = 0;
  std::uint64_t hit = 0;  // api kinds: requests the proxy answered, delayed or dropped while armed
};

// --- the campaign ---------------------------------------------------------------------------------------------------

class Campaign {
 public:
  struct Candidate {
    int group = 0;
    int index = 0;
    int incarnation = 0;
    std::string writer;  // also its identity: g<group>c<index>r<incarnation>
    std::unique_ptr<Process> process;
    std::unique_ptr<TcpProxy> proxy;
    std::filesystem::path kubeconfig;
    bool client_go = false;  // client-go's example, not singleton-elect
    std::string faketime;    // FAKETIME it runs under ("": the real clocks)
    bool killed = false;     // we SIGKILLed this incarnation
    bool stopped = false;
    bool busy = false;
  };
  struct Group {
    std::string lease;  // ns/name
    std::unique_ptr<FencedStore> store;
    std::unique_ptr<StoreReader> reader;
    std::filesystem::path dir;
    std::string value;  // the register's last value seen
    Clock::time_point changed{};
  };
  struct Workload {
    std::string name;
    int replicas = 2;
    bool busy = false;
    bool deleted = false;  // between the delete and the re-create of kRecreate
    int template_revision = 0;
    std::set<std::string> stale_hashes;          // template hashes before the last template change
    std::unique_ptr<chaos::ActivityTail> tail;   // agent workloads: their pods' COMMAND windows
  };
  struct Active {
    Kind kind;
    int target = -1;
    Clock::time_point clear_at;
    std::function<void()> clear;
    // When set, the clear also waits (without holding up the loop) until this holds, at most kClearWait past clear_at.
    std::function<bool()> ready_to_clear;
  };
  static constexpr auto kClearWait = 60s;
  struct Pending {
    Kind kind;
    int target = -1;
    Clock::time_point cleared;
  };

  Campaign(OperatorHarness& harness, LeaderAuditor& auditor, std::string ns, std::uint64_t seed, int interval_ms)
      : h_(harness), auditor_(auditor), ns_(std::move(ns)), rng_(seed), interval_ms_(interval_ms) {}

  ~Campaign() {
    // Whatever happens, leave nothing frozen or cut off.
    for (auto& a : active_) {
      try {
        a.clear();
      } catch (...) {
      }
    }
    for (const char* c : {"etcd", "kube-apiserver"}) {
      try {
        h_.cluster().signalComponent(c, SIGCONT);
      } catch (...) {
      }
    }
    for (int i = 0; i < h_.operatorCount(); ++i) {
      h_.signalOperator(i, SIGCONT);
      if (i != kApiReplica) h_.operatorProxy(i).heal();
    }
    clearApiFaults();
    stopCandidates();
    monitor_stop_ = true;
    if (monitor_.joinable()) monitor_.join();
  }

  // --- set-up -------------------------------------------------------------------------------------------------------

  void setUp() {
    auto config = kube::loadKubeconfig({h_.cluster().kubeconfigPath().string(), ""});
    if (!config.ok()) throw std::runtime_error("kubeconfig: " + config.error().describe());
    auto transport = kube::makeTransport(*config);
    if (!transport.ok()) throw std::runtime_error("transport: " + transport.error().describe());
    monitor_client_ = std::make_unique<kube::Client>(*transport);
    monitor_ = std::thread([this] { monitorLoop(); });
    client_go_binary_ = chaos::clientGoExample(h_.cluster().binDir());
    if (!client_go_binary_) {
      std::cout << "[chaos] no " << (h_.cluster().binDir() / "leader-election-example").string()
                << ": the client-go candidate and its kinds are skipped" << std::endl;
    }
    fake_time_library_ = chaos::fakeTimeLibrary();
    if (!fake_time_library_) {
      std::cout << "[chaos] libfaketime is not installed (scripts/deps.sh): the clock faults are skipped" << std::endl;
    } else {
      std::cout << "[chaos] clock faults (libfaketime"
                << (chaos::addressSanitizerBuild() ? ", ASan: verify_asan_link_order=0" : "") << "): op-"
                << kFakeTimeReplica << " under FAKETIME=\"" << kFakeTimeOperator << "\", candidate g" << kFakeTimeGroup
                << "c" << kFakeTimeCandidate << " under FAKETIME=\"" << kFakeTimeCandidateSpec << "\"" << std::endl;
      // The harness started it on the real clocks.
      h_.signalOperator(kFakeTimeReplica, SIGTERM);
      if (!h_.waitOperatorExit(kFakeTimeReplica, 15s)) h_.signalOperator(kFakeTimeReplica, SIGKILL);
      h_.waitOperatorExit(kFakeTimeReplica, 5s);
      startOperator(kFakeTimeReplica);
    }

    const auto dir = h_.cluster().dir() / "chaos";
    std::filesystem::create_directories(dir);
    for (int i = 0; i < kWorkloadCount; ++i) {
      Workload w;
      w.name = "w" + std::string(i < 10 ? "0" : "") + std::to_string(i);
      w.replicas = i % 5 == 0 ? 3 : 2;
      if (isAgentWorkload(i)) {
        // Fresh per run (a kept cluster directory must not mix an earlier run's windows in).
        const auto activity = dir / (ns_ + "-activity-" + w.name);
        std::filesystem::remove_all(activity);
        std::filesystem::create_directories(activity);
        std::filesystem::permissions(activity, std::filesystem::perms::all);
        w.tail = std::make_unique<chaos::ActivityTail>(activity);
      }
      auto r = h_.createWorkload(objectOf(w));
      if (!r.ok()) throw std::runtime_error("create workload " + w.name + ": " + r.error().describe());
      workloads_.push_back(std::move(w));
    }
    for (int g = 0; g < kGroupCount; ++g) {
      Group group;
      group.lease = ns_ + "/chaos-g" + std::to_string(g);
      group.store = std::make_unique<FencedStore>(/*fenced=*/true);
      group.reader = std::make_unique<StoreReader>(group.store->port());
      group.dir = dir / ("g" + std::to_string(g));
      std::filesystem::create_directories(group.dir);
      groups_.push_back(std::move(group));
      const int candidates = kCandidatesPerGroup + (g == kClientGoGroup && client_go_binary_ ? 1 : 0);
      for (int c = 0; c < candidates; ++c) {
        auto cand = std::make_unique<Candidate>();
        cand->group = g;
        cand->index = c;
        cand->client_go = c == kCandidatesPerGroup;
        if (fake_time_library_ && g == kFakeTimeGroup && c == kFakeTimeCandidate) cand->faketime = kFakeTimeCandidateSpec;
        cand->proxy = std::make_unique<TcpProxy>(h_.cluster().apiserverPort());
        cand->kubeconfig = dir / ("kubeconfig-g" + std::to_string(g) + "c" + std::to_string(c));
        cand->proxy->writeKubeconfig(h_.cluster().kubeconfigPath(), cand->kubeconfig);
        candidates_.push_back(std::move(cand));
      }
    }
    for (auto& c : candidates_) startCandidate(*c);
  }

  // Everything healthy before the first fault (else the first recoveries measure the start-up).
  bool waitHealthy(std::chrono::milliseconds timeout) {
    const auto since = Clock::now();
    std::string unhealthy;
    const bool healthy = eventually(
        [&] {
          observe();
          checkActivity();
          unhealthy.clear();
          if (!operatorsHealthy(since - 1h)) unhealthy += " operators";
          for (int g = 0; g < kGroupCount; ++g) {
            if (!groupHealthy(g, since - 1h)) unhealthy += " group" + std::to_string(g);
          }
          const auto ok = workloadsHealthy();
          for (std::size_t i = 0; i < ok.size(); ++i) {
            if (!ok[i]) unhealthy += " " + workloads_[i].name;
          }
          return unhealthy.empty();
        },
        timeout, 100ms);
    if (!healthy) std::cout << "[chaos] not healthy:" << unhealthy << std::endl;
    return healthy;
  }

  // --- the run ------------------------------------------------------------------------------------------------------

  void run(int faults, std::optional<std::chrono::seconds> cap) {
    const auto started = Clock::now();
    auto next = started;
    while (injected_ < faults && (!cap || Clock::now() - started < *cap)) {
      tick();
      if (Clock::now() >= next) {
        injectOne();
        next = Clock::now() + std::chrono::milliseconds(std::uniform_int_distribution<int>(500, 1500)(rng_));
      }
      std::this_thread::sleep_for(50ms);
    }
    while (!active_.empty()) {
      tick();
      std::this_thread::sleep_for(50ms);
    }
    last_cleared_ = Clock::now();
    campaign_duration_ = last_cleared_ - started;
    // The last faults' recoveries (each within its bound).
    while (!pending_.empty()) {
      tick();
      std::this_thread::sleep_for(50ms);
    }
  }

  // After the last fault: the bounded wait for every scope; returns how long it took (nullopt: not within the bound).
  struct Final {
    std::optional<long long> recovered_ms;
    std::vector<std::string> failures;
  };
  Final finalCheck(const std::function<bool(const std::string&, std::chrono::milliseconds)>& steady_leader) {
    Final out;
    const auto since = last_cleared_;
    const auto deadline = since + kFinalBound;
    auto remaining = [&] {
      return std::max(0ms, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    };
    ensureOperatorsRunning();
    bool ops = eventually(
        [&] {
          observe();
          return operatorsHealthy(since);
        },
        remaining(), 100ms);
    if (!ops) out.failures.push_back("no operator replica holds and renews the operators' Lease");
    for (int g = 0; g < kGroupCount; ++g) {
      if (!eventually(
              [&] {
                observe();
                return groupHealthy(g, since);
              },
              remaining(), 100ms)) {
        out.failures.push_back("elect group " + std::to_string(g) +
                               " has no leader writing to its store (last value '" + groups_[g].value + "')");
      }
    }
    for (const auto& w : workloads_) {
      if (steady_leader(w.name, remaining())) {
        if (w.tail && !eventually(
                          [&] {
                            checkActivity();
                            return leaderCommandRunning(w);
                          },
                          remaining(), 100ms)) {
          out.failures.push_back("agent workload " + w.name + " has a leader but its COMMAND is not running");
          failed_workloads_.insert(w.name);
        }
        continue;
      }
      // Only a workload with a Ready replica must have a leader.
      bool any_ready = false;
      auditor_.waitUntil(
          [&](const LeaderAuditor::State& s) {
            auto it = s.workloads.find(w.name);
            if (it == s.workloads.end()) return true;
            for (const auto& [name, p] : it->second.pods) any_ready = any_ready || (p.ready && !p.terminating);
            return true;
          },
          0ms);
      if (any_ready) {
        out.failures.push_back("workload " + w.name + " has a Ready replica but no steady leader");
        failed_workloads_.insert(w.name);
      } else {
        ++no_ready_replica_;
      }
    }
    if (out.failures.empty()) out.recovered_ms = ms(Clock::now() - since);
    return out;
  }

  // Stops every candidate (SIGTERM) and checks each group's history.
  struct GroupHistory {
    std::size_t operations = 0, writes = 0, accepted = 0, refused = 0, unknown = 0, stale = 0;
    bool linearizable = true;
    std::string stuck;
    long long check_ms = 0;
  };
  std::vector<GroupHistory> checkHistories() {
    stopCandidates();
    checkActivity();
    std::vector<GroupHistory> out;
    for (const auto& g : groups_) {
      std::vector<std::string> lines;
      for (const auto& entry : std::filesystem::directory_iterator(g.dir)) {
        if (entry.path().extension() != ".history") continue;
        std::ifstream in(entry.path());
        for (std::string line; std::getline(in, line);) lines.push_back(line);
      }
      const auto ops = fenced::parseHistory(lines);
      GroupHistory gh;
      gh.operations = ops.size();
      for (const auto& op : ops) {
        if (!op.is_write) continue;
        ++gh.writes;
        gh.accepted += op.result == fenced::Operation::Result::kOk;
        gh.refused += op.result == fenced::Operation::Result::kRefused;
        gh.unknown += op.result == fenced::Operation::Result::kUnknown;
      }
      const auto started = Clock::now();
      const auto check = fenced::checkLinearizable(ops);
      gh.linearizable = check.linearizable;
      gh.stuck = check.first_stuck;
      gh.stale = fenced::acceptedStaleWrites(ops);
      gh.check_ms = ms(Clock::now() - started);
      out.push_back(gh);
    }
    return out;
  }

  // --- figures
  // --------------------------------------------------------------------------------------------------------

  int injected() const { return injected_; }
  int skipped() const { return skipped_; }
  Clock::duration duration() const { return campaign_duration_; }
  const std::map<Kind, KindStats>& stats() const { return stats_; }
  const std::vector<std::string>& unexpectedExits() const { return unexpected_exits_; }
  const std::vector<std::string>& injectionErrors() const { return injection_errors_; }
  const std::vector<std::string>& activityViolations() const { return activity_violations_; }
  // Windows read from the agent workloads' activity logs, and the workloads still with a COMMAND running.
  std::size_t activityWindows() const {
    std::size_t n = 0;
    for (const auto& w : workloads_) n += w.tail ? w.tail->windowCount() : 0;
    return n;
  }
  int lostLeadershipExits() const { return lost_leadership_exits_; }
  int maxConcurrent() const { return max_concurrent_; }
  int noReadyReplica() const { return no_ready_replica_; }
  const std::set<std::string>& failedWorkloads() const { return failed_workloads_; }
  std::size_t unrecoveredPending() const { return pending_.size(); }

 private:
  // --- processes
  // ------------------------------------------------------------------------------------------------------

  void startCandidate(Candidate& c) {
    ++c.incarnation;
    c.writer = "g" + std::to_string(c.group) + "c" + std::to_string(c.index) + "r" + std::to_string(c.incarnation);
    c.killed = false;
    c.stopped = false;
    const Group& g = groups_[static_cast<std::size_t>(c.group)];
    if (c.client_go) {
      c.process = chaos::clientGoCandidate(*client_go_binary_, c.kubeconfig.string(), g.lease, c.writer);
      return;
    }
    std::vector<std::string> command = {clientBinary(),
                                        "--port",
                                        std::to_string(g.store->port()),
                                        "--writer",
                                        c.writer,
                                        "--history",
                                        (g.dir / (c.writer + ".history")).string(),
                                        "--interval-ms",
                                        std::to_string(interval_ms_)};
    if (c.faketime.empty()) {
      c.process = electCandidate(g.lease, c.writer, command, c.kubeconfig.string());
      return;
    }
    // Only the elector's clocks are faked: its COMMAND's history is timed on the real monotonic clock, as every other
    // writer's (the linearizability check compares them).
    command.insert(command.begin(), {"/usr/bin/env", "-u", "LD_PRELOAD", "-u", "FAKETIME"});
    c.process = chaos::electCandidateWithEnvironment(g.lease, c.writer, command, c.kubeconfig.string(),
                                                     chaos::fakeTimeEnvironment(*fake_time_library_, c.faketime));
  }

  // (Re)starts operator replica `i`, under libfaketime for kFakeTimeReplica. The harness has no per-replica
  // environment: the variables are set in this process only while it spawns the replica (Process copies `environ`),
  // on the campaign's thread, the only one that starts processes.
  void startOperator(int i) {
    if (i != kFakeTimeReplica || !fake_time_library_) {
      h_.startOperator(i);
      return;
    }
    const auto env = chaos::fakeTimeEnvironment(*fake_time_library_, kFakeTimeOperator);
    std::map<std::string, std::optional<std::string>> saved;
    for (const auto& [name, value] : env) {
      const char* old = std::getenv(name.c_str());
      saved[name] = old != nullptr ? std::optional<std::string>(old) : std::nullopt;
      ::setenv(name.c_str(), value.c_str(), 1);
    }
    const auto restore = [&] {
      for (const auto& [name, old] : saved) {
        if (old) {
          ::setenv(name.c_str(), old->c_str(), 1);
        } else {
          ::unsetenv(name.c_str());
        }
      }
    };
    try {
      h_.startOperator(i);
    } catch (...) {
      restore();
      throw;
    }
    restore();
  }
  void ensureOperatorsRunning() {
    for (int i = 0; i < h_.operatorCount(); ++i) {
      if (!h_.operatorRunning(i)) startOperator(i);
    }
  }

  void stopCandidates() {
    for (auto& c : candidates_) {
      if (!c->process) continue;
      if (c->stopped) c->process->signal(SIGCONT);
      c->stopped = false;
      if (c->proxy) c->proxy->heal();
      if (c->process->running()) c->process->signal(SIGTERM);
    }
    for (auto& c : candidates_) {
      if (!c->process) continue;
      if (!c->process->wait(20s)) c->process->signal(SIGKILL);
      c->process->wait(5s);
      c->process.reset();
    }
  }

  Candidate* candidateByWriter(const std::string& writer) {
    for (auto& c : candidates_) {
      if (c->writer == writer) return c.get();
    }
    return nullptr;
  }

  // Exits nobody asked for; restarts.
  void checkProcesses() {
    for (int i = 0; i < h_.operatorCount(); ++i) {
      if (op_stopped_[static_cast<std::size_t>(i)] || h_.operatorRunning(i)) continue;
      const auto status = h_.waitOperatorExit(i, 0ms);
      unexpected_exits_.push_back("operator op-" + std::to_string(i) + " exited with status " +
                                  std::to_string(status.value_or(-1)) + "\n" + h_.operatorLogTail(i, 30));
      startOperator(i);
    }
    for (auto& c : candidates_) {
      if (c->stopped || c->process->running()) continue;
      const int status = c->process->wait(0ms).value_or(-1);
      if (status == 128 + SIGKILL && c->killed) {
        // ours
      } else if (status == (c->client_go ? 0 : 1)) {
        // Its term ended (frozen or cut off past the lease): by design, a restart. client-go's example exits 0.
        ++lost_leadership_exits_;
      } else {
        unexpected_exits_.push_back(
            "candidate " + c->writer + " exited with status " + std::to_string(status) + "\n" +
            c->process->stderrText().substr(c->process->stderrText().size() -
                                            std::min<std::size_t>(2000, c->process->stderrText().size())));
      }
      startCandidate(*c);
    }
    if (!kubelet_dead_ && !h_.kubelet().running()) {
      kubelet_dead_ = true;
      unexpected_exits_.push_back("the simulated kubelet exited\n" + h_.kubeletLogTail(30));
    }
  }

  // --- observers
  // ------------------------------------------------------------------------------------------------------

  // The operators' Lease, polled on a thread of its own (a stalled control plane must not hold up the faults' clears).
  void monitorLoop() {
    std::string last_rv;
    while (!monitor_stop_) {
      for (int g = 0; g < kGroupCount; ++g) {
        auto lease = monitor_client_->get(kube::kLeases, ns_, "chaos-g" + std::to_string(g));
        if (!lease.ok()) continue;
        const std::string rv = (*lease)["metadata"].value("resourceVersion", "");
        std::lock_guard lock(monitor_mutex_);
        LeaseSeen& seen = group_leases_[static_cast<std::size_t>(g)];
        if (rv == seen.resource_version) continue;
        seen = {(*lease)["spec"].value("holderIdentity", ""), rv, Clock::now()};
      }
      auto lease = monitor_client_->get(kube::kLeases, kOperatorNamespace, kOperatorLease);
      if (lease.ok()) {
        const std::string rv = (*lease)["metadata"].value("resourceVersion", "");
        if (rv != last_rv) {
          last_rv = rv;
          std::lock_guard lock(monitor_mutex_);
          op_holder_ = (*lease)["spec"].value("holderIdentity", "");
          op_renewed_ = Clock::now();
        }
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  // Reads every group's register.
  void observe() {
    for (auto& g : groups_) {
      if (auto v = g.reader->read(); v && *v != g.value) {
        g.value = *v;
        g.changed = Clock::now();
      }
    }
  }

  // A replica not under a fault renewed the operators' Lease after `since`, and lately.
  bool operatorsHealthy(Clock::time_point since) {
    std::string holder;
    Clock::time_point renewed;
    {
      std::lock_guard lock(monitor_mutex_);
      holder = op_holder_;
      renewed = op_renewed_;
    }
    if (renewed <= since || Clock::now() - renewed > h_.leaseDuration()) return false;
    for (int i = 0; i < h_.operatorCount(); ++i) {
      if (OperatorHarness::identity(i) != holder) continue;
      const auto u = static_cast<std::size_t>(i);
      return h_.operatorRunning(i) && !op_stopped_[u] && !op_blackholed_[u] && !(i == kApiReplica && api_faulted_);
    }
    return false;
  }

  // A running, unfrozen candidate's command wrote to the store after `since`, and lately.
  // Or a running, unfrozen client-go candidate holds the group's Lease and renewed it after `since`, and lately.
  bool groupHealthy(int g, Clock::time_point since) {
    const Group& group = groups_[static_cast<std::size_t>(g)];
    const auto runs = [](const Candidate* c) {
      return c != nullptr && !c->stopped && c->process && c->process->running();
    };
    if (group.changed > since && Clock::now() - group.changed <= 3s &&
        runs(candidateByWriter(group.value.substr(0, group.value.find('/'))))) {
      return true;
    }
    LeaseSeen lease;
    {
      std::lock_guard lock(monitor_mutex_);
      lease = group_leases_[static_cast<std::size_t>(g)];
    }
    const Candidate* holder = candidateByWriter(lease.holder);
    return holder != nullptr && holder->client_go && runs(holder) && lease.changed > since &&
           Clock::now() - lease.changed <= 3s;
  }

  // Per workload: exactly one leader (Ready, with a token, not terminating), the desired number of Ready pods, none
  // of a template older than the last change, and for an agent workload the leader's COMMAND running with its token
  // (its activity log, not the operator's view).
  std::vector<bool> workloadsHealthy() {
    std::vector<bool> out(workloads_.size(), false);
    const auto now = Clock::now();
    auditor_.waitUntil(
        [&](const LeaderAuditor::State& s) {
          for (std::size_t i = 0; i < workloads_.size(); ++i) {
            const Workload& w = workloads_[i];
            auto it = s.workloads.find(w.name);
            if (w.deleted || it == s.workloads.end() || it->second.leaders.size() != 1) continue;
            int ready = 0, live = 0;
            bool leader_ok = false, current = true;
            std::set<std::string> hashes;
            for (const auto& [name, p] : it->second.pods) {
              if (p.terminating) continue;
              ++live;
              ready += p.ready;
              hashes.insert(p.template_hash);
              current = current && !w.stale_hashes.contains(p.template_hash);
              if (!p.leader() || !p.ready || !p.token) continue;
              leader_ok = !w.tail || w.tail->running(name, std::strtoll(p.token->c_str(), nullptr, 10), now, 1000ms);
            }
            out[i] = leader_ok && current && hashes.size() <= 1 && live == w.replicas && ready == live;
          }
          return true;
        },
        0ms);
    return out;
  }

  // The workload's object as the campaign last changed it (replicas, template revision).
  Json objectOf(const Workload& w) const {
    Json object = workloadObject(ns_, w.name, w.replicas);
    if (w.tail) object = chaos::agentWorkload(std::move(object), w.tail->dir());
    if (w.template_revision > 0) {
      object["spec"]["template"]["metadata"]["annotations"]["chaos.singleton.dev/revision"] =
          std::to_string(w.template_revision);
    }
    return object;
  }

  // The agent workload's one leader runs its COMMAND with its token (its activity log beat within the last second).
  bool leaderCommandRunning(const Workload& w) {
    const auto leader = auditor_.currentLeader(w.name);
    return leader && leader->token &&
           w.tail->running(leader->name, std::strtoll(leader->token->c_str(), nullptr, 10), Clock::now(), 1000ms);
  }

  // Reads the agent workloads' new activity and records any overlap or token order violation.
  void checkActivity() {
    for (auto& w : workloads_) {
      if (!w.tail) continue;
      w.tail->refresh();
      for (auto& v : w.tail->newViolations()) activity_violations_.push_back(w.name + ": " + v);
    }
  }

  // --- the loop
  // -------------------------------------------------------------------------------------------------------

  void tick() {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < active_.size();) {
      const bool ready = !active_[i].ready_to_clear || now > active_[i].clear_at + kClearWait ||
                         (active_[i].clear_at <= now && active_[i].ready_to_clear());
      if (active_[i].clear_at <= now && ready) {
        Active a = std::move(active_[i]);
        active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
        try {
          a.clear();
        } catch (const std::exception& e) {
          injection_errors_.push_back(std::string(info(a.kind).name) + " (clearing): " + e.what());
        }
        pending_.push_back({a.kind, a.target, Clock::now()});
      } else {
        ++i;
      }
    }
    checkProcesses();
    checkActivity();
    observe();
    if (pending_.empty()) return;
    const auto workloads = workloadsHealthy();
    const bool all_workloads = std::all_of(workloads.begin(), workloads.end(), [](bool b) { return b; });
    for (std::size_t i = 0; i < pending_.size();) {
      const Pending& p = pending_[i];
      bool healthy = false;
      switch (info(p.kind).scope) {
        case Scope::kOperators:
          healthy = operatorsHealthy(p.cleared);
          break;
        case Scope::kGroup:
          healthy = groupHealthy(p.target, p.cleared);
          break;
        case Scope::kWorkload:
          healthy = workloads[static_cast<std::size_t>(p.target)];
          break;
        case Scope::kControlPlane:
          healthy = operatorsHealthy(p.cleared);
          for (int g = 0; g < kGroupCount; ++g) healthy = healthy && groupHealthy(g, p.cleared);
          break;
        case Scope::kAllWorkloads:
          healthy = all_workloads;
          break;
      }
      const auto took = Clock::now() - p.cleared;
      KindStats& s = stats_[p.kind];
      if (healthy) {
        ++s.recovered;
        s.worst_ms = std::max(s.worst_ms, ms(took));
        s.total_ms += ms(took);
      } else if (took > kRecoveryBound) {
        ++s.unrecovered;
      } else {
        ++i;
        continue;
      }
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }

  template <typename T>
  T pick(const std::vector<T>& from) {
    return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng_)];
  }
  std::chrono::milliseconds hold(int lo_ms, int hi_ms) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(lo_ms, hi_ms)(rng_));
  }
  int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  bool activeOf(const std::function<bool(const Active&)>& match) const {
    return std::any_of(active_.begin(), active_.end(), match);
  }

  void injectOne() {
    int total = 0;
    for (const auto& k : kKinds) total += k.weight;
    for (int attempt = 0; attempt < 20; ++attempt) {
      int roll = std::uniform_int_distribution<int>(0, total - 1)(rng_);
      const KindInfo* chosen = &kKinds[0];
      for (const auto& k : kKinds) {
        if (roll < k.weight) {
          chosen = &k;
          break;
        }
        roll -= k.weight;
      }
      bool done = false;
      try {
        done = tryInject(chosen->kind);
      } catch (const std::exception& e) {
        injection_errors_.push_back(std::string(chosen->name) + ": " + e.what());
      }
      if (done) {
        ++injected_;
        ++stats_[chosen->kind].injected;
        max_concurrent_ = std::max(max_concurrent_, static_cast<int>(active_.size()));
        return;
      }
    }
    ++skipped_;
  }

  void addActive(Kind kind, int target, std::chrono::milliseconds how_long, std::function<void()> clear) {
    active_.push_back({kind, target, Clock::now() + how_long, std::move(clear), nullptr});
  }
  void instant(Kind kind, int target) { pending_.push_back({kind, target, Clock::now()}); }

  // One fault of `kind` on an eligible target; false when none is eligible now.
  bool tryInject(Kind kind) {
    const bool cp_active = activeOf([](const Active& a) { return controlPlane(a.kind); });
    if (usesApi(kind) && cp_active) return false;
    if (controlPlane(kind) && (cp_active || activeOf([](const Active& a) { return usesApi(a.kind); }))) {
      return false;
    }
    switch (kind) {
      case Kind::kOpKill:
      case Kind::kOpStop:
      case Kind::kOpBlackhole:
      case Kind::kOpReset: {
        int held = 0;
        std::vector<int> free;
        for (int i = 0; i < h_.operatorCount(); ++i) {
          if (op_busy_[static_cast<std::size_t>(i)]) {
            ++held;
          } else if (i != kApiReplica || kind == Kind::kOpKill || kind == Kind::kOpStop) {
            free.push_back(i);  // op-2 has no TcpProxy to blackhole or reset
          }
        }
        if (free.empty() || ((kind == Kind::kOpStop || kind == Kind::kOpBlackhole) && held >= 2)) return false;
        // Half the time the operator leader, when it is free.
        std::optional<int> leader;
        {
          std::lock_guard lock(monitor_mutex_);
          for (int i : free) {
            if (OperatorHarness::identity(i) == op_holder_) leader = i;
          }
        }
        const int i = leader && std::bernoulli_distribution(0.5)(rng_) ? *leader : pick(free);
        const auto u = static_cast<std::size_t>(i);
        if (kind == Kind::kOpKill) {
          h_.signalOperator(i, SIGKILL);
          h_.waitOperatorExit(i, 10s);
          startOperator(i);
          instant(kind, i);
        } else if (kind == Kind::kOpStop) {
          op_busy_[u] = op_stopped_[u] = true;
          h_.signalOperator(i, SIGSTOP);
          addActive(kind, i, h_.leaseDuration() + hold(1000, 3000), [this, i, u] {
            h_.signalOperator(i, SIGCONT);
            op_busy_[u] = op_stopped_[u] = false;
          });
        } else if (kind == Kind::kOpBlackhole) {
          op_busy_[u] = op_blackholed_[u] = true;
          h_.operatorProxy(i).blackhole();
          addActive(kind, i, hold(3500, 6000), [this, i, u] {
            h_.operatorProxy(i).heal();
            op_busy_[u] = op_blackholed_[u] = false;
          });
        } else {
          h_.operatorProxy(i).resetAll();
          instant(kind, i);
        }
        return true;
      }
      case Kind::kCandKill:
      case Kind::kCandStop:
      case Kind::kCandBlackhole:
      case Kind::kCandReset: {
        const int g = std::uniform_int_distribution<int>(0, kGroupCount - 1)(rng_);
        int held = 0;
        std::vector<Candidate*> free;
        Candidate* leader = nullptr;
        const std::string writer =
            groups_[static_cast<std::size_t>(g)].value.substr(0, groups_[static_cast<std::size_t>(g)].value.find('/'));
        for (auto& c : candidates_) {
          if (c->group != g) continue;
          if (c->busy) {
            ++held;
            continue;
          }
          free.push_back(c.get());
          if (c->writer == writer) leader = c.get();
        }
        if (free.empty() || ((kind == Kind::kCandStop || kind == Kind::kCandBlackhole) && held >= 2)) return false;
        Candidate* c = leader != nullptr && std::bernoulli_distribution(0.6)(rng_) ? leader : pick(free);
        if (kind == Kind::kCandKill) {
          c->killed = true;
          c->process->signal(SIGKILL);
          c->process->wait(5s);
          startCandidate(*c);
          instant(kind, g);
        } else if (kind == Kind::kCandStop) {
          c->busy = c->stopped = true;
          c->process->signal(SIGSTOP);
          addActive(kind, g, 4000ms + hold(1000, 3000), [c] {
            c->process->signal(SIGCONT);
            c->busy = c->stopped = false;
          });
        } else if (kind == Kind::kCandBlackhole) {
          c->busy = true;
          c->proxy->blackhole();
          addActive(kind, g, hold(3500, 6000), [c] {
            c->proxy->heal();
            c->busy = false;
          });
        } else {
          c->proxy->resetAll();
          instant(kind, g);
        }
        return true;
      }
      case Kind::kApiRestart:
        h_.cluster().restartApiserver(/*kill=*/std::bernoulli_distribution(0.5)(rng_));
        instant(kind, -1);
        return true;
      case Kind::kEtcdKill:
        h_.cluster().restartEtcd(/*kill=*/true);
        instant(kind, -1);
        return true;
      case Kind::kApiStop:
      case Kind::kEtcdStop: {
        const std::string component = kind == Kind::kApiStop ? "kube-apiserver" : "etcd";
        h_.cluster().signalComponent(component, SIGSTOP);
        addActive(kind, -1, kind == Kind::kApiStop ? hold(2000, 4000) : hold(2000, 5000),
                  [this, component] { h_.cluster().signalComponent(component, SIGCONT); });
        return true;
      }
      case Kind::kApiConflict:
      case Kind::kApiThrottle:
      case Kind::kApi5xx:
      case Kind::kApiGarbage:
      case Kind::kApiDropAnswer:
      case Kind::kApiWatchLag:
      case Kind::kApiDelay:
        return injectApiFault(kind);
      case Kind::kApiHold:
        return injectHold();
      case Kind::kClientGoKill:
      case Kind::kClientGoStop: {
        Candidate* c = nullptr;
        int held = 0;
        for (auto& cand : candidates_) {
          if (cand->group != kClientGoGroup) continue;
          held += cand->busy;
          if (cand->client_go) c = cand.get();
        }
        if (c == nullptr || c->busy || (kind == Kind::kClientGoStop && held >= 2)) return false;
        if (kind == Kind::kClientGoKill) {
          c->killed = true;
          c->process->signal(SIGKILL);
          c->process->wait(5s);
          startCandidate(*c);
          instant(kind, kClientGoGroup);
        } else {
          c->busy = c->stopped = true;
          c->process->signal(SIGSTOP);
          addActive(kind, kClientGoGroup, 4000ms + hold(1000, 3000), [c] {
            c->process->signal(SIGCONT);
            c->busy = c->stopped = false;
          });
        }
        return true;
      }
      case Kind::kNodeHeartbeat: {
        if (activeOf([](const Active& a) { return a.kind == Kind::kNodeHeartbeat; })) return false;
        const auto nodes = h_.nodeNames();
        const std::string node = pick(nodes);
        if (!patchNodeHeartbeat(node, "stopped")) return false;
        addActive(kind, -1, hold(12000, 15000),
                  [this, node] { eventually([&] { return patchNodeHeartbeat(node, nullptr); }, 30s, 200ms); });
        return true;
      }
      default:
        break;
    }
    // Workload faults.
    const bool agent_kind = kind == Kind::kAgentKill || kind == Kind::kAgentStop;
    std::vector<int> free;
    for (std::size_t i = 0; i < workloads_.size(); ++i) {
      const Workload& w = workloads_[i];
      if (w.busy || (agent_kind && !w.tail)) continue;
      // An agent workload is not re-created: its windows' tokens may start again with the new object, which the
      // window checks (per workload name) would have to be told about.
      if (kind == Kind::kRecreate && w.tail) continue;
      free.push_back(static_cast<int>(i));
    }
    if (free.empty()) return false;
    const int wi = pick(free);
    Workload& w = workloads_[static_cast<std::size_t>(wi)];
    const auto leader = auditor_.currentLeader(w.name);
    switch (kind) {
      case Kind::kPodDelete: {
        if (!leader || leader->terminating) return false;
        if (!h_.client().remove(kube::kPods, ns_, leader->name).ok()) return false;
        instant(kind, wi);
        return true;
      }
      case Kind::kPodUnready: {
        if (!leader || leader->terminating) return false;
        const std::string pod = leader->name;
        if (!annotatePod(pod, "false")) return false;
        w.busy = true;
        addActive(kind, wi, hold(3000, 6000), [this, pod, wi] {
          // The pod may be gone (replaced); then there is nothing to restore.
          eventually([&] { return annotatePod(pod, nullptr) || !h_.getPod(ns_, pod); }, 30s, 200ms);
          workloads_[static_cast<std::size_t>(wi)].busy = false;
        });
        return true;
      }
      case Kind::kSwitchover: {
        if (!leader) return false;
        std::vector<std::string> targets;
        auditor_.waitUntil(
            [&](const LeaderAuditor::State& s) {
              auto it = s.workloads.find(w.name);
              if (it == s.workloads.end()) return true;
              for (const auto& [name, p] : it->second.pods) {
                if (!p.leader() && p.ready && !p.terminating) targets.push_back(name);
              }
              return true;
            },
            0ms);
        if (targets.empty()) return false;
        const auto r =
            h_.client().mergePatch(kWorkloadResource, ns_, w.name,
                                   {{"metadata", {{"annotations", {{"singleton.dev/switchover-to", pick(targets)}}}}}});
        if (!r.ok()) return false;
        instant(kind, wi);
        return true;
      }
      case Kind::kScale: {
        std::vector<int> sizes;
        for (int n = 1; n <= 3; ++n) {
          if (n != w.replicas) sizes.push_back(n);
        }
        const int n = pick(sizes);
        if (!h_.client().mergePatch(kWorkloadResource, ns_, w.name, {{"spec", {{"replicas", n}}}}).ok()) return false;
        w.replicas = n;
        instant(kind, wi);
        return true;
      }
      case Kind::kLeaseDelete: {
        if (!h_.client().remove(kube::kLeases, ns_, w.name + "-leader").ok()) return false;
        instant(kind, wi);
        return true;
      }
      case Kind::kTemplateChange: {
        // Every pod's template is outdated now: recovered once all pods are of one newer template.
        std::set<std::string> hashes;
        auditor_.waitUntil(
            [&](const LeaderAuditor::State& s) {
              if (auto it = s.workloads.find(w.name); it != s.workloads.end()) {
                for (const auto& [name, p] : it->second.pods) hashes.insert(p.template_hash);
              }
              return true;
            },
            0ms);
        const Json patch = {{"spec",
                             {{"template",
                               {{"metadata",
                                 {{"annotations",
                                   {{"chaos.singleton.dev/revision", std::to_string(w.template_revision + 1)}}}}}}}}}};
        if (!h_.client().mergePatch(kWorkloadResource, ns_, w.name, patch).ok()) return false;
        ++w.template_revision;
        w.stale_hashes.insert(hashes.begin(), hashes.end());
        instant(kind, wi);
        return true;
      }
      case Kind::kRecreate: {
        if (!h_.client().remove(kWorkloadResource, ns_, w.name).ok()) return false;
        w.busy = w.deleted = true;
        const std::string name = w.name;
        active_.push_back(
            {kind, wi, Clock::now() + hold(1000, 3000),
             [this, wi] {
               Workload& again = workloads_[static_cast<std::size_t>(wi)];
               again.stale_hashes.clear();  // a new object: its pods are all new
               eventually([&] { return h_.createWorkload(objectOf(again)).ok(); }, 30s, 200ms);
               again.busy = again.deleted = false;
             },
             // The old object and every pod of it gone first (their names are the new object's).
             [this, name] {
               bool pods_gone = false;
               auditor_.waitUntil(
                   [&](const LeaderAuditor::State& s) {
                     auto it = s.workloads.find(name);
                     pods_gone = it == s.workloads.end() || it->second.pods.empty();
                     return true;
                   },
                   0ms);
               return pods_gone && !h_.getWorkload(ns_, name);
             }});
        return true;
      }
      case Kind::kAgentKill:
      case Kind::kAgentStop: {
        // The leader's agent more often than not, else any live pod's.
        std::vector<LeaderAuditor::PodView> pods;
        auditor_.waitUntil(
            [&](const LeaderAuditor::State& s) {
              if (auto it = s.workloads.find(w.name); it != s.workloads.end()) {
                for (const auto& [name, p] : it->second.pods) {
                  if (!p.terminating) pods.push_back(p);
                }
              }
              return true;
            },
            0ms);
        if (pods.empty()) return false;
        const LeaderAuditor::PodView target =
            leader && !leader->terminating && std::bernoulli_distribution(0.6)(rng_) ? *leader : pick(pods);
        const auto pid = chaos::agentProcessOfPod(target.uid);
        if (!pid) return false;
        if (kind == Kind::kAgentKill) {
          if (::kill(*pid, SIGKILL) != 0) return false;
          instant(kind, wi);
          return true;
        }
        if (::kill(*pid, SIGSTOP) != 0) return false;
        w.busy = true;
        const pid_t frozen = *pid;
        addActive(kind, wi, hold(kAgentFreezeMinMs, kAgentFreezeMaxMs), [this, frozen, wi] {
          ::kill(frozen, SIGCONT);
          workloads_[static_cast<std::size_t>(wi)].busy = false;
        });
        return true;
      }
      default:
        return false;
    }
  }

  // One fault on op-2's ApiProxy (one at a time, and not while op-2 is held otherwise), cleared after a few seconds.
  bool injectApiFault(Kind kind) {
    constexpr auto u = static_cast<std::size_t>(kApiReplica);
    if (op_busy_[u]) return false;
    int held = 0;
    for (bool b : op_busy_) held += b;
    if (held >= 2) return false;
    // A follower sends little but watches (its caches are warm, only the leader reconciles): while op-2 follows, half
    // the draws are refused (another kind is drawn), so more of these faults meet a leader's requests.
    bool leads = false;
    {
      std::lock_guard lock(monitor_mutex_);
      leads = op_holder_ == OperatorHarness::identity(kApiReplica);
    }
    if (!leads && std::bernoulli_distribution(0.5)(rng_)) return false;
    ApiProxy& proxy = h_.operatorApiProxy(kApiReplica);
    const ApiProxy::Match all = [](const ApiProxy::Request&) { return true; };
    const ApiProxy::Match any = [](const ApiProxy::Request& r) { return !r.watch(); };
    const ApiProxy::Match writes = [](const ApiProxy::Request& r) { return r.method != "GET" && !r.watch(); };
    const ApiProxy::Match watches = [](const ApiProxy::Request& r) { return r.watch(); };
    std::chrono::milliseconds how_long = hold(2000, 5000);
    switch (kind) {
      case Kind::kApiConflict:
        proxy.injectAnswers(writes, between(2, 6), ApiProxy::Answer::kConflict);
        break;
      case Kind::kApiThrottle:
        proxy.injectAnswers(all, between(2, 6), ApiProxy::Answer::kTooManyRequests);
        break;
      case Kind::kApi5xx:
        proxy.injectAnswers(
            all, between(2, 6),
            std::bernoulli_distribution(0.5)(rng_) ? ApiProxy::Answer::kInternalError : ApiProxy::Answer::kUnavailable);
        break;
      case Kind::kApiGarbage:
        proxy.injectAnswers(
            all, between(1, 3),
            std::bernoulli_distribution(0.5)(rng_) ? ApiProxy::Answer::kGarbage : ApiProxy::Answer::kTruncated);
        break;
      case Kind::kApiDropAnswer:
        proxy.dropNextAnswer(any);
        how_long = hold(3000, 6000);
        break;
      case Kind::kApiWatchLag:
        proxy.setWatchDelay(watches, hold(1000, 3000));
        how_long = hold(5000, 10000);
        break;
      case Kind::kApiDelay:
        proxy.setDelay(any, hold(100, 5000));
        how_long = hold(3000, 8000);
        break;
      default:
        return false;
    }
    op_busy_[u] = api_faulted_ = true;
    const std::uint64_t before = apiHits();
    addActive(kind, kApiReplica, how_long, [this, kind, before] {
      clearApiFaults();
      stats_[kind].hit += apiHits() - before;
      op_busy_[static_cast<std::size_t>(kApiReplica)] = api_faulted_ = false;
    });
    return true;
  }

  // Everything op-2's proxy answered itself, delayed or dropped so far (watch lag excepted).
  std::uint64_t apiHits() {
    ApiProxy& proxy = h_.operatorApiProxy(kApiReplica);
    return proxy.injectedAnswers() + proxy.delayedRequests() + proxy.drops().size();
  }

  // Holds op-2's next pod write on the wire, and every write of the operators' Lease it sends meanwhile (so it cannot
  // renew: the hand-over comes from that, nothing is frozen or cut off), while it leads; everything held is released
  // once another replica holds the operators' Lease. What the apiserver answered each late request is recorded.
  bool injectHold() {
    constexpr auto u = static_cast<std::size_t>(kApiReplica);
    if (op_busy_[u]) return false;
    int held = 0;
    for (bool b : op_busy_) held += b;
    if (held >= 2) return false;
    {
      std::lock_guard lock(monitor_mutex_);
      if (op_holder_ != OperatorHarness::identity(kApiReplica)) return false;
    }
    ApiProxy& proxy = h_.operatorApiProxy(kApiReplica);
    const std::string operator_lease = std::string("/apis/coordination.k8s.io/v1/namespaces/") + kOperatorNamespace +
                                       "/leases/" + kOperatorLease;
    auto pod_write_held = std::make_shared<bool>(false);  // evaluated under the proxy's lock
    proxy.holdRequests([operator_lease, pod_write_held](const ApiProxy::Request& r) {
      if (r.method == "GET" || r.watch()) return false;
      if (r.path == operator_lease) return true;
      if (r.path.find("/pods") == std::string::npos || *pod_write_held) return false;
      *pod_write_held = true;
      return true;
    });
    op_busy_[u] = api_faulted_ = true;
    const std::size_t before = proxy.held().size();
    active_.push_back({Kind::kApiHold, kApiReplica, Clock::now() + 1s,
                       [this, before] {
                         ApiProxy& p = h_.operatorApiProxy(kApiReplica);
                         p.holdRequests(nullptr);
                         p.releaseHeldRequests();
                         stats_[Kind::kApiHold].hit += p.held().size() - before;
                         op_busy_[static_cast<std::size_t>(kApiReplica)] = api_faulted_ = false;
                       },
                       // Released only once another replica leads (or kClearWait later).
                       [this] {
                         std::lock_guard lock(monitor_mutex_);
                         return !op_holder_.empty() && op_holder_ != OperatorHarness::identity(kApiReplica);
                       }});
    return true;
  }

 public:
  // What became of the requests held on the wire (after the run): one line each.
  std::vector<std::string> heldRequestOutcomes() {
    std::vector<std::string> out;
    for (const auto& r : h_.operatorApiProxy(kApiReplica).held()) {
      std::ostringstream line;
      line << r.method << " " << r.path << ": held "
           << (r.released_at ? std::to_string(ms(*r.released_at - r.held_at)) + " ms" : std::string("(not released)"))
           << (r.client_gone ? " (its sender had closed the connection)" : "") << ", the apiserver answered "
           << (r.status ? std::to_string(r.status) : std::string("nothing"));
      out.push_back(line.str());
    }
    return out;
  }

 private:
  void clearApiFaults() {
    ApiProxy& proxy = h_.operatorApiProxy(kApiReplica);
    proxy.holdRequests(nullptr);
    proxy.releaseHeldRequests();
    proxy.injectAnswers(nullptr, 0, ApiProxy::Answer::kConflict);
    proxy.disarmDrop();
    proxy.setWatchDelay(nullptr, 0ms);
    proxy.setDelay(nullptr, 0ms);
  }

  bool annotatePod(const std::string& pod, const Json& value) {
    return h_.client()
        .mergePatch(kube::kPods, ns_, pod, {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", value}}}}}})
        .ok();
  }
  bool patchNodeHeartbeat(const std::string& node, const Json& value) {
    return h_.client()
        .mergePatch(kube::kNodes, "", node, {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", value}}}}}})
        .ok();
  }

  OperatorHarness& h_;
  LeaderAuditor& auditor_;
  std::string ns_;
  std::mt19937_64 rng_;
  int interval_ms_;

  std::vector<Workload> workloads_;
  std::vector<Group> groups_;
  std::vector<std::unique_ptr<Candidate>> candidates_;
  std::array<bool, 3> op_busy_{}, op_stopped_{}, op_blackholed_{};
  bool api_faulted_ = false;  // op-2's ApiProxy has a fault armed
  std::vector<Active> active_;
  std::vector<Pending> pending_;

  std::unique_ptr<kube::Client> monitor_client_;
  std::thread monitor_;
  std::atomic<bool> monitor_stop_{false};
  std::mutex monitor_mutex_;
  std::string op_holder_;
  Clock::time_point op_renewed_{};
  // Each group's Lease as the monitor last saw it change: a client-go leader writes no store, only its Lease.
  struct LeaseSeen {
    std::string holder;
    std::string resource_version;
    Clock::time_point changed{};
  };
  std::array<LeaseSeen, kGroupCount> group_leases_{};
  std::optional<std::filesystem::path> client_go_binary_;
  std::optional<std::filesystem::path> fake_time_library_;

  std::map<Kind, KindStats> stats_;
  std::vector<std::string> unexpected_exits_;
  std::vector<std::string> injection_errors_;  // a fault that could not be injected or cleared (set-up failure)
  std::vector<std::string> activity_violations_;  // agent workloads: overlapping windows, tokens out of order
  int lost_leadership_exits_ = 0;
  bool kubelet_dead_ = false;
  int injected_ = 0;
  int skipped_ = 0;
  int max_concurrent_ = 0;
  int no_ready_replica_ = 0;
  std::set<std::string> failed_workloads_;
  Clock::time_point last_cleared_{};
  Clock::duration campaign_duration_{};
};

class ChaosTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    OperatorHarness::Options options;
    options.proxy_operators = true;
    options.api_proxy_replica = kApiReplica;
    startHarness(std::move(options));
  }
};

TEST_F(ChaosTest, Campaign) {
  const std::uint64_t seed = envNumber("CHAOS_SEED") ? static_cast<std::uint64_t>(*envNumber("CHAOS_SEED"))
                                                     : std::random_device{}() % 1000000000ULL;
  const int faults = static_cast<int>(envNumber("CHAOS_FAULTS").value_or(60));
  std::optional<std::chrono::seconds> cap;
  if (auto s = envNumber("CHAOS_SECONDS"); s && *s > 0) cap = std::chrono::seconds(*s);
  std::cout << "[chaos] CHAOS_SEED=" << seed << " CHAOS_FAULTS=" << faults
            << (cap ? " CHAOS_SECONDS=" + std::to_string(cap->count()) : std::string()) << std::endl;
  RecordProperty("chaos_seed", std::to_string(seed));

  // A longer campaign writes less often: the history checker's cost grows with the history.
  // The agents' Role (docs/api.md), as the agent workloads' pods run under it.
  const auto rbac = kubectl({"apply", "-f", std::string(SINGLETON_SOURCE_DIR) + "/manifests/agent-rbac.yaml"});
  ASSERT_TRUE(rbac.ok()) << rbac.err;
  Campaign campaign(harness(), auditor(), ns(), seed, faults > 200 ? 250 : 100);
  ASSERT_NO_THROW(campaign.setUp());
  ASSERT_TRUE(campaign.waitHealthy(120s)) << "the actors did not settle before the first fault\n"
                                          << harness().diagnostics();
  std::cout << "[chaos] " << kWorkloadCount << " workloads, " << kGroupCount << " elect groups of "
            << kCandidatesPerGroup << ", 3 operators: all healthy; injecting" << std::endl;

  campaign.run(faults, cap);
  std::cout << "[chaos] " << campaign.injected() << " faults injected in " << ms(campaign.duration()) / 1000.0
            << " s (at most " << campaign.maxConcurrent() << " active at once; " << campaign.skipped()
            << " draws found no eligible target); last fault cleared" << std::endl;

  const auto final = campaign.finalCheck([&](const std::string& w, std::chrono::milliseconds timeout) {
    return waitForSteadyLeader(w, timeout).has_value();
  });
  const auto histories = campaign.checkHistories();
  const auto violations = auditor().violations();

  // --- tables
  // ---------------------------------------------------------------------------------------------------------
  std::printf("\n[chaos] seed %llu: %d faults in %.1f s\n", static_cast<unsigned long long>(seed), campaign.injected(),
              static_cast<double>(ms(campaign.duration())) / 1000.0);
  std::printf("%-40s %8s %10s %12s %12s %12s %8s\n", "fault kind", "injected", "recovered", "unrecovered", "mean ms",
              "worst ms", "api hits");
  int total_unrecovered = 0;
  for (const auto& k : kKinds) {
    const auto it = campaign.stats().find(k.kind);
    const KindStats s = it == campaign.stats().end() ? KindStats{} : it->second;
    total_unrecovered += s.unrecovered;
    std::printf("%-40s %8d %10d %12d %12lld %12lld %8s\n", k.name, s.injected, s.recovered, s.unrecovered,
                s.recovered > 0 ? s.total_ms / s.recovered : 0LL, s.worst_ms,
                (apiAnswer(k.kind) && k.kind != Kind::kApiWatchLag) || k.kind == Kind::kApiHold
                    ? std::to_string(s.hit).c_str()
                    : "-");
  }
  std::printf(
      "(recovery: from the fault clearing to its scope healthy again, bound %lld s; %zu still pending at the "
      "end;\n api hits: requests op-2's ApiProxy answered itself, delayed, held or whose answer it dropped while "
      "armed)\n",
      static_cast<long long>(kRecoveryBound.count()), campaign.unrecoveredPending());

  std::size_t two_leaders = 0, token_order = 0, other = 0;
  std::set<std::string> violating;
  for (const auto& v : violations) {
    violating.insert(v.substr(0, v.find(':')));
    if (v.find("two pods labelled leader at once") != std::string::npos) {
      ++two_leaders;
    } else if (v.find("fencing token did not increase") != std::string::npos) {
      ++token_order;
    } else {
      ++other;
    }
  }
  for (const auto& v : campaign.activityViolations()) violating.insert(v.substr(0, v.find(':')));
  std::size_t stale = 0, nonlinear = 0;
  for (const auto& g : histories) {
    stale += g.stale;
    nonlinear += g.linearizable ? 0 : 1;
  }
  std::printf("\n%-66s %10s\n", "invariant", "violations");
  std::printf("%-66s %10zu\n", "two pods of a workload labelled leader (auditor)", two_leaders);
  std::printf("%-66s %10zu\n", "fencing token not above every earlier one (auditor)", token_order);
  std::printf("%-66s %10zu\n", "token annotation on a follower / missing on a leader (auditor)", other);
  std::size_t overlaps = 0, window_tokens = 0;
  for (const auto& v : campaign.activityViolations()) {
    (v.find("overlap") != std::string::npos ? overlaps : window_tokens) += 1;
  }
  std::printf("%-66s %10zu\n", "two COMMAND windows of an agent workload overlapping (activity logs)", overlaps);
  std::printf("%-66s %10zu\n", "a COMMAND window of another pod without a higher token (logs)", window_tokens);
  std::printf("%-66s %10zu\n", "elect group history not linearizable (fenced register)", nonlinear);
  std::printf("%-66s %10zu\n", "stale writes accepted by a fenced store", stale);
  std::printf("%-66s %10zu\n", "no leader within the bound after the last fault", final.failures.size());
  std::printf("%-66s %10zu\n", "process exits not caused by an injected signal", campaign.unexpectedExits().size());
  std::printf(
      "\nfinal recovery: %s; %d workloads without a Ready replica; %d candidate exits after a lost lease "
      "(restarted)\n",
      final.recovered_ms ? (std::to_string(*final.recovered_ms) + " ms").c_str() : "NOT within the bound",
      campaign.noReadyReplica(), campaign.lostLeadershipExits());
  std::printf("agent workloads: %zu COMMAND windows read from their activity logs\n", campaign.activityWindows());
  for (const auto& line : campaign.heldRequestOutcomes()) std::printf("held on the wire: %s\n", line.c_str());
  for (std::size_t g = 0; g < histories.size(); ++g) {
    const auto& h = histories[g];
    std::printf(
        "elect group %zu: %zu operations, %zu writes (%zu accepted, %zu refused by the fence, %zu unknown), "
        "linearizable %s (checked in %lld ms), stale accepted %zu\n",
        g, h.operations, h.writes, h.accepted, h.refused, h.unknown, h.linearizable ? "yes" : "NO", h.check_ms,
        h.stale);
  }
  std::cout << std::flush;

  // --- verdict
  // ----------------------------------------------------------------------------------------------------------
  for (const auto& w : violating) std::cout << "==== timeline of " << w << "\n" << auditor().describe(w) << "\n";
  for (const auto& w : campaign.failedWorkloads()) {
    if (!violating.contains(w)) std::cout << "==== timeline of " << w << "\n" << auditor().describe(w) << "\n";
  }
  EXPECT_TRUE(violations.empty()) << violations.size() << " auditor violations, seed " << seed;
  for (const auto& v : campaign.activityViolations()) ADD_FAILURE() << v << " (seed " << seed << ")";
  EXPECT_EQ(stale, 0u) << "seed " << seed;
  for (std::size_t g = 0; g < histories.size(); ++g) {
    EXPECT_TRUE(histories[g].linearizable) << "group " << g << " stuck at " << histories[g].stuck << ", seed " << seed;
  }
  for (const auto& f : final.failures) ADD_FAILURE() << f << " (seed " << seed << ")";
  for (const auto& e : campaign.unexpectedExits()) ADD_FAILURE() << e << " (seed " << seed << ")";
  for (const auto& e : campaign.injectionErrors())
    ADD_FAILURE() << "fault injection: " << e << " (seed " << seed << ")";
  EXPECT_EQ(campaign.injected(), cap ? campaign.injected() : faults);
  (void)total_unrecovered;
}

}  // namespace
}  // namespace singleton::testing
