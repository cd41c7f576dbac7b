#include "controller/work_queue.h"

#include <algorithm>
#include <utility>

namespace singleton::controller {
namespace {

// A get() with nothing delayed still wakes this often to re-read the clock; adds notify it at once anyway.
constexpr util::Millis kIdleWait{60'000};

}  // namespace

WorkQueue::WorkQueue(const util::Clock& clock, DepthCallback depth, WorkQueueOptions options)
    : clock_(clock), depth_(std::move(depth)), options_(options) {
  publishDepthLocked();
}

void WorkQueue::add(const std::string& key) {
  std::lock_guard lock(mutex_);
  addLocked(key);
}

void WorkQueue::addLocked(const std::string& key) {
  if (shutting_down_) return;
  // Queued now, so a pending delayed add of the same key is redundant.
  if (const auto it = waiting_index_.find(key); it != waiting_index_.end()) {
    waiting_.erase(it->second);
    waiting_index_.erase(it);
  }
  if (!dirty_.insert(key).second) return;  // already waiting to be processed
  if (processing_.contains(key)) return;   // done() queues it again
  queue_.push_back(key);
  publishDepthLocked();
  cv_.notify_one();
}

void WorkQueue::addAfter(const std::string& key, util::Millis delay) {
  std::lock_guard lock(mutex_);
  if (shutting_down_) return;
  if (delay <= util::Millis::zero()) {
    addLocked(key);
    return;
  }
  // Queued, or queued again on done(): sooner than any delay.
  if (dirty_.contains(key)) return;
  const util::MonoTime ready_at = clock_.now() + delay;
  if (const auto it = waiting_index_.find(key); it != waiting_index_.end()) {
    if (it->second->first <= ready_at) return;
    waiting_.erase(it->second);
    waiting_index_.erase(it);
  }
  waiting_index_[key] = waiting_.emplace(ready_at, key);
  // A waiter may be sleeping until a later deadline: wake it to recompute (a notify alone would not, since its
  // wait ends only when its predicate holds or its deadline passes).
  ++timers_changed_;
  cv_.notify_all();
}

void WorkQueue::addRateLimited(const std::string& key, util::Millis at_least) {
  util::Millis delay;
  {
    std::lock_guard lock(mutex_);
    const int failures = failures_[key]++;
    // Doubling past the cap overflows nothing: the shift stops at a count far beyond any cap in milliseconds.
    const auto factor = std::int64_t{1} << std::min(failures, 40);
    delay = options_.base_delay.count() >= options_.max_delay.count() / factor ? options_.max_delay
                                                                               : options_.base_delay * factor;
  }
  addAfter(key, std::max(delay, at_least));
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard lock(mutex_);
  failures_.erase(key);
}

int WorkQueue::numRequeues(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

std::optional<std::string> WorkQueue::get(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (true) {
    promoteDueLocked();
    if (shutting_down_ || stop.stop_requested()) return std::nullopt;
    if (!queue_.empty()) {
      std::string key = std::move(queue_.front());
      queue_.pop_front();
      dirty_.erase(key);
      processing_.insert(key);
      publishDepthLocked();
      return key;
    }
    const util::MonoTime now = clock_.now();
    const util::MonoTime deadline = waiting_.empty() ? now + kIdleWait : waiting_.begin()->first;
    const std::uint64_t timers_seen = timers_changed_;
    clock_.waitUntil(lock, cv_, deadline, stop, [this, timers_seen] {
      return !queue_.empty() || shutting_down_ || timers_changed_ != timers_seen;
    });
  }
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard lock(mutex_);
  processing_.erase(key);
  if (dirty_.contains(key) && !shutting_down_) {
    queue_.push_back(key);
    publishDepthLocked();
    cv_.notify_one();
  }
}

void WorkQueue::reset() {
  std::lock_guard lock(mutex_);
  queue_.clear();
  dirty_.clear();
  waiting_.clear();
  waiting_index_.clear();
  failures_.clear();
  ++timers_changed_;
  publishDepthLocked();
  cv_.notify_all();
}

void WorkQueue::shutDown() {
  std::lock_guard lock(mutex_);
  shutting_down_ = true;
  queue_.clear();
  dirty_.clear();
  waiting_.clear();
  waiting_index_.clear();
  publishDepthLocked();
  cv_.notify_all();
}

bool WorkQueue::shuttingDown() const {
  std::lock_guard lock(mutex_);
  return shutting_down_;
}

std::size_t WorkQueue::len() {
  std::lock_guard lock(mutex_);
  promoteDueLocked();
  return queue_.size();
}

std::size_t WorkQueue::waitingLen() {
  std::lock_guard lock(mutex_);
  promoteDueLocked();
  return waiting_.size();
}

void WorkQueue::promoteDueLocked() {
  if (waiting_.empty()) return;
  const util::MonoTime now = clock_.now();
  while (!waiting_.empty() && waiting_.begin()->first <= now) {
    std::string key = waiting_.begin()->second;
    waiting_index_.erase(key);
    waiting_.erase(waiting_.begin());
    addLocked(key);
  }
}

void WorkQueue::publishDepthLocked() {
  if (depth_) depth_(queue_.size());
}

}  // namespace singleton::controller
