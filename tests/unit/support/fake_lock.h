// An in-memory Lock with real compare-and-swap semantics, a watch, and fault injection — several candidates can
// share one FakeRecordStore just as they share one Lease.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "election/lock.h"

namespace singleton::testing {

class FakeRecordStore {
 public:
  std::optional<election::VersionedRecord> read() {
    std::lock_guard g(mutex_);
    return current_;
  }
  // Writes as an outsider would (no precondition).
  void set(const election::LeaderElectionRecord& record) {
    std::lock_guard g(mutex_);
    commitLocked(record);
  }
  // Deletes the record as an outsider would (a GitOps prune, kubectl delete); watchers see nullopt.
  void erase() {
    std::lock_guard g(mutex_);
    current_.reset();
    pushLocked(election::RecordState::absent(std::to_string(++version_)));
  }
  // Tells every watcher "no record as of `as_of`" (a list served before a create, delivered after it).
  void announceAbsence(const std::string& as_of) {
    std::lock_guard g(mutex_);
    pushLocked(election::RecordState::absent(as_of));
  }
  std::string version() {
    std::lock_guard g(mutex_);
    return std::to_string(version_);
  }
  util::Result<election::VersionedRecord> create(const election::LeaderElectionRecord& record) {
    std::lock_guard g(mutex_);
    ++writes_;
    if (current_) return util::makeError(util::ErrorCode::kAlreadyExists, "exists");
    return commitLocked(record);
  }
  util::Result<election::VersionedRecord> update(const std::string& version,
                                                 const election::LeaderElectionRecord& record) {
    std::lock_guard g(mutex_);
    ++writes_;
    if (!current_) return util::makeError(util::ErrorCode::kNotFound, "not found");
    if (current_->version != version) return util::makeError(util::ErrorCode::kConflict, "conflict");
    return commitLocked(record);
  }
  int writes() {
    std::lock_guard g(mutex_);
    return writes_;
  }

  // Watch plumbing: each watcher has a queue of versions.
  struct Subscriber {
    std::deque<election::RecordState> queue;
  };
  std::shared_ptr<Subscriber> subscribe() {
    std::lock_guard g(mutex_);
    auto s = std::make_shared<Subscriber>();
    s->queue.push_back(current_ ? election::RecordState::of(*current_)
                                : election::RecordState::absent(std::to_string(version_)));
    subscribers_.push_back(s);
    return s;
  }
  void unsubscribe(const std::shared_ptr<Subscriber>& s) {
    std::lock_guard g(mutex_);
    std::erase(subscribers_, s);
  }
  std::mutex& mutex() { return mutex_; }
  std::condition_variable_any& cv() { return cv_; }

 private:
  election::VersionedRecord commitLocked(const election::LeaderElectionRecord& record) {
    current_ = election::VersionedRecord{record, std::to_string(++version_)};
    pushLocked(election::RecordState::of(*current_));
    return *current_;
  }
  void pushLocked(const election::RecordState& state) {
    for (auto& s : subscribers_) s->queue.push_back(state);
    cv_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable_any cv_;
  std::optional<election::VersionedRecord> current_;
  long long version_ = 100;
  int writes_ = 0;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
};

class FakeLock final : public election::Lock {
 public:
  FakeLock(std::shared_ptr<FakeRecordStore> store, std::string identity)
      : store_(std::move(store)), identity_(std::move(identity)) {}

  util::Result<election::VersionedRecord> get(util::Millis) override {
    if (auto e = injected()) return *e;
    ++gets_;
    auto r = store_->read();
    if (!r) return util::makeError(util::ErrorCode::kNotFound, "not found");
    return *r;
  }
  util::Result<election::VersionedRecord> create(const election::LeaderElectionRecord& record, util::Millis) override {
    if (auto e = injected()) return *e;
    return store_->create(record);
  }
  util::Result<election::VersionedRecord> update(const std::string& version,
                                                 const election::LeaderElectionRecord& record, util::Millis) override {
    if (auto e = injected()) return *e;
    if (holding_) {
      std::lock_guard g(held_mutex_);
      held_.emplace_back(version, record);
      return util::makeError(util::ErrorCode::kTimeout, "no answer (the request is held on the wire)");
    }
    if (hanging_) {
      ++stuck_;
      while (hanging_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      --stuck_;
    }
    ++updates_;
    auto result = store_->update(version, record);
    if (result.ok() && losing_answers_) return util::makeError(util::ErrorCode::kTimeout, "answer lost");
    return result;
  }
  util::Status watch(const std::function<void(const election::RecordState&)>& on_change,
                     std::stop_token stop) override {
    auto sub = store_->subscribe();
    while (!stop.stop_requested()) {
      election::RecordState next;
      {
        std::unique_lock g(store_->mutex());
        store_->cv().wait(g, stop, [&] { return !sub->queue.empty(); });
        if (sub->queue.empty()) break;
        next = sub->queue.front();
        sub->queue.pop_front();
      }
      on_change(next);
      ++delivered_;
    }
    store_->unsubscribe(sub);
    return {};
  }
  std::string identity() const override { return identity_; }
  std::string describe() const override { return "fake/lease"; }

  // Every call fails with a network error while set (a partitioned candidate).
  void partition(bool on) { partitioned_ = on; }
  // update() commits but reports a timeout while set (the answer was lost on the way back).
  void loseAnswers(bool on) { losing_answers_ = on; }
  // update() blocks while set (a wedged connection).
  void hang(bool on) { hanging_ = on; }
  // update() neither commits nor answers while set (reported as a timeout): the request is held on the wire until
  // deliverHeld() applies every held one in order, as a healed partition would deliver them late.
  void holdWrites(bool on) { holding_ = on; }
  std::size_t held() const {
    std::lock_guard g(held_mutex_);
    return held_.size();
  }
  void deliverHeld() {
    std::lock_guard g(held_mutex_);
    for (const auto& [version, record] : held_) (void)store_->update(version, record);  // later ones conflict
    held_.clear();
  }
  int updates() const { return updates_; }
  // update() calls blocked by hang() right now.
  int stuck() const { return stuck_; }
  // Watch events the elector has finished handling.
  int delivered() const { return delivered_; }
  int gets() const { return gets_; }

 private:
  std::optional<util::Error> injected() const {
    if (partitioned_) return util::makeError(util::ErrorCode::kNetwork, "partitioned");
    return std::nullopt;
  }
  std::shared_ptr<FakeRecordStore> store_;
  std::string identity_;
  std::atomic<bool> partitioned_{false};
  std::atomic<bool> hanging_{false};
  std::atomic<bool> losing_answers_{false};
  std::atomic<bool> holding_{false};
  mutable std::mutex held_mutex_;
  std::vector<std::pair<std::string, election::LeaderElectionRecord>> held_;
  std::atomic<int> updates_{0};
  std::atomic<int> gets_{0};
  std::atomic<int> stuck_{0};
  std::atomic<int> delivered_{0};
};

// Waits (real time, generously) for a condition that a background thread will make true.
template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return predicate();
}

}  // namespace singleton::testing
