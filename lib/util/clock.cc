#include "util/clock.h"

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
  while (!wake()) {
    if (stop.stop_requested() || now() >= deadline) return false;
    cv.wait_for(lock, stop, std::chrono::milliseconds(1), wake);
  }
  return true;
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
