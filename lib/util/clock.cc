#include "util/clock.h"

#include <iterator>

namespace singleton::util {

bool Clock::sleepUntil(MonoTime deadline, std::stop_token stop) const {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  waitUntil(lock, cv, deadline, stop, [] { return false; });
  return !stop.stop_requested();
}

bool SystemClock::waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable_any& cv, MonoTime deadline,
                            std::stop_token stop, const std::function<bool()>& wake) const {
  return cv.wait_until(lock, stop, deadline, wake);
}

const Clock& systemClock() {
  static const SystemClock clock;
  return clock;
}

FakeClock::FakeClock(WallTime wall_start) : mono_(std::chrono::hours(1000)), wall_(wall_start) {}

MonoTime FakeClock::now() const {
  std::lock_guard guard(mutex_);
  return mono_;
}

WallTime FakeClock::wallNow() const {
  std::lock_guard guard(mutex_);
  return wall_;
}

bool FakeClock::waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable_any& cv, MonoTime deadline,
                          std::stop_token stop, const std::function<bool()>& wake) const {
  std::multiset<MonoTime>::iterator registered;
  {
    std::lock_guard guard(mutex_);
    registered = deadlines_.insert(deadline);
  }
  bool woken = true;
  while (!wake()) {
    if (stop.stop_requested() || now() >= deadline) {
      woken = false;
      break;
    }
    cv.wait_for(lock, stop, std::chrono::milliseconds(1), wake);
  }
  std::lock_guard guard(mutex_);
  deadlines_.erase(registered);
  return woken;
}

std::size_t FakeClock::sleepers() const {
  std::lock_guard guard(mutex_);
  return static_cast<std::size_t>(std::distance(deadlines_.upper_bound(mono_), deadlines_.end()));
}

bool FakeClock::sleepingUntil(MonoTime deadline) const {
  std::lock_guard guard(mutex_);
  return deadlines_.contains(deadline);
}

void FakeClock::advance(Millis by) {
  std::lock_guard guard(mutex_);
  mono_ += by;
  wall_ += by;
}

void FakeClock::stepWall(Millis by) {
  std::lock_guard guard(mutex_);
  wall_ += by;
}

}  // namespace singleton::util
