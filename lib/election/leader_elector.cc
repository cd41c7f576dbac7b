#include "election/leader_elector.h"

#include <algorithm>
#include <cassert>
#include <charconv>

#include "util/duration.h"
#include "util/log.h"

namespace singleton::election {
namespace {

using std::chrono::duration_cast;
using util::Millis;

const log::Logger kLog("elector");

// The lock as a log line's object: describe() is "namespace/name".
log::ObjectRef objectOf(const Lock& lock) { return log::objectRef(lock.describe()); }

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

// Whether two records are the same write. renewTime travels as a MicroTime, so compare it to the microsecond.
bool sameWrite(const LeaderElectionRecord& a, const LeaderElectionRecord& b) {
  auto micros = [](const std::optional<util::WallTime>& t) -> long long {
    return t ? std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count() : -1;
  };
  return a.holder_identity == b.holder_identity && a.lease_duration_seconds == b.lease_duration_seconds &&
         a.leader_transitions == b.leader_transitions && micros(a.renew_time) == micros(b.renew_time);
}

constexpr std::size_t kOwnAttemptsKept = 4096;

}  // namespace

util::Result<std::unique_ptr<LeaderElector>> LeaderElector::create(ElectorConfig config) {
  auto bad = [](const std::string& m) { return util::makeError(util::ErrorCode::kInvalidArgument, m); };
  if (!config.lock) return bad("a lock is required");
  if (config.lock->identity().empty()) return bad("the candidate's identity must not be empty");
  if (!config.callbacks.on_started_leading) return bad("on_started_leading callback is required");
  if (!config.callbacks.on_stopped_leading) return bad("on_stopped_leading callback is required");
  if (!config.clock) return bad("a clock is required");
  if (auto s = validateTimings(Timings{config.lease_duration, config.renew_deadline, config.retry_period,
                                       config.renew_interval, config.stop_bound});
      !s.ok()) {
    return std::move(s).takeError();
  }
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(config)));
}

LeaderElector::LeaderElector(ElectorConfig config)
    : config_(std::move(config)),
      clock_(*config_.clock),
      renew_interval_(
          effectiveRenewInterval(Timings{config_.lease_duration, config_.renew_deadline, config_.retry_period,
                                         config_.renew_interval, config_.stop_bound})) {}

LeaderElector::~LeaderElector() = default;

bool LeaderElector::isLeader() const {
  std::lock_guard guard(mutex_);
  return leading_;
}

std::optional<util::MonoTime> LeaderElector::leadingUntil() const {
  std::lock_guard guard(mutex_);
  if (!leading_) return std::nullopt;
  return last_renew_ + config_.renew_deadline;
}

std::optional<fencing::FencingToken> LeaderElector::highestTokenSeen() const {
  std::lock_guard guard(mutex_);
  if (!highest_token_) return std::nullopt;
  return fencing::FencingToken(*highest_token_);
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
  // in_term_, not leading_: a term that has ended but whose renewing thread is still stuck is what this catches.
  if (!in_term_) return {};
  const auto since = duration_cast<Millis>(clock_.now() - last_renew_);
  if (since > config_.lease_duration + tolerance) {
    return util::makeError(util::ErrorCode::kTimeout, "leader has not renewed lease " + config_.lock->describe() +
                                                          " for " + util::formatDuration(since));
  }
  return {};
}

std::optional<std::pair<std::string, fencing::FencingToken>> LeaderElector::observeLocked(const RecordState& state,
                                                                                          util::MonoTime now) {
  const std::optional<VersionedRecord>& seen = state.record;
  // Older than what we know (a list served before our own create answered, a read overtaken by the watch): not news.
  // Taking such a stale "no record" for a deletion once ended a healthy term a few milliseconds after it began.
  if (olderVersion(state.version, observed_.version)) return std::nullopt;
  if (seen && observed_.current && seen->version == observed_.current->version) return std::nullopt;
  const bool seen_before = seen_any_;
  seen_any_ = true;
  if (!seen && !observed_.current) {
    if (!state.version.empty()) observed_.version = state.version;
    return std::nullopt;
  }
  if (seen)
    highest_token_ =
        std::max(highest_token_.value_or(seen->record.leader_transitions), seen->record.leader_transitions);
  // A new version naming us that we did not write: another process uses our identity. Only the very first record
  // this elector sees may be a stale one of ours (a previous incarnation's, which then expires like any other).
  if (seen && seen_before && seen->record.holder_identity == config_.lock->identity() &&
      !ownRecordLocked(seen->record) && !conflict_) {
    conflict_ = true;
    kLog.error(
        "another process is writing under this candidate's identity (a change it did not make); stepping down "
        "without releasing. Give each candidate a unique identity",
        {.object = objectOf(*config_.lock), .values = {{"identity", config_.lock->identity()}}});
  }
  observed_.current = seen;
  observed_.version = state.version;
  observed_.changed_at = now;
  ++observed_.sequence;
  changed_.notify_all();
  const std::string holder = seen ? seen->record.holder_identity : "";
  if (holder.empty() || holder == observed_.reported_holder) return std::nullopt;
  observed_.reported_holder = holder;
  return std::make_pair(holder, fencing::FencingToken(seen->record.leader_transitions));
}

void LeaderElector::observe(const RecordState& seen) {
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
  kLog.info("new leader", {.object = objectOf(*config_.lock),
                           .values = {{"leader", holder->first}, {"token", holder->second.value()}}});
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

bool LeaderElector::ownRecordLocked(const LeaderElectionRecord& record) const {
  if (record.holder_identity != config_.lock->identity()) return false;
  return std::any_of(own_attempts_.begin(), own_attempts_.end(),
                     [&](const auto& mine) { return sameWrite(mine.second, record); });
}

void LeaderElector::rememberAttemptLocked(const LeaderElectionRecord& record) {
  // A write sent long ago can still land (held by a partition): forgetting it early would take it for another
  // process under our identity, and step down for nothing.
  const util::MonoTime now = clock_.now();
  own_attempts_.emplace_back(now, record);
  while (own_attempts_.size() > kOwnAttemptsKept ||
         (!own_attempts_.empty() && now - own_attempts_.front().first > config_.late_write_window)) {
    own_attempts_.pop_front();
  }
}

LeaderElectionRecord LeaderElector::desiredRecordLocked(const std::optional<VersionedRecord>& current) const {
  LeaderElectionRecord record;
  const util::WallTime wall = clock_.wallNow();
  record.holder_identity = config_.lock->identity();
  record.lease_duration_seconds = wholeSecondsUp(config_.lease_duration);
  record.renew_time = wall;
  record.acquire_time = wall;
  if (current && term_active_ && ownRecordLocked(current->record)) {
    // A renewal within this run's term: same token, same acquire time.
    record.leader_transitions = current->record.leader_transitions;
    record.acquire_time = current->record.acquire_time ? current->record.acquire_time : wall;
  } else if (current || highest_token_) {
    // A new term (from another holder, a released record, our own record from an earlier run, or a record we
    // recreate after it was deleted): a token above every one seen, so tokens never go backwards.
    const long long base = current ? current->record.leader_transitions : *highest_token_;
    record.leader_transitions = std::max(base, highest_token_.value_or(base)) + 1;
  }
  return record;
}

bool LeaderElector::tryAcquireOrRenew(Millis timeout) {
  const util::MonoTime now = clock_.now();
  std::optional<VersionedRecord> current;
  bool synced = false;
  {
    std::lock_guard guard(mutex_);
    if (conflict_) return false;
    current = observed_.current;
    synced = watch_synced_ && config_.watch_record;
  }
  Lock& lock = *config_.lock;

  // Records a successful write of ours. The lease runs from the start of the request (`now`): the earliest instant
  // at which the write can have been seen, so leadingUntil() never outlasts what a follower grants.
  auto succeeded = [&](const VersionedRecord& written) {
    std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
    {
      std::lock_guard guard(mutex_);
      announcement = observeLocked(RecordState::of(written), clock_.now());
      term_active_ = true;
      last_renew_ = now;
      changed_.notify_all();
    }
    announce(announcement);
    return true;
  };
  // Records a record read from the server, as seen when the answer arrived (later than any write it shows).
  auto seen = [&](const VersionedRecord& record) {
    std::optional<std::pair<std::string, fencing::FencingToken>> announcement;
    {
      std::lock_guard guard(mutex_);
      announcement = observeLocked(RecordState::of(record), clock_.now());
      current = observed_.current;
    }
    announce(announcement);
  };

  // 1. Without a trustworthy view (no watch, or nothing seen yet), read the record; create it if there is none.
  if (!synced || !current) {
    auto got = lock.get(timeout);
    if (!got.ok() && got.error().code == util::ErrorCode::kNotFound) {
      LeaderElectionRecord record;
      {
        std::lock_guard guard(mutex_);
        seen_any_ = true;
        if (observed_.current) {  // it was deleted: keep what we learnt from it (highest_token_)
          observed_.current.reset();
          observed_.version.clear();  // a GET's 404 carries no version
          observed_.changed_at = clock_.now();
          ++observed_.sequence;
        }
        record = desiredRecordLocked(std::nullopt);
        rememberAttemptLocked(record);
      }
      auto created = lock.create(record, timeout);
      if (created.ok()) {
        if (record.leader_transitions > 0) {
          kLog.warn("created the Lease with a token above the highest this candidate saw before",
                    {.object = objectOf(lock), .values = {{"token", record.leader_transitions}}});
        }
        return succeeded(*created);
      }
      if (created.error().code != util::ErrorCode::kAlreadyExists) {
        kLog.warn("create failed", {.err = created.error().describe(), .object = objectOf(lock)});
        return false;
      }
      got = lock.get(timeout);  // someone created it first: look at theirs
    }
    if (!got.ok()) {
      kLog.warn("get failed", {.err = got.error().describe(), .object = objectOf(lock)});
      return false;
    }
    seen(*got);
    if (!current) return false;
  }

  // 2. Someone else holds an unexpired lease (another process under our identity counts as someone else): not our
  // turn.
  LeaderElectionRecord desired;
  {
    std::lock_guard guard(mutex_);
    if (conflict_) return false;
    if (!ownRecordLocked(current->record) && !expiredLocked(clock_.now())) return false;
    desired = desiredRecordLocked(current);
    rememberAttemptLocked(desired);
  }

  // 3. Acquire or renew with one compare-and-swap on the version we hold.
  auto updated = lock.update(current->version, desired, timeout);
  if (updated.ok()) return succeeded(*updated);
  if (updated.error().code == util::ErrorCode::kConflict) {
    // Someone wrote first. Their write counts as a change seen now: it restarts the expiry clock.
    kLog.debug("conflict, re-reading", {.object = objectOf(lock)});
    auto got = lock.get(timeout);
    if (got.ok()) seen(*got);
    return false;
  }
  kLog.warn("update failed", {.err = updated.error().describe(), .object = objectOf(lock)});
  return false;
}

util::MonoTime LeaderElector::nextAttemptLocked(util::MonoTime now, bool last_attempt_failed) const {
  const bool synced = watch_synced_ && config_.watch_record;
  if (!synced || !observed_.current) return now + config_.retry_period;
  const auto& record = observed_.current->record;
  if (record.holder_identity.empty()) return last_attempt_failed ? now + config_.retry_period : now;
  if (ownRecordLocked(record)) {  // ours from an earlier run: a compare-and-swap on it proves no one took it since
    return last_attempt_failed ? now + config_.retry_period : now;
  }
  const Millis duration =
      record.lease_duration_seconds > 0 ? Millis(record.lease_duration_seconds * 1000LL) : config_.lease_duration;
  const util::MonoTime expiry = observed_.changed_at + duration;
  return expiry > now ? expiry : now + (last_attempt_failed ? config_.retry_period : Millis(0));
}

bool LeaderElector::acquireLoop(std::stop_token stop) {
  kLog.info("campaigning", {.object = objectOf(*config_.lock), .values = {{"identity", config_.lock->identity()}}});
  while (!stop.stop_requested()) {
    std::uint64_t sequence_before = 0;
    {
      std::lock_guard guard(mutex_);
      if (conflict_) return false;
      sequence_before = observed_.sequence;
    }
    if (tryAcquireOrRenew(config_.retry_period)) return true;
    std::unique_lock lock(mutex_);
    if (conflict_) return false;
    // Nothing new was learnt from the failed attempt (an error, not a rival's write): don't retry at once.
    const bool failed = observed_.sequence == sequence_before;
    const util::MonoTime deadline = nextAttemptLocked(clock_.now(), failed);
    const std::uint64_t seen = observed_.sequence;
    clock_.waitUntil(lock, changed_, deadline, stop, [&] { return observed_.sequence != seen; });
  }
  return false;
}

// Ends the term the moment leadership is lost, whatever the renewing thread is doing (it may be blocked in a
// request): at leadingUntil(), when the record names another holder, or when another process writes as us. The
// work's stop is requested right then; this is the instant the deadline inequality (timings.h) counts from.
void LeaderElector::watchTerm(std::stop_source& term) {
  const std::string& me = config_.lock->identity();
  std::unique_lock guard(mutex_);
  while (!term.stop_requested()) {
    const util::MonoTime until = last_renew_ + config_.renew_deadline;
    auto ended = [&]() -> std::optional<Outcome> {
      if (conflict_) return Outcome::kIdentityConflict;
      if (observed_.current && observed_.current->record.holder_identity != me) return Outcome::kLostLeadership;
      if (!observed_.current) return Outcome::kLostLeadership;  // deleted
      if (clock_.now() >= last_renew_ + config_.renew_deadline) return Outcome::kLostLeadership;
      return std::nullopt;
    };
    clock_.waitUntil(guard, changed_, until, term.get_token(),
                     [&] { return ended().has_value() || last_renew_ + config_.renew_deadline != until; });
    if (term.stop_requested()) return;
    const auto outcome = ended();
    if (!outcome) continue;  // renewed: wait for the new deadline
    if (*outcome == Outcome::kLostLeadership) {
      if (observed_.current && observed_.current->record.holder_identity != me) {
        kLog.warn("taken over; stopping leading", {.object = objectOf(*config_.lock),
                                                   .values = {{"leader", observed_.current->record.holder_identity}}});
      } else if (!observed_.current) {
        kLog.warn("deleted while leading; stopping leading", {.object = objectOf(*config_.lock)});
      } else {
        kLog.error("could not renew within the renew deadline; stopping leading",
                   {.object = objectOf(*config_.lock),
                    .values = {{"renew_deadline", util::formatDuration(config_.renew_deadline)}}});
      }
    }
    term_end_ = *outcome;
    leading_ = false;
    guard.unlock();
    term.request_stop();
    changed_.notify_all();
    return;
  }
}

void LeaderElector::leadLoop(std::stop_token term) {
  bool failed = false;
  util::MonoTime last_attempt = clock_.now();
  while (!term.stop_requested()) {
    util::MonoTime renew_by;
    {
      std::unique_lock guard(mutex_);
      // Renew every renew_interval while renewals succeed; once one fails, retry every retry_period until the
      // deadline. Followers expire us lease_duration after they saw our last write, and we stop at renew_deadline.
      const util::MonoTime next = failed ? last_attempt + config_.retry_period : last_renew_ + renew_interval_;
      clock_.waitUntil(guard, changed_, next, term, [] { return false; });
      if (term.stop_requested()) return;
      renew_by = last_renew_ + config_.renew_deadline;
    }
    const util::MonoTime attempt_start = clock_.now();
    if (attempt_start >= renew_by) return;  // watchTerm ends the term
    const Millis budget = std::min(config_.retry_period, duration_cast<Millis>(renew_by - attempt_start));
    failed = !tryAcquireOrRenew(budget);
    last_attempt = attempt_start;
  }
}

util::Result<fencing::FencingToken> LeaderElector::raiseTokenAbove(fencing::FencingToken floor) {
  VersionedRecord current;
  LeaderElectionRecord desired;
  util::MonoTime until;
  const util::MonoTime start = clock_.now();
  {
    std::lock_guard guard(mutex_);
    if (!leading_ || !observed_.current || !ownRecordLocked(observed_.current->record)) {
      return util::makeError(util::ErrorCode::kInvalidArgument,
                             "lease " + config_.lock->describe() + ": not leading, cannot raise the token");
    }
    current = *observed_.current;
    if (current.record.leader_transitions > floor.value()) return token_;
    desired = current.record;
    desired.leader_transitions = floor.value() + 1;
    desired.renew_time = clock_.wallNow();  // also a renewal, and a write we can tell apart from others
    rememberAttemptLocked(desired);
    until = last_renew_ + config_.renew_deadline;
  }
  if (start >= until) {
    return util::makeError(util::ErrorCode::kTimeout, "lease " + config_.lock->describe() + ": renew deadline passed");
  }
  auto updated = config_.lock->update(current.version, desired,
                                      std::min(config_.retry_period, duration_cast<Millis>(until - start)));
  if (!updated.ok()) return std::move(updated).takeError();
  std::lock_guard guard(mutex_);
  observeLocked(RecordState::of(*updated), clock_.now());
  if (leading_) {
    last_renew_ = std::max(last_renew_, start);
    token_ = fencing::FencingToken(updated->record.leader_transitions);
    changed_.notify_all();
  }
  kLog.info("token raised",
            {.object = objectOf(*config_.lock), .values = {{"token", token_.value()}, {"above", floor.value()}}});
  return token_;
}

void LeaderElector::release() {
  std::optional<VersionedRecord> current;
  {
    std::lock_guard guard(mutex_);
    current = observed_.current;
    if (!current || !ownRecordLocked(current->record)) return;
  }
  LeaderElectionRecord released;
  const util::WallTime wall = clock_.wallNow();
  released.holder_identity = "";
  released.lease_duration_seconds = 1;  // what client-go writes on release: Go peers then wait only 1 s
  released.acquire_time = wall;
  released.renew_time = wall;
  released.leader_transitions = current->record.leader_transitions;
  auto result = config_.lock->update(current->version, released, config_.retry_period);
  if (result.ok()) {
    kLog.info("released", {.object = objectOf(*config_.lock)});
    std::lock_guard guard(mutex_);
    observeLocked(RecordState::of(*result), clock_.now());
  } else {
    kLog.warn("release failed; followers will wait for expiry",
              {.err = result.error().describe(), .object = objectOf(*config_.lock)});
  }
}

LeaderElector::Outcome LeaderElector::run(std::stop_token stop) {
  {
    std::lock_guard guard(mutex_);
    assert(!running_ && "LeaderElector::run must not be called concurrently");
    running_ = true;
    // Per-run state. What we know of the record is kept, but its expiry clock restarts now: while no run watched, a
    // holder may have renewed without our seeing it (the first read of this run tells us).
    watch_synced_ = false;
    term_active_ = false;
    leading_ = false;
    conflict_ = false;
    term_end_.reset();
    observed_.changed_at = clock_.now();
    observed_.reported_holder.clear();
  }
  std::jthread watcher;
  if (config_.watch_record) {
    watcher = std::jthread([this](std::stop_token watch_stop) {
      auto status = config_.lock->watch([this](const RecordState& seen) { observe(seen); }, watch_stop);
      if (!status.ok())
        kLog.warn("cannot watch, polling instead",
                  {.err = status.error().describe(), .object = objectOf(*config_.lock)});
    });
  }

  Outcome outcome = Outcome::kStopped;
  if (acquireLoop(stop)) {
    fencing::FencingToken token;
    {
      std::lock_guard guard(mutex_);
      leading_ = true;
      in_term_ = true;
      token = fencing::FencingToken(observed_.current->record.leader_transitions);
      token_ = token;
    }
    kLog.info("started leading", {.object = objectOf(*config_.lock),
                                  .values = {{"identity", config_.lock->identity()}, {"token", token.value()}}});
    std::stop_source term;  // requested the moment this term ends, for whatever reason
    std::stop_callback forward(stop, [&term] { term.request_stop(); });
    std::jthread work(
        [this, token, term_token = term.get_token()] { config_.callbacks.on_started_leading(token, term_token); });
    std::jthread deadline([this, &term] { watchTerm(term); });
    leadLoop(term.get_token());
    term.request_stop();
    deadline.join();
    {
      std::lock_guard guard(mutex_);
      leading_ = false;
      in_term_ = false;
      outcome = term_end_.value_or(stop.stop_requested() ? Outcome::kStopped : Outcome::kLostLeadership);
    }
    if (work.joinable()) work.join();  // leader work ends before anyone else may start it
    kLog.info("stopped leading",
              {.object = objectOf(*config_.lock), .values = {{"identity", config_.lock->identity()}}});
    config_.callbacks.on_stopped_leading();
    if (outcome == Outcome::kStopped && config_.release_on_cancel) release();
  } else {
    {
      std::lock_guard guard(mutex_);
      if (conflict_) outcome = Outcome::kIdentityConflict;
    }
    config_.callbacks.on_stopped_leading();  // exactly once per run, also when this candidate never led
  }
  if (watcher.joinable()) {
    watcher.request_stop();
    watcher.join();
  }
  {
    std::lock_guard guard(mutex_);
    running_ = false;
  }
  return outcome;
}

}  // namespace singleton::election
