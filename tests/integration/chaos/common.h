// The fault campaign's constants, small helpers and fault kinds (tests/integration/chaos_test.cc).
#pragma once

#include <signal.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "kube/client.h"
#include "tools/line_connection.h"

namespace singleton::testing::chaos {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline const kube::Resource kWorkloadResource{"singleton.dev", "v1alpha1", "singletonworkloads", true};

constexpr int kWorkloadCount = 20;
// The workloads whose pods run singleton-agent around singleton-activity (w01, w06, w11, w16: 2 replicas each).
inline bool isAgentWorkload(int index) { return index % 5 == 1; }
// An agent is frozen for less than the workloads' lease (15 s) less the agent's renew deadline: within the bound of
// docs/handoff.md (a process frozen past it can act when it resumes; that is the documented exposure, not tested).
constexpr int kAgentFreezeMinMs = 2000;
constexpr int kAgentFreezeMaxMs = 6000;
constexpr int kGroupCount = 3;
constexpr int kCandidatesPerGroup = 3;
constexpr auto kRecoveryBound = 60s;  // per fault: counted as recovered within this
constexpr auto kFinalBound = 60s;     // after the last fault clears

inline long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

inline std::optional<long long> envNumber(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::strtoll(value, nullptr, 10);
}

inline std::string clientBinary() { return std::string(SINGLETON_BINARY_DIR) + "/tests/singleton-fenced-client"; }

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
  kClientGoLeads,
  kCandApi,
  kGroupLeaseDelete,
  kOpFreezeAtWorst,
  kCandFreezeAtWorst,
  kAgentFreezeOnMove,
};

// What a fault's recovery is measured on.
enum class Scope { kOperators, kGroup, kWorkload, kControlPlane, kAllWorkloads };

struct KindInfo {
  Kind kind;
  const char* name;
  int weight;
  Scope scope;
};

inline constexpr std::array kKinds = {
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
    // On one operator replica's ApiProxy (the leader half the time), one at a time per replica.
    KindInfo{Kind::kApiConflict, "api 409 (2-6 writes, 2-5 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApiThrottle, "api 429 Retry-After 1 (2-6, 2-5 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApi5xx, "api 500/503 (2-6, 2-5 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApiGarbage, "api garbage/truncated body (1-3, 2-5 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApiDropAnswer, "answer dropped after apply (1, 3-6 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApiWatchLag, "watch lag 1-3 s (5-10 s)", 6, Scope::kOperators},
    KindInfo{Kind::kApiDelay, "request delay 100 ms-5 s (3-8 s)", 6, Scope::kOperators},
    // On the operator leader's ApiProxy.
    KindInfo{Kind::kApiHold, "write held on the wire past a hand-over", 4, Scope::kOperators},
    // On the client-go candidate of group 0 (kClientGoGroup), when its binary is there.
    KindInfo{Kind::kClientGoKill, "client-go candidate SIGKILL + restart", 3, Scope::kGroup},
    KindInfo{Kind::kClientGoStop, "client-go candidate SIGSTOP > lease", 3, Scope::kGroup},
    // Group 0's three singleton-elect candidates cut off until client-go's candidate holds the Lease.
    KindInfo{Kind::kClientGoLeads, "client-go made leader (others cut off)", 3, Scope::kGroup},
    // On one candidate's ApiProxy (the group's leader more often than not): one of the api kinds above.
    KindInfo{Kind::kCandApi, "candidate api: one of the 7 api kinds", 8, Scope::kGroup},
    // Groups other than client-go's (its example creates a deleted Lease at token 0, by design).
    KindInfo{Kind::kGroupLeaseDelete, "elect group's Lease deleted", 3, Scope::kGroup},
    // The leader frozen (SIGSTOP, past the lease) at the moment its ApiProxy relays the answer to its Lease
    // renewal (right after the compare-and-swap), or right after one of its writes went on the wire.
    KindInfo{Kind::kOpFreezeAtWorst, "operator SIGSTOP after a CAS / mid-write", 4, Scope::kOperators},
    KindInfo{Kind::kCandFreezeAtWorst, "candidate SIGSTOP after a CAS / mid-write", 4, Scope::kGroup},
    // An agent workload switched over, and the new leader's agent frozen (2-6 s) the moment the Lease names it.
    KindInfo{Kind::kAgentFreezeOnMove, "agent SIGSTOP as the Lease moves to it", 4, Scope::kWorkload},
};

// client-go's leader-election example joins this group as a 4th candidate (a mixed fleet on one Lease).
constexpr int kClientGoGroup = 0;
// Clock faults (libfaketime for the wall clock, libsingleton-clock-rate.so for the monotonic one, chaos/peers.h): this
// operator replica's wall clock runs 30 s ahead and both its clocks 2 % fast, this candidate's 30 s behind and 2 %
// slow; within the drift margin of lib/election/timings.h (10 % of the lease).
constexpr int kFakeTimeReplica = 1;
constexpr const char* kFakeTimeOperator = "+30s x1.02";
constexpr int kFakeTimeGroup = 1;
constexpr int kFakeTimeCandidate = 2;
constexpr const char* kFakeTimeCandidateSpec = "-30s x0.98";

inline const KindInfo& info(Kind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k;
  }
  return kKinds[0];
}

inline bool usesApi(Kind kind) {
  return kind == Kind::kPodDelete || kind == Kind::kPodUnready || kind == Kind::kSwitchover || kind == Kind::kScale ||
         kind == Kind::kLeaseDelete || kind == Kind::kNodeHeartbeat || kind == Kind::kTemplateChange ||
         kind == Kind::kRecreate || kind == Kind::kGroupLeaseDelete;
}
inline bool controlPlane(Kind kind) { return info(kind).scope == Scope::kControlPlane; }
inline bool apiAnswer(Kind kind) {
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
  // Api kinds: requests the proxy answered, delayed or dropped while armed. client-go made leader: the times it led.
  std::uint64_t hit = 0;
};

}  // namespace singleton::testing::chaos
