#include "work_queue.h"

#include <utility>

namespace singleton::sim {

WorkQueue::WorkQueue(const util::Clock& clock, util::BackoffPolicy retry_policy)
    : clock_(clock), retry_policy_(retry_policy) {}

void WorkQueue::add(const std::string& key) {
  {
    std::lock_guard lock(mutex_);
    addLocked(key);
  }
  cv_.notify_one();
}

void WorkQueue::addLocked(const std::string& key) {
  if (processing_.contains(key)) {
    dirty_.insert(key);
    return;
  }
  if (queued_.insert(key).second) queue_.push_back(key);
}

void WorkQueue::addAfter(const std::string& key, util::Millis delay) {
  if (delay <= util::Millis(0)) {
    add(key);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    const util::MonoTime due = clock_.now() + delay;
    const auto existing = delayed_at_.find(key);
    if (existing != delayed_at_.end()) {
      if (existing->second <= due) return;
      // Replace the later entry with this earlier one.
      auto [first, last] = delayed_.equal_range(existing->second);
      for (auto it = first; it != last; ++it) {
        if (it->second == key) {
          delayed_.erase(it);
          break;
        }
      }
    }
    delayed_.emplace(due, key);
    delayed_at_[key] = due;
    ++delayed_generation_;
  }
  // A waiting worker must shorten its wait to the new due time.
  cv_.notify_all();
}

void WorkQueue::retry(const std::string& key) {
  util::Millis delay;
  {
    std::lock_guard lock(mutex_);
    auto it = retries_.try_emplace(key, retry_policy_).first;
    delay = it->second.next();
  }
  addAfter(key, delay);
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard lock(mutex_);
  retries_.erase(key);
}

void WorkQueue::promoteDueLocked() {
  const util::MonoTime now = clock_.now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    std::string key = std::move(delayed_.begin()->second);
    delayed_.erase(delayed_.begin());
    delayed_at_.erase(key);
    addLocked(key);
  }
}

std::optional<std::string> WorkQueue::get(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  for (;;) {
    // Stopping wins over queued work: a worker must not start a request that may then take its full timeout.
    if (stop.stop_requested()) return std::nullopt;
    promoteDueLocked();
    if (!queue_.empty()) break;
    // Wake for a new key, a new earlier delayed key (notify_all), or the earliest due time.
    const util::MonoTime deadline = delayed_.empty() ? clock_.now() + std::chrono::hours(1) : delayed_.begin()->first;
    const std::uint64_t generation = delayed_generation_;
    clock_.waitUntil(lock, cv_, deadline, stop, [&] { return !queue_.empty() || delayed_generation_ != generation; });
  }
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  queued_.erase(key);
  processing_.insert(key);
  return key;
}

void WorkQueue::done(const std::string& key) {
  bool requeued = false;
  {
    std::lock_guard lock(mutex_);
    processing_.erase(key);
    if (dirty_.erase(key) > 0) {
      addLocked(key);
      requeued = true;
    }
  }
  if (requeued) cv_.notify_one();
}

std::size_t WorkQueue::length() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace singleton::sim
