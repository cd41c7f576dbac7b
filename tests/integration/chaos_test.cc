// A bounded fault campaign on the local control plane (issue 13, part 1: `make chaos`).
//
// Actors: 3 operator replicas, each talking to the apiserver through a TcpProxy (blackholes, resets) in front of an
// ApiProxy (HTTP-aware: it answers, delays, holds or drops single requests); the simulated kubelet (3 Nodes); 20
// SingletonWorkloads of 1-3 pods, 4 of which (isAgentWorkload) run real processes, `singleton-agent --
// singleton-activity` (see chaos/agent_workloads.h); 3 singleton-elect groups of 3 candidates, each candidate behind
// the same pair of proxies, whose COMMAND is singleton-fenced-client writing with its fencing token to the group's
// FencedStore, and in group 0 a 4th candidate, client-go's leader-election example (chaos/peers.h; skipped with a
// line when its binary is absent).
// Clock faults: op-1's wall clock runs 30 s ahead and both its clocks (wall and monotonic) 2 % fast, candidate g1c2's
// 30 s behind and 2 % slow (libfaketime + libsingleton-clock-rate.so, chaos/peers.h; within the 10 % drift margin of
// lib/election/timings.h). Timings: lease 4 s, renew deadline 3 s, retry 1 s (operators and
// candidates); the workloads' own Leases the default 15 s.
//
// Faults are drawn at random from a seed (CHAOS_SEED, printed; random when unset), weighted so that the slow ones are
// rarer, until CHAOS_FAULTS faults (default 60) have been injected or CHAOS_SECONDS (optional) have passed. Several
// faults are active at once (never more than 2 of the 3 operators, or of a group's candidates, held at once; one
// control-plane fault at a time). Kinds: see kKinds in chaos/common.h. The "api"/answer/watch/request kinds act on one
// operator replica's ApiProxy (the leader's half the time: a follower sends little but watches), "candidate api" on
// one candidate's (its group's leader more often than not), and are disarmed after 2-10 s: the next 2-6 matching
// requests (writes for 409; watches too for 429, 5xx, garbage) get a synthesized 409 / 429 Retry-After: 1 / 500 or
// 503 Status, or 1-3 get a garbage or truncated 200 body, without reaching the apiserver; the next request is applied
// and its answer dropped (connection closed); watch answers arrive 1-3 s late; or every request reaches the apiserver
// 100 ms-5 s late. Their table column "api hits" counts the requests actually affected while armed (a follower makes
// few writes, so a 409 may not fire). "write held on the wire" holds the operator leader's next pod write and its
// Lease renewals (nothing else) until another replica leads, then delivers them late. "client-go made leader" cuts
// group 0's singleton-elect candidates off until client-go's candidate holds the Lease (its column: the times it
// did). "elect group's Lease deleted" deletes group 1's or 2's Lease while its candidates run. "SIGSTOP after a CAS /
// mid-write" freezes the operator leader or a group's leader past the lease at the moment its ApiProxy relays the
// answer to its Lease renewal, or right after one of its writes went on the wire. "agent SIGSTOP as the Lease moves to
// it" switches an agent workload over and freezes the new leader's agent (2-6 s) when the Lease watch shows the move.
//
// Code: chaos/campaign.{h,cc} (the run), chaos/actors.cc (processes), chaos/faults.cc (injecting and clearing),
// chaos/invariants.cc (healthy scopes, activity logs), chaos/agent_workloads.{h,cc}, chaos/peers.{h,cc}; this file
// has the test and its tables.
//
// Invariants, checked by independent observers, never by the operator's own view:
//   - never two pods of a workload labelled leader, every leader's token above every earlier one of the workload object
//     (LeaderAuditor: its own pod watch, not through any proxy; per workload uid, so a re-created workload may start
//     again);
//   - per Lease (the workloads', the groups', the operators'), every term's token above every earlier term's, also
//     across a Lease deleted by hand (LeaseAuditor: Lease watches of its own; a workload's Lease per workload uid);
//   - per elect group, no two COMMAND windows (first to last write of one elector incarnation, from the store's
//     history) overlapping, electors paused in their term left out (below);
//   - while client-go's candidate holds group 0's Lease (polled), no singleton-elect COMMAND invokes a write (the
//     group's store history), except one whose elector was paused in its term (the documented exposure: its COMMAND
//     runs on, and only fencing refuses it; counted apart);
//   - per agent workload, never two COMMAND windows overlapping, and a window of another pod always with a higher
//     token (the processes' own activity logs, on CLOCK_MONOTONIC);
//   - per elect group, the fenced store's merged history is linearizable as a fenced register and no stale write was
//     accepted (tests/unit/support/fenced_register.h);
//   - after the last fault clears, within kFinalBound: every workload with a Ready replica has exactly one steady
//     leader (auditor, Lease and status agree; an agent workload's leader runs its COMMAND), every group has a leader
//     writing to its store (or client-go's renewing the Lease), an operator replica holds and renews the operators'
//     Lease;
//   - no operator, candidate or kubelet process exited except by an injected signal (a candidate that lost its lease
//     exits 1 by design and is restarted, counted apart; client-go's example exits 0).
// Per fault, the recovery time is measured from the moment it clears to the first instant its scope is healthy again
// (operators: a replica not under a fault renews the operators' Lease; group: a running, unfrozen candidate's command
// writes to the store; workload: one Ready leader, the desired number of Ready pods, all of the current template, and
// for an agent workload the leader's COMMAND running).
#include <gtest/gtest.h>

#include <cstdio>
#include <iostream>
#include <random>
#include <set>
#include <string>

#include "chaos/campaign.h"

namespace singleton::testing {
namespace {

using namespace chaos;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

class ChaosTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    OperatorHarness::Options options;
    options.proxy_operators = true;
    options.api_proxy_operators = true;
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
            << kCandidatesPerGroup
            << " (group 0 with client-go's example when present), 3 operators: all healthy; injecting" << std::endl;

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
                (apiAnswer(k.kind) && k.kind != Kind::kApiWatchLag) || k.kind == Kind::kApiHold ||
                        k.kind == Kind::kCandApi || k.kind == Kind::kClientGoLeads ||
                        k.kind == Kind::kOpFreezeAtWorst || k.kind == Kind::kCandFreezeAtWorst ||
                        k.kind == Kind::kAgentFreezeOnMove
                    ? std::to_string(s.hit).c_str()
                    : "-");
  }
  std::printf(
      "(recovery: from the fault clearing to its scope healthy again, bound %lld s; %zu still pending at the "
      "end;\n api hits: requests the ApiProxy answered itself, delayed, held or whose answer it dropped while "
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
  const auto lease_violations = campaign.leaseViolations();
  std::printf("%-66s %10zu\n", "a Lease term's token not above every earlier one (Lease watches)",
              lease_violations.size());
  std::printf("%-66s %10zu\n", "a singleton-elect write inside a client-go term (store, Lease)",
              campaign.clientGoOverlaps().size());
  std::printf("%-66s %10zu\n", "two singleton-elect COMMAND windows overlapping (store histories)",
              campaign.commandOverlaps().size());
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
  const auto lf = campaign.leaseFigures();
  std::printf(
      "Leases: %zu terms checked on %zu Leases; %zu deleted, %zu re-created, %zu terms after a re-creation checked "
      "against the tokens before it\n",
      lf.terms, lf.leases, lf.deletions, lf.recreations, lf.terms_after_recreation);
  std::printf("singleton-elect COMMANDs: %zu windows checked (electors never paused in their term)\n",
              campaign.commandWindows());
  std::printf("client-go's candidate: %zu terms on group %d's Lease; %zu writes of paused electors inside them\n",
              campaign.clientGoTerms(), kClientGoGroup, campaign.pausedWritesInClientGoTerms());
  for (const auto& line : campaign.heldRequestOutcomes()) std::printf("held on the wire: %s\n", line.c_str());
  std::printf("(op-%d runs under FAKETIME \"%s\", g%dc%d under \"%s\"; g%dc%d is client-go's example)\n",
              kFakeTimeReplica, kFakeTimeOperator, kFakeTimeGroup, kFakeTimeCandidate, kFakeTimeCandidateSpec,
              kClientGoGroup, kCandidatesPerGroup);
  for (const auto& line : campaign.tenureSummary()) std::printf("%s\n", line.c_str());
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
  for (const auto& v : lease_violations) ADD_FAILURE() << "Lease: " << v << " (seed " << seed << ")";
  for (const auto& v : campaign.clientGoOverlaps())
    ADD_FAILURE() << "client-go term: " << v << " (seed " << seed << ")";
  for (const auto& v : campaign.commandOverlaps())
    ADD_FAILURE() << "COMMAND windows: " << v << " (seed " << seed << ")";
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
