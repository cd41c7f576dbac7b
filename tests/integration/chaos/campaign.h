// The fault campaign's actors, faults and observers (tests/integration/chaos_test.cc has the whole story and the
// tables). Its members are defined in campaign.cc (the run), actors.cc (processes), faults.cc (injecting and
// clearing faults) and invariants.cc (what healthy means, the activity logs).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chaos/agent_workloads.h"
#include "chaos/common.h"
#include "chaos/peers.h"
#include "support/fenced_register.h"
#include "support/fenced_store.h"
#include "support/lease_auditor.h"
#include "support/operator_harness.h"

namespace singleton::testing::chaos {

class Campaign {
 public:
  struct Candidate {
    int group = 0;
    int index = 0;
    int incarnation = 0;
    std::string writer;  // also its identity: g<group>c<index>r<incarnation>
    std::unique_ptr<Process> process;
    // candidate → proxy (TcpProxy: blackholes, resets) → api_proxy (ApiProxy: single requests) → apiserver
    std::unique_ptr<ApiProxy> api_proxy;
    std::unique_ptr<TcpProxy> proxy;
    std::filesystem::path kubeconfig;
    bool client_go = false;  // client-go's example, not singleton-elect
    std::string faketime;    // FAKETIME it runs under ("": the real clocks)
    bool killed = false;     // we SIGKILLed this incarnation
    bool stopped = false;
    bool busy = false;
    Clock::time_point started{};
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
    std::set<std::string> stale_hashes;         // template hashes before the last template change
    std::unique_ptr<chaos::ActivityTail> tail;  // agent workloads: their pods' COMMAND windows
    // Agent workloads deleted and re-created: the earlier objects' windows (each object's own activity directory).
    std::vector<std::unique_ptr<chaos::ActivityTail>> retired_tails;
    int generation = 0;  // objects created under this name so far, less one
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

  ~Campaign();

  // --- set-up -------------------------------------------------------------------------------------------------------

  void setUp();

  // Everything healthy before the first fault (else the first recoveries measure the start-up).
  bool waitHealthy(std::chrono::milliseconds timeout);

  // --- the run ------------------------------------------------------------------------------------------------------

  void run(int faults, std::optional<std::chrono::seconds> cap);

  // After the last fault: the bounded wait for every scope; returns how long it took (nullopt: not within the bound).
  struct Final {
    std::optional<long long> recovered_ms;
    std::vector<std::string> failures;
  };
  Final finalCheck(const std::function<bool(const std::string&, std::chrono::milliseconds)>& steady_leader);

  // Stops every candidate (SIGTERM) and checks each group's history.
  struct GroupHistory {
    std::size_t operations = 0, writes = 0, accepted = 0, refused = 0, unknown = 0, stale = 0;
    bool linearizable = true;
    std::string stuck;
    long long check_ms = 0;
  };
  std::vector<GroupHistory> checkHistories();

  // --- figures ------------------------------------------------------------------------------------------------------

  int injected() const { return injected_; }
  int skipped() const { return skipped_; }
  Clock::duration duration() const { return campaign_duration_; }
  const std::map<Kind, KindStats>& stats() const { return stats_; }
  const std::vector<std::string>& unexpectedExits() const { return unexpected_exits_; }
  const std::vector<std::string>& injectionErrors() const { return injection_errors_; }
  const std::vector<std::string>& activityViolations() const { return activity_violations_; }
  // The COMMAND windows read from the agent workloads' activity logs so far.
  std::size_t activityWindows() const;
  // What became of the requests held on the wire (after the run): one line each.
  std::vector<std::string> heldRequestOutcomes();
  // Per Lease (the operators', each group's): terms and time held per holder, as the monitor polled them.
  std::vector<std::string> tenureSummary();
  // Fencing tokens per Lease (the workloads', the groups', the operators'), from watches of their own.
  std::vector<std::string> leaseViolations() const;
  LeaseAuditor::Figures leaseFigures() const;
  // Writes by a singleton-elect COMMAND invoked while client-go's candidate held group 0's Lease (after
  // checkHistories()); writes of electors paused during their term are left out and counted apart (their COMMAND
  // runs on by design: docs/design.md, promise 2).
  const std::vector<std::string>& clientGoOverlaps() const { return client_go_overlaps_; }
  std::size_t pausedWritesInClientGoTerms() const { return paused_writes_in_client_go_terms_; }
  std::size_t clientGoTerms() const;
  // singleton-elect COMMAND windows (first to last write, per elector incarnation) of one group that overlap, from the
  // stores' histories (after checkHistories()); electors paused in their term are left out (see above).
  const std::vector<std::string>& commandOverlaps() const { return command_overlaps_; }
  std::size_t commandWindows() const { return command_windows_; }
  int lostLeadershipExits() const { return lost_leadership_exits_; }
  int maxConcurrent() const { return max_concurrent_; }
  int noReadyReplica() const { return no_ready_replica_; }
  const std::set<std::string>& failedWorkloads() const { return failed_workloads_; }
  std::size_t unrecoveredPending() const { return pending_.size(); }

 private:
  struct Term {  // a stretch of time
    Clock::time_point from, to;
  };

  // --- processes ----------------------------------------------------------------------------------------------------

  void startCandidate(Candidate& c);

  // (Re)starts operator replica `i`, under libfaketime for kFakeTimeReplica. The harness has no per-replica
  // environment: the variables are set in this process only while it spawns the replica (Process copies `environ`),
  // on the campaign's thread, the only one that starts processes.
  void startOperator(int i);
  void ensureOperatorsRunning();

  void stopCandidates();

  Candidate* candidateByWriter(const std::string& writer);

  // Exits nobody asked for; restarts.
  void checkProcesses();

  // --- observers ----------------------------------------------------------------------------------------------------

  // The operators' Lease, polled on a thread of its own (a stalled control plane must not hold up the faults' clears).
  void monitorLoop();

  // Reads every group's register.
  void observe();

  // A replica not under a fault renewed the operators' Lease after `since`, and lately.
  bool operatorsHealthy(Clock::time_point since);

  // A running, unfrozen candidate's command wrote to the store after `since`, and lately; or a running, unfrozen
  // client-go candidate holds the group's Lease and renewed it after `since`, and lately.
  bool groupHealthy(int g, Clock::time_point since);

  // Per workload: exactly one leader (Ready, with a token, not terminating), the desired number of Ready pods, none
  // of a template older than the last change, and for an agent workload the leader's COMMAND running with its token
  // (its activity log, not the operator's view).
  std::vector<bool> workloadsHealthy();

  // The workload's object as the campaign last changed it (replicas, template revision).
  Json objectOf(const Workload& w) const;

  // The agent workload's one leader runs its COMMAND with its token (its activity log beat within the last second,
  // and after `beat_after`).
  bool leaderCommandRunning(const Workload& w, Clock::time_point beat_after = {});

  // Reads the agent workloads' new activity and records any overlap or token order violation.
  void checkActivity();

  // Records overlapping COMMAND windows of one group.
  void checkCommandWindows(int group, const std::vector<fenced::Operation>& ops);
  // Records the writes of singleton-elect COMMANDs invoked inside client-go's terms.
  void checkClientGoTerms(const std::vector<fenced::Operation>& ops, const std::vector<Term>& terms);

  // --- the loop -----------------------------------------------------------------------------------------------------

  void tick();

  template <typename T>
  T pick(const std::vector<T>& from) {
    return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng_)];
  }
  std::chrono::milliseconds hold(int lo_ms, int hi_ms);
  int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  bool activeOf(const std::function<bool(const Active&)>& match) const;

  // Whether CHAOS_KINDS lets `kind` be drawn.
  static bool drawn(const KindInfo& kind);
  void injectOne();

  void addActive(Kind kind, int target, std::chrono::milliseconds how_long, std::function<void()> clear);
  void instant(Kind kind, int target) { pending_.push_back({kind, target, Clock::now()}); }

  // One fault of `kind` on an eligible target; false when none is eligible now.
  bool tryInject(Kind kind);

  // One fault on an operator replica's ApiProxy (the leader's half the time; one at a time per replica, and not
  // while the replica is held otherwise), cleared after a few seconds.
  bool injectApiFault(Kind kind);
  // One api fault of a random kind on one candidate's ApiProxy.
  bool injectCandidateApiFault();
  // A candidate of group `g` to fault: its Lease holder 60 % of the time, else any free one. nullptr when none is
  // free, or (limit_held) when two of the group are already held by faults.
  Candidate* pickCandidate(int g, bool limit_held);
  // Arms `kind` on `proxy`; returns how long it stays armed.
  std::chrono::milliseconds armApiFault(ApiProxy& proxy, Kind kind);

  // Everything the proxy answered itself, delayed or dropped so far (watch lag excepted).
  static std::uint64_t apiHits(ApiProxy& proxy);

  // Holds the operator leader's next pod write on the wire, and every write of the operators' Lease it sends
  // meanwhile (so it cannot renew: the hand-over comes from that, nothing is frozen or cut off); everything held is
  // released once another replica holds the operators' Lease. What the apiserver answered each late request is
  // recorded.
  bool injectHold();

  static void clearApiFaults(ApiProxy& proxy);

  // Group 0's singleton-elect candidates cut off until client-go's candidate holds the Lease.
  bool injectClientGoLeads();
  // Deletes an elect group's Lease while every candidate of it runs and has seen it.
  bool injectGroupLeaseDelete();
  // Freezes the operator leader or a group's leader at a worst moment, seen on its ApiProxy: right after the answer
  // to its Lease renewal (its compare-and-swap) was relayed, or right after one of its writes went on the wire. It
  // stays frozen past the lease, then resumes.
  bool injectFreezeAtWorst(Kind kind);
  // The workload's pods a switchover may name (Ready, not leader, not terminating), as the auditor sees them.
  std::vector<std::string> switchoverTargets(const std::string& workload);
  // Annotates the workload to switch over to `pod`.
  bool switchOver(const std::string& workload, const std::string& pod);
  // Switches an agent workload over and freezes the new leader's agent when the Lease watch shows the move.
  bool injectAgentFreezeOnMove(Workload& w, int index);
  // The Lease watch's listener (its thread): freezes an armed workload's new leader's agent.
  void onLeaseVersion(const nlohmann::json& lease);

  // Whether `identity` (a Lease holder) is client-go's candidate.
  static bool clientGoIdentity(const std::string& identity);

  bool annotatePod(const std::string& pod, const Json& value);
  bool patchNodeHeartbeat(const std::string& node, const Json& value);

  OperatorHarness& h_;
  LeaderAuditor& auditor_;
  std::string ns_;
  std::mt19937_64 rng_;
  int interval_ms_;

  std::vector<Workload> workloads_;
  std::vector<Group> groups_;
  std::vector<std::unique_ptr<Candidate>> candidates_;
  std::array<bool, 3> op_busy_{}, op_stopped_{}, op_blackholed_{};
  std::array<bool, 3> op_api_faulted_{};  // the replica's ApiProxy has a fault armed
  std::vector<Active> active_;
  std::vector<Pending> pending_;

  std::unique_ptr<kube::Client> monitor_client_;
  std::thread monitor_;
  std::atomic<bool> monitor_stop_{false};
  mutable std::mutex monitor_mutex_;
  std::string op_holder_;
  Clock::time_point op_renewed_{};
  // Each group's Lease as the monitor last saw it change: a client-go leader writes no store, only its Lease.
  struct LeaseSeen {
    std::string holder;
    std::string resource_version;
    Clock::time_point changed{};
  };
  std::array<LeaseSeen, kGroupCount> group_leases_{};
  // client-go's terms on group 0's Lease as the monitor polled them: from the first answer showing it as holder to
  // the sending of the poll before the one that showed its last renewal (the renewal came after that poll was
  // answered, so no other candidate may take over before this end plus a lease). Writes of another candidate
  // invoked strictly inside are violations.
  std::vector<Term> client_go_terms_;
  std::set<std::string> paused_writers_;  // writers whose elector was SIGSTOPped during their term
  std::optional<Term> client_go_term_;    // the one going on
  std::vector<std::string> client_go_overlaps_;
  std::size_t paused_writes_in_client_go_terms_ = 0;
  std::vector<std::string> command_overlaps_;
  std::size_t command_windows_ = 0;
  std::unique_ptr<LeaseAuditor> lease_auditor_, operator_lease_auditor_;
  // kAgentFreezeOnMove, shared with the Lease watch's thread, by Lease name.
  struct AgentFreeze {
    bool armed = false;
    bool cancelled = false;
    pid_t pid = -1;
    std::optional<Clock::time_point> frozen_at;
  };
  std::mutex agent_freeze_mutex_;
  std::map<std::string, std::string> lease_leader_uid_;  // the last leader-uid seen per Lease
  std::map<std::string, std::shared_ptr<AgentFreeze>> agent_freezes_;
  struct Tenure {
    int terms = 0;
    Clock::duration held{};
  };
  std::map<std::string, Tenure> op_tenures_;                              // by replica identity
  std::array<std::map<std::string, Tenure>, kGroupCount> group_tenures_;  // by candidate (g<g>c<c>)
  std::optional<std::filesystem::path> client_go_binary_;
  std::optional<std::filesystem::path> fake_time_library_;

  std::map<Kind, KindStats> stats_;
  std::vector<std::string> unexpected_exits_;
  std::vector<std::string> injection_errors_;     // a fault that could not be injected or cleared (set-up failure)
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

}  // namespace singleton::testing::chaos
