// Leader election on a Lock (a Kubernetes Lease), in the manner of client-go's leaderelection package, with three
// differences that make failover fast and cheap: followers watch the record instead of polling it, the leader renews
// with one compare-and-swap carrying the version it last wrote (no read first), and a follower times a holder's
// expiry on its own monotonic clock from the moment it saw the record last change, to the millisecond.
//
// Safety does not rest on timing alone: every acquisition is a compare-and-swap decided by etcd, and each new holder
// gets a fencing token (leaseTransitions, +1 whenever the holder changes) that downstream stores check.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "election/lock.h"
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
  // Interval between the leader's renewals, and between a follower's attempts when it cannot watch. Default 2 s.
  util::Millis retry_period{2'000};
  // On a requested stop, clear the holder (keeping leaseTransitions) so a follower takes over at once. Default on.
  bool release_on_cancel = true;
  // Follow the record with a watch (default). Off: poll every retry_period like client-go.
  bool watch_record = true;
  LeaderCallbacks callbacks;
  const util::Clock* clock = &util::systemClock();  // never null
};

class LeaderElector {
 public:
  enum class Outcome { kStopped, kLostLeadership };

  // Checks the config's invariants; an kInvalidArgument error names the one that fails.
  static util::Result<std::unique_ptr<LeaderElector>> create(ElectorConfig config);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Campaigns until this candidate has led and lost the lease (kLostLeadership) or `stop` is requested (kStopped).
  // One run per elector.
  Outcome run(std::stop_token stop);

  bool isLeader() const;
  std::string identity() const { return config_.lock->identity(); }
  // The holder as last observed ("" when none) and its token.
  std::string observedLeader() const;
  fencing::FencingToken observedToken() const;
  // The record's version (the Lease's resourceVersion) as last observed; "" when none. From on_started_leading on,
  // it is at least the version of this candidate's acquiring write.
  std::string observedVersion() const;
  // Healthy unless this candidate leads and has not renewed for lease_duration + tolerance (a wedged elector).
  util::Status healthCheck(util::Millis tolerance) const;

  // One attempt of the algorithm at the clock's current time; public for tests.
  bool tryAcquireOrRenew(util::Millis timeout);

 private:
  explicit LeaderElector(ElectorConfig config);

  struct Observation {
    std::optional<VersionedRecord> current;
    util::MonoTime changed_at{};  // our monotonic time when we saw `current` change
    std::uint64_t sequence = 0;   // bumps on every change, to wake waiters
    std::string reported_holder;
  };

  // Records what we saw; returns the holder to announce if it changed.
  std::optional<std::pair<std::string, fencing::FencingToken>> observeLocked(const std::optional<VersionedRecord>& seen,
                                                                             util::MonoTime now);
  void observe(const std::optional<VersionedRecord>& seen);
  void announce(const std::optional<std::pair<std::string, fencing::FencingToken>>& holder);
  bool expiredLocked(util::MonoTime now) const;
  util::MonoTime nextAttemptLocked(util::MonoTime now, bool last_attempt_failed) const;
  bool acquireLoop(std::stop_token stop);
  void leadLoop(std::stop_token stop);
  void release();
  LeaderElectionRecord desiredRecord(const std::optional<VersionedRecord>& current) const;

  ElectorConfig config_;
  const util::Clock& clock_;
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  Observation observed_;
  bool watch_synced_ = false;
  bool leading_ = false;
  util::MonoTime last_renew_{};
  fencing::FencingToken token_;
  bool ran_ = false;
};

// Validation on its own, for flag parsing.
util::Status validateTimings(util::Millis lease_duration, util::Millis renew_deadline, util::Millis retry_period);

}  // namespace singleton::election
