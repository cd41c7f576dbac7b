// Leader election on a Lock (a Kubernetes Lease), in the manner of client-go's leaderelection package, with three
// differences that make failover fast and cheap: followers watch the record instead of polling it, the leader renews
// with one compare-and-swap carrying the version it last wrote (no read first), and a follower times a holder's
// expiry on its own monotonic clock from the moment it saw the record last change, to the millisecond.
//
// Safety does not rest on timing alone: every acquisition is a compare-and-swap decided by etcd, and each new term
// gets a fencing token (leaseTransitions, above every token this candidate has seen) that downstream stores check.
// The leader renews every renew_interval (a third of the lease by default), not every retry_period, and gives up at
// renew_deadline; timings.h states the inequality that keeps its work stopped before a rival may start.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "election/lock.h"
#include "election/timings.h"
#include "fencing/token.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::election {

struct LeaderCallbacks {
  // Runs on a thread of its own when this candidate becomes leader. `stop` is requested when leadership ends; the
  // callback must then return promptly: run() waits for it before on_stopped_leading and before releasing the
  // lease, so no leader work overlaps the next leader's. Required.
  std::function<void(fencing::FencingToken token, std::stop_token stop)> on_started_leading;
  // Runs exactly once when run() ends, whether or not this candidate ever led. Required.
  std::function<void()> on_stopped_leading;
  // Runs when the holder this candidate observes changes to a new non-empty identity (ourselves included), with
  // that holder's token. Optional; must be quick (it runs on the elector's threads).
  std::function<void(const std::string& holder, fencing::FencingToken token)> on_new_leader;
};

struct ElectorConfig {
  std::shared_ptr<Lock> lock;  // required; its identity() must be non-empty
  // How long a holder's claim lasts after its last renewal, as seen by followers on their own clocks. Written into
  // the record (whole seconds, rounded up). Default 15 s. Must exceed renew_deadline.
  util::Millis lease_duration{15'000};
  // How long the leader keeps retrying a failed renewal before it stops leading. Default 10 s. Must exceed
  // 1.2 × retry_period, so at least one retry fits.
  util::Millis renew_deadline{10'000};
  // Interval between a follower's attempts when it cannot watch, and between the leader's retries once a renewal has
  // failed. Default 2 s.
  util::Millis retry_period{2'000};
  // Interval between the leader's renewals while they succeed. 0 (default): defaultRenewInterval(), a third of the
  // lease (5 s at 15/10/2 s: 12 requests a minute). Must be less than renew_deadline.
  util::Millis renew_interval{0};
  // How long on_started_leading may take to return once its stop is requested (for singleton-elect: the command's
  // grace period and the wait for it to be reaped). create() checks renew_deadline + stop_bound + drift margin <=
  // lease_duration (timings.h), the bound that keeps this leader's work stopped before a rival can acquire.
  util::Millis stop_bound{0};
  // On a requested stop, clear the holder (keeping leaseTransitions) so a follower takes over at once. Default on.
  bool release_on_cancel = true;
  // Follow the record with a watch (default). Off: poll every retry_period like client-go.
  bool watch_record = true;
  // How long a write of ours may still land after it was sent (a request whose answer never came, held by a
  // partition and delivered when it heals): such a write is recognised as ours, not taken for another process under
  // our identity. Default 15 min, about how long Linux retransmits unacknowledged data (net.ipv4.tcp_retries2 = 15).
  // At most 4,096 writes are remembered.
  util::Millis late_write_window{15 * 60 * 1000};
  LeaderCallbacks callbacks;
  const util::Clock* clock = &util::systemClock();  // never null
};

class LeaderElector {
 public:
  // kIdentityConflict: another process writes the Lease under this candidate's identity (a change this elector did
  // not make to a record naming it); the elector stepped down (or never led) and did not release.
  enum class Outcome { kStopped, kLostLeadership, kIdentityConflict };

  // Checks the config's invariants; an kInvalidArgument error names the one that fails.
  static util::Result<std::unique_ptr<LeaderElector>> create(ElectorConfig config);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Campaigns until this candidate has led and lost the lease (kLostLeadership), another process is found writing
  // under its identity (kIdentityConflict), or `stop` is requested (kStopped). May be called again once it has
  // returned (never concurrently): each call campaigns afresh with per-run state reset, keeping what was learnt about
  // the Lease (the highest token seen, this elector's own writes). A new term always gets a new, higher token.
  Outcome run(std::stop_token stop);

  bool isLeader() const;
  // While leading: the instant (on the injected monotonic clock) until which this candidate may act as leader, the
  // start of its last successful acquire/renew request + renew_deadline. nullopt when not leading. Check it before
  // every leader write: a process that was paused (SIGSTOP, a VM freeze) finds it in the past when it resumes.
  std::optional<util::MonoTime> leadingUntil() const;
  // While leading: one compare-and-swap setting leaseTransitions to floor + 1 if it is <= floor (holder unchanged);
  // returns the token now in force, which observedToken() and later calls report. kInvalidArgument when not
  // leading; kConflict (retry) when the record moved meanwhile; a network error as the lock gives it. For a caller that
  // knows of tokens higher than the Lease's own (its Lease was recreated and other records carry later terms).
  util::Result<fencing::FencingToken> raiseTokenAbove(fencing::FencingToken floor);
  // The highest leaseTransitions this elector has seen on the record (nullopt: never saw one). A record this elector
  // (re)creates starts above it.
  std::optional<fencing::FencingToken> highestTokenSeen() const;
  std::string identity() const { return config_.lock->identity(); }
  // The holder as last observed ("" when none) and its token.
  std::string observedLeader() const;
  fencing::FencingToken observedToken() const;
  // The record's version (the Lease's resourceVersion) as last observed; "" when none. From on_started_leading on,
  // it is at least the version of this candidate's acquiring write.
  std::string observedVersion() const;
  // The renew interval in force (the config's, or the default derived from the timings).
  util::Millis renewInterval() const { return renew_interval_; }
  // Healthy unless this candidate leads and has not renewed for lease_duration + tolerance (a wedged elector).
  util::Status healthCheck(util::Millis tolerance) const;

  // One attempt of the algorithm at the clock's current time; public for tests.
  bool tryAcquireOrRenew(util::Millis timeout);

 private:
  explicit LeaderElector(ElectorConfig config);

  struct Observation {
    std::optional<VersionedRecord> current;
    std::string version;          // as of which `current` holds (its own, or a list's or deletion's); "" unknown
    util::MonoTime changed_at{};  // our monotonic time when we saw `current` change
    std::uint64_t sequence = 0;   // bumps on every change, to wake waiters
    std::string reported_holder;
  };

  // Records what we saw; returns the holder to announce if it changed.
  std::optional<std::pair<std::string, fencing::FencingToken>> observeLocked(const RecordState& seen,
                                                                             util::MonoTime now);
  void observe(const RecordState& seen);
  void announce(const std::optional<std::pair<std::string, fencing::FencingToken>>& holder);
  bool expiredLocked(util::MonoTime now) const;
  // The record names us and was written by this elector (not by another process using our identity).
  bool ownRecordLocked(const LeaderElectionRecord& record) const;
  util::MonoTime nextAttemptLocked(util::MonoTime now, bool last_attempt_failed) const;
  bool acquireLoop(std::stop_token stop);
  void leadLoop(std::stop_token term);
  void watchTerm(std::stop_source& term);
  void release();
  LeaderElectionRecord desiredRecordLocked(const std::optional<VersionedRecord>& current) const;
  void rememberAttemptLocked(const LeaderElectionRecord& record);

  ElectorConfig config_;
  const util::Clock& clock_;
  util::Millis renew_interval_;
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  // What this elector knows of the Lease; kept across runs.
  Observation observed_;
  bool seen_any_ = false;  // some observation (even "no record") was made before
  std::optional<long long> highest_token_;
  // Our writes naming us within late_write_window (also those whose answer was lost), oldest first, with when they
  // were sent.
  std::deque<std::pair<util::MonoTime, LeaderElectionRecord>> own_attempts_;
  // Per run.
  bool watch_synced_ = false;
  bool term_active_ = false;  // a write of ours succeeded in this run: our next write renews the same term
  bool leading_ = false;
  bool in_term_ = false;   // from acquiring until the renewing thread has returned
  bool conflict_ = false;  // another process writes under our identity
  std::optional<Outcome> term_end_;
  util::MonoTime last_renew_{};  // start of the last successful acquire/renew request
  fencing::FencingToken token_;
  bool running_ = false;
};

}  // namespace singleton::election
