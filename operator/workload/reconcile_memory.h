// What the reconciler remembers about each workload between reconciles, by workload key: when a failover or a
// hand-off started, the revision of its last leader-label write, label writes of unknown outcome, and the highest
// fencing token seen. Thread-safe: the workers reconcile different workloads at once.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "util/clock.h"

namespace singleton::op {

class ReconcilerMemory {
 public:
  // How long the highest token of a deleted workload is remembered (a re-created one continues above it).
  static constexpr util::Millis kTokenMemory{3'600'000};

  // What observe() needs: the revision of our last label write (0 = none), whether one had an unknown outcome.
  struct LabelWrites {
    std::uint64_t written_at = 0;
    bool unconfirmed = false;
  };
  LabelWrites labelWrites(const std::string& key) const;
  // A leader label added or removed by us at `revision`.
  void noteLabelWrite(const std::string& key, std::uint64_t revision);
  // A label write of unknown outcome, or a refused one: the cache is not trusted for labels until confirmed.
  void noteUnconfirmed(const std::string& key);
  // Every pod of the workload was read from the API, at least as of `revision`.
  void noteLabelsConfirmed(const std::string& key, std::uint64_t revision);

  // The workload is there (again), with a Lease of `lease_token` if any: its highest token only grows.
  void noteTokenSeen(const std::string& key, std::optional<long long> lease_token);
  // The highest token remembered, -1 when none.
  long long highestToken(const std::string& key) const;

  // Failover timing: `token` is the Lease's at the start; the first start counts until the failover ends.
  struct FailoverStart {
    util::MonoTime since;
    long long token = 0;
  };
  void noteFailoverStart(const std::string& key, util::MonoTime since, long long token);
  // The failover in progress, forgotten as it is returned.
  std::optional<FailoverStart> takeFailoverStart(const std::string& key);

  // Since when the pending hand-off of `token` is known to this term, and how long it waits for lease-expired.
  struct HandoffStart {
    long long token = 0;
    util::MonoTime since;
    util::Millis wait{0};
  };
  void noteHandoffStart(const std::string& key, const HandoffStart& start);
  // The start recorded for `token`; else `first_sight` becomes it.
  HandoffStart handoffStart(const std::string& key, const HandoffStart& first_sight);
  void forgetHandoff(const std::string& key);

  // The workload is gone at `now`: everything but its highest token goes (that stays for kTokenMemory).
  void forgetWorkload(const std::string& key, util::MonoTime now);
  // This term's workers have stopped: forget what this term wrote and timed. Kept: the writes of unknown outcome
  // (they may still land) and the highest tokens seen (tokens never go back).
  void endTerm();

 private:
  mutable std::mutex mutex_;
  std::map<std::string, FailoverStart> failover_started_;
  std::map<std::string, std::uint64_t> label_writes_;  // revision of our last label write
  std::set<std::string> unconfirmed_;                  // a label write of unknown outcome
  std::map<std::string, HandoffStart> handoff_started_;
  // The highest Lease token seen, kept for a while after the workload is gone (a re-created workload of the same
  // name continues above it). `forgotten` is when the workload went away.
  struct TokenMemory {
    long long token = -1;
    std::optional<util::MonoTime> forgotten;
  };
  std::map<std::string, TokenMemory> tokens_seen_;
};

}  // namespace singleton::op
