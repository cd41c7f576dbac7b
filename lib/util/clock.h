// Time as an interface, so tests drive a fake clock instead of sleeping. Durations that decide correctness (lease
// expiry) are measured on the monotonic clock; the wall clock is only written into records for humans and peers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <stop_token>

namespace singleton::util {

using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;
  virtual WallTime wallNow() const = 0;

  // Blocks on `cv` (with `lock` held by the caller) until `wake()` is true, `stop` is requested, or this clock
  // reaches `deadline`. Returns wake()'s final value.
  virtual bool waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable_any& cv, MonoTime deadline,
                         std::stop_token stop, const std::function<bool()>& wake) const = 0;

  // Sleeps until `deadline` or until stop is requested. Returns false when stopped early.
  bool sleepUntil(MonoTime deadline, std::stop_token stop) const;
  bool sleepFor(Millis duration, std::stop_token stop) const { return sleepUntil(now() + duration, std::move(stop)); }
};

class SystemClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
  bool waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable_any& cv, MonoTime deadline,
                 std::stop_token stop, const std::function<bool()>& wake) const override;
};

// The process-wide real clock.
const Clock& systemClock();

// A clock that moves only when told to. Waiters re-check it every millisecond of real time, so a test advances time
// with advance() and then waits (with a generous real timeout) for the effect. A test that must not advance before a
// thread has gone to sleep (or it would compute its deadline from the advanced time) waits for sleepers() first.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime wall_start = WallTime(std::chrono::seconds(1'700'000'000)));
  MonoTime now() const override;
  WallTime wallNow() const override;
  bool waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable_any& cv, MonoTime deadline,
                 std::stop_token stop, const std::function<bool()>& wake) const override;
  void advance(Millis by);
  // How many threads are waiting on this clock for a deadline still ahead of it.
  std::size_t sleepers() const;
  // Whether some thread waits on this clock for exactly `deadline`.
  bool sleepingUntil(MonoTime deadline) const;
  // Moves the wall clock only (the monotonic clock is untouched), as NTP steps or skew do.
  void stepWall(Millis by);

 private:
  mutable std::mutex mutex_;
  MonoTime mono_;
  WallTime wall_;
  mutable std::multiset<MonoTime> deadlines_;
};

}  // namespace singleton::util
