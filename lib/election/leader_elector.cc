#include "election/leader_elector.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <charconv>

#include "util/duration.h"

namespace singleton::election {
namespace {

using std::chrono::duration_cast;
using util::Millis;

// resourceVersions are opaque, but etcd's are increasing integers; use that only to ignore a late watch event
// that is older than what we already hold. When either does not parse, treat the newcomer as newer.
bool olderVersion(const std::string& candidate, const std::string& current) {
  long long a = 0, b = 0;
  auto ra = std::from_chars(candidate.data(), candidate.data() + candidate.size(), a);
  auto rb = std::from_chars(current.data(), current.data() + current.size(), b);
  if (ra.ec != std::errc() || rb.ec != std::errc()) return false;
  return a < b;
}

int wholeSecondsUp(Millis d) { return static_cast<int>((d.count() + 999) / 1000); }

}  // namespace

util::Status validateTimings(Millis lease_duration, Millis renew_deadline, Millis retry_period) {
  auto bad = [](const std::string& m) { return util::makeError(util::ErrorCode::kInvalidArgument, m); };
  if (retry_period <= Millis(0)) return bad("retry period must be positive");
  if (lease_duration < Millis(1000)) return bad("lease duration must be at least 1s (the Lease stores whole seconds)");
  if (lease_duration <= renew_deadline) {
    return bad("lease duration (" + util::formatDuration(lease_duration) + ") must be greater than renew deadline (" +
               util::formatDuration(renew_deadline) + ")");
  }
  if (renew_deadline.count() * 10 <= retry_period.count() * 12) {
    return bad("renew deadline (" + util::formatDuration(renew_deadline) +
               ") must be greater than 1.2 x retry period (" + util::formatDuration(retry_period) + ")");
  }
  return {};
}

util::Result<std::unique_ptr<LeaderElector>> LeaderElector::create(ElectorConfig config) {
  auto bad = [](const std::string& m) { return util::makeError(util::ErrorCode::kInvalidArgument, m); };
  if (!config.lock) return bad("a lock is required");
  if (config.lock->identity().empty()) return bad("the candidate's identity must not be empty");
  if (!config.callbacks.on_started_leading) return bad("on_started_leading callback is required");
  if (!config.callbacks.on_stopped_leading) return bad("on_stopped_leading callback is required");
  if (!config.clock) return bad("a clock is required");
  if (auto s = validateTimings(config.lease_duration, config.renew_deadline, config.retry_period); !s.ok()) {
    return std::move(s).takeError();
  }
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(config)));
}

LeaderElector::LeaderElector(ElectorConfig config) : config_(std::move(config)), clock_(*config_.clock) {}

LeaderElector::~LeaderElector() = default;

bool LeaderElector::isLeader() const {
  std::lock_guard guard(mutex_);
  return leading_;
}

std::string LeaderElector::observedLeader() const {
  std::lock_guard guard(mutex_);
  return observed_.current ? observed_.current->record.holder_identity : "";
}

fencing::FencingToken LeaderElector::observedToken() const {
  std::lock_guard guard(mutex_);
  return fencing::FencingToken(observed_.current ? observed_.current->record.leader_transitions : 0);
}

std::string LeaderElector::observedVersion() const {
  std::lock_guard guard(mutex_);
  return observed_.current ? observed_.current->version : "";
}

util::Status LeaderElector::healthCheck(Millis tolerance) const {
  std::lock_guard guard(mutex_);
  if (!leading_) return {};
  const auto since = duration_cast<Millis>(clock_.now() - last_renew_);
  if (since > config_.lease_duration + tolerance) {
    return util::makeError(util::ErrorCode::kTimeout, "leader has not renewed lease " + config_.lock->describe() +
                                                          " for " + util::formatDuration(since));
  }
  return {};
}

std::optional<std::pair<std::string, fencing::FencingToken>> LeaderElector::observeLocked(
    const std::optional<VersionedRecord>& seen, util::MonoTime now) {
  if (seen && observed_.current && seen->version == observed_.current->version) return std::nullopt;
  if (seen && observed_.current && olderVersion(seen->version, observed_.current->version)) return std::nullopt;
  if (!seen && !observed_.current) return std::nullopt;
  observed_.current = seen;
  observed_.changed_at = now;
  ++observed_.sequence;
  changed_.notify_all();
  const std::string holder = seen ? seen->record.holder_identity : "";
  if (holder.empty() || holder == observed_.reported_holder) return std::nullopt;
  observed_.reported_holder = holder;
  return std::make_pair(holder, fencing::FencingToken(seen->record.leader_transitions));
}

void LeaderElector::observe(const std::optional<VersionedRecord>& seen) {
  std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
  {
    std::lock_guard guard(mutex_);
    const bool first_sync = !watch_synced_;
    watch_synced_ = true;
    announcement = observeLocked(seen, clock_.now());
    if (first_sync) {
      // Until now a follower polled; wake it so it waits for the holder's exact expiry instead.
      ++observed_.sequence;
      changed_.notify_all();
    }
  }
  announce(announcement);
}

void LeaderElector::announce(const std::optional<std::pair<std::string, fencing::FencingToken>>& holder) {
  if (!holder) return;
  spdlog::info("lease {}: new leader {} (token {})", config_.lock->describe(), holder->first, holder->second.value());
  if (config_.callbacks.on_new_leader) config_.callbacks.on_new_leader(holder->first, holder->second);
}

bool LeaderElector::expiredLocked(util::MonoTime now) const {
  if (!observed_.current) return true;
  const auto& record = observed_.current->record;
  if (record.holder_identity.empty()) return true;
  const Millis duration =
      record.lease_duration_seconds > 0 ? Millis(record.lease_duration_seconds * 1000LL) : config_.lease_duration;
  return now >= observed_.changed_at + duration;
}

LeaderElectionRecord LeaderElector::desiredRecord(const std::optional<VersionedRecord>& current) const {
  LeaderElectionRecord record;
  const util::WallTime wall = clock_.wallNow();
  record.holder_identity = config_.lock->identity();
  record.lease_duration_seconds = wholeSecondsUp(config_.lease_duration);
  record.renew_time = wall;
  record.acquire_time = wall;
  if (current) {
    record.leader_transitions = current->record.leader_transitions;
    if (current->record.holder_identity == record.holder_identity) {
      record.acquire_time = current->record.acquire_time ? current->record.acquire_time : wall;
    } else {
      // A new holder: a new fencing token.
      record.leader_transitions += 1;
    }
  }
  return record;
}

bool LeaderElector::tryAcquireOrRenew(Millis timeout) {
  const util::MonoTime now = clock_.now();
  std::optional<VersionedRecord> current;
  bool synced = false;
  {
    std::lock_guard guard(mutex_);
    current = observed_.current;
    synced = watch_synced_ && config_.watch_record;
  }
  Lock& lock = *config_.lock;
  const std::string& me = lock.identity();

  // 1. Without a trustworthy view (no watch, or nothing seen yet), read the record; create it if there is none.
  if (!synced || !current) {
    auto got = lock.get(timeout);
    if (!got.ok() && got.error().code == util::ErrorCode::kNotFound) {
      LeaderElectionRecord record = desiredRecord(std::nullopt);
      auto created = lock.create(record, timeout);
      if (created.ok()) {
        std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
        {
          std::lock_guard guard(mutex_);
          announcement = observeLocked(*created, now);
        }
        announce(announcement);
        return true;
      }
      if (created.error().code != util::ErrorCode::kAlreadyExists) {
        spdlog::warn("lease {}: create failed: {}", lock.describe(), created.error().describe());
        return false;
      }
      got = lock.get(timeout);  // someone created it first: look at theirs
    }
    if (!got.ok()) {
      spdlog::warn("lease {}: get failed: {}", lock.describe(), got.error().describe());
      return false;
    }
    std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
    {
      std::lock_guard guard(mutex_);
      announcement = observeLocked(*got, now);
      current = observed_.current;
    }
    announce(announcement);
  }

  // 2. Someone else holds an unexpired lease: not our turn.
  {
    std::lock_guard guard(mutex_);
    if (current->record.holder_identity != me && !expiredLocked(now)) return false;
  }

  // 3. Acquire or renew with one compare-and-swap on the version we hold.
  const LeaderElectionRecord desired = desiredRecord(current);
  auto updated = lock.update(current->version, desired, timeout);
  if (updated.ok()) {
    std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
    {
      std::lock_guard guard(mutex_);
      announcement = observeLocked(*updated, now);
    }
    announce(announcement);
    return true;
  }
  if (updated.error().code == util::ErrorCode::kConflict) {
    // Someone wrote first. Their write counts as a change seen now: it restarts the expiry clock.
    spdlog::debug("lease {}: conflict, re-reading", lock.describe());
    auto got = lock.get(timeout);
    if (got.ok()) {
      std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
      {
        std::lock_guard guard(mutex_);
        announcement = observeLocked(*got, clock_.now());
      }
      announce(announcement);
    }
    return false;
  }
  spdlog::warn("lease {}: update failed: {}", lock.describe(), updated.error().describe());
  return false;
}

util::MonoTime LeaderElector::nextAttemptLocked(util::MonoTime now, bool last_attempt_failed) const {
  const bool synced = watch_synced_ && config_.watch_record;
  if (!synced || !observed_.current) return now + config_.retry_period;
  const auto& record = observed_.current->record;
  if (record.holder_identity.empty()) return last_attempt_failed ? now + config_.retry_period : now;
  if (record.holder_identity == config_.lock->identity()) return now;  // ours already (e.g. we restarted)
  const Millis duration =
      record.lease_duration_seconds > 0 ? Millis(record.lease_duration_seconds * 1000LL) : config_.lease_duration;
  const util::MonoTime expiry = observed_.changed_at + duration;
  return expiry > now ? expiry : now + (last_attempt_failed ? config_.retry_period : Millis(0));
}

bool LeaderElector::acquireLoop(std::stop_token stop) {
  spdlog::info("lease {}: {} campaigning", config_.lock->describe(), config_.lock->identity());
  while (!stop.stop_requested()) {
    std::uint64_t sequence_before = 0;
    {
      std::lock_guard guard(mutex_);
      sequence_before = observed_.sequence;
    }
    if (tryAcquireOrRenew(config_.retry_period)) return true;
    std::unique_lock lock(mutex_);
    // Nothing new was learnt from the failed attempt (an error, not a rival's write): don't retry at once.
    const bool failed = observed_.sequence == sequence_before;
    const util::MonoTime deadline = nextAttemptLocked(clock_.now(), failed);
    const std::uint64_t seen = observed_.sequence;
    clock_.waitUntil(lock, changed_, deadline, stop, [&] { return observed_.sequence != seen; });
  }
  return false;
}

void LeaderElector::leadLoop(std::stop_token stop) {
  const Lock& lock = *config_.lock;
  while (!stop.stop_requested()) {
    util::MonoTime renew_by;
    {
      std::unique_lock guard(mutex_);
      const util::MonoTime next = clock_.now() + config_.retry_period;
      // Wake early if someone else takes the record (a peer that judged us expired, or an operator's hand).
      clock_.waitUntil(guard, changed_, next, stop, [&] {
        return observed_.current && observed_.current->record.holder_identity != lock.identity();
      });
      if (stop.stop_requested()) return;
      if (observed_.current && observed_.current->record.holder_identity != lock.identity()) {
        spdlog::warn("lease {}: taken over by {}", lock.describe(), observed_.current->record.holder_identity);
        return;
      }
      renew_by = last_renew_ + config_.renew_deadline;
    }
    const util::MonoTime attempt_start = clock_.now();
    if (attempt_start >= renew_by) {
      spdlog::error("lease {}: could not renew within {}; stopping leading", lock.describe(),
                    util::formatDuration(config_.renew_deadline));
      return;
    }
    const Millis budget = std::min(config_.retry_period, duration_cast<Millis>(renew_by - attempt_start));
    if (tryAcquireOrRenew(budget)) {
      std::lock_guard guard(mutex_);
      last_renew_ = attempt_start;
    }
  }
}

void LeaderElector::release() {
  std::optional<VersionedRecord> current;
  {
    std::lock_guard guard(mutex_);
    current = observed_.current;
  }
  if (!current || current->record.holder_identity != config_.lock->identity()) return;
  LeaderElectionRecord released;
  const util::WallTime wall = clock_.wallNow();
  released.holder_identity = "";
  released.lease_duration_seconds = 1;  // what client-go writes on release: Go peers then wait only 1 s
  released.acquire_time = wall;
  released.renew_time = wall;
  released.leader_transitions = current->record.leader_transitions;
  auto result = config_.lock->update(current->version, released, config_.retry_period);
  if (result.ok()) {
    spdlog::info("lease {}: released", config_.lock->describe());
  } else {
    spdlog::warn("lease {}: release failed ({}); followers will wait for expiry", config_.lock->describe(),
                 result.error().describe());
  }
}

LeaderElector::Outcome LeaderElector::run(std::stop_token stop) {
  assert(!ran_ && "LeaderElector::run may be called once");
  ran_ = true;
  std::jthread watcher;
  if (config_.watch_record) {
    watcher = std::jthread([this](std::stop_token watch_stop) {
      auto status =
          config_.lock->watch([this](const std::optional<VersionedRecord>& seen) { observe(seen); }, watch_stop);
      if (!status.ok())
        spdlog::warn("lease {}: cannot watch, polling instead: {}", config_.lock->describe(),
                     status.error().describe());
    });
  }

  Outcome outcome = Outcome::kStopped;
  if (acquireLoop(stop)) {
    fencing::FencingToken token;
    {
      std::lock_guard guard(mutex_);
      leading_ = true;
      last_renew_ = clock_.now();
      token = fencing::FencingToken(observed_.current->record.leader_transitions);
      token_ = token;
    }
    spdlog::info("lease {}: {} started leading with token {}", config_.lock->describe(), config_.lock->identity(),
                 token.value());
    std::jthread work(
        [this, token](std::stop_token work_stop) { config_.callbacks.on_started_leading(token, work_stop); });
    std::stop_callback forward(stop, [&work] { work.request_stop(); });
    leadLoop(stop);
    outcome = stop.stop_requested() ? Outcome::kStopped : Outcome::kLostLeadership;
    {
      std::lock_guard guard(mutex_);
      leading_ = false;
    }
    work.request_stop();
    if (work.joinable()) work.join();  // leader work ends before anyone else may start it
    spdlog::info("lease {}: {} stopped leading", config_.lock->describe(), config_.lock->identity());
    config_.callbacks.on_stopped_leading();
    if (outcome == Outcome::kStopped && config_.release_on_cancel) release();
  } else {
    config_.callbacks.on_stopped_leading();
  }
  if (watcher.joinable()) {
    watcher.request_stop();
    watcher.join();
  }
  return outcome;
}

}  // namespace singleton::election
