// singleton-clock-probe: how a process sees its clocks and waits, for tests/integration/clock_rate_test.cc (the
// monotonic-rate library, libsingleton-clock-rate.so, with and without libfaketime). "Real" times are read with
// syscall(SYS_clock_gettime), which neither LD_PRELOAD library intercepts. It prints, one per line:
//
//   wall_offset <s>            CLOCK_REALTIME as the process reads it minus the real one
//   rate <r>                   steady_clock's elapsed time over the real CLOCK_MONOTONIC's, across --ratio-ms
//   wait <kind> <own ms> <real ms>   one wait of --wait-ms by steady_clock (or the clock the call takes): how long it
//                              took by steady_clock and in real time; the waits run at once, one thread each
//   done
//
//   singleton-clock-probe [--ratio-ms N] [--wait-ms N]
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono;

int64_t nanosOf(const timespec& ts) { return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

timespec timespecOf(int64_t ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

int64_t realNanos(clockid_t clock) {
  timespec ts{};
  syscall(SYS_clock_gettime, clock, &ts);
  return nanosOf(ts);
}

int64_t ownNanos(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return nanosOf(ts);
}

int64_t steadyNanos() { return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count(); }

// Runs `wait`, printing how long it took by steady_clock and in real time.
void measure(const char* kind, const std::function<void()>& wait) {
  const int64_t own0 = steadyNanos();
  const int64_t real0 = realNanos(CLOCK_MONOTONIC);
  wait();
  const int64_t own1 = steadyNanos();
  const int64_t real1 = realNanos(CLOCK_MONOTONIC);
  std::printf("wait %s %.3f %.3f\n", kind, static_cast<double>(own1 - own0) / 1e6,
              static_cast<double>(real1 - real0) / 1e6);
  std::fflush(stdout);
}

void readTimer(int fd) {
  uint64_t expirations = 0;
  if (::read(fd, &expirations, sizeof expirations) != static_cast<ssize_t>(sizeof expirations)) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  long ratio_ms = 2000;
  long wait_ms = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--ratio-ms" && i + 1 < argc) {
      ratio_ms = std::strtol(argv[++i], nullptr, 10);
    } else if (arg == "--wait-ms" && i + 1 < argc) {
      wait_ms = std::strtol(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: singleton-clock-probe [--ratio-ms N] [--wait-ms N]\n");
      return 2;
    }
  }
  std::printf("wall_offset %.3f\n", static_cast<double>(ownNanos(CLOCK_REALTIME) - realNanos(CLOCK_REALTIME)) / 1e9);
  std::fflush(stdout);

  if (ratio_ms > 0) {
    const int64_t own0 = steadyNanos();
    const int64_t real0 = realNanos(CLOCK_MONOTONIC);
    // Not a sleep on the clock under test: the ratio must hold whether or not the waits are translated.
    timespec nap = timespecOf(ratio_ms * 1'000'000);
    syscall(SYS_nanosleep, &nap, nullptr);
    const int64_t own1 = steadyNanos();
    const int64_t real1 = realNanos(CLOCK_MONOTONIC);
    std::printf("rate %.5f\n", static_cast<double>(own1 - own0) / static_cast<double>(real1 - real0));
    std::fflush(stdout);
  }

  const milliseconds wait(wait_ms);
  const int64_t wait_ns = wait_ms * 1'000'000;
  std::mutex mutex;
  std::condition_variable cv;
  const int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  const int abs_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (timer < 0 || abs_timer < 0) return 1;
  const std::vector<std::pair<const char*, std::function<void()>>> waits = {
      {"cv_wait_for",
       [&] {
         std::unique_lock lock(mutex);
         cv.wait_for(lock, wait);
       }},
      {"cv_wait_until",
       [&] {
         std::unique_lock lock(mutex);
         const auto deadline = steady_clock::now() + wait;
         while (cv.wait_until(lock, deadline) != std::cv_status::timeout) {
         }
       }},
      {"sleep_for", [&] { std::this_thread::sleep_for(wait); }},
      {"nanosleep",
       [&] {
         const timespec request = timespecOf(wait_ns);
         nanosleep(&request, nullptr);
       }},
      {"usleep", [&] { usleep(static_cast<useconds_t>(wait_ms * 1000)); }},
      {"clock_nanosleep",
       [&] {
         const timespec request = timespecOf(wait_ns);
         clock_nanosleep(CLOCK_MONOTONIC, 0, &request, nullptr);
       }},
      {"clock_nanosleep_abs",
       [&] {
         const timespec deadline = timespecOf(ownNanos(CLOCK_MONOTONIC) + wait_ns);
         while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) != 0) {
         }
       }},
      {"timerfd",
       [&] {
         itimerspec value{};
         value.it_value = timespecOf(wait_ns);
         if (timerfd_settime(timer, 0, &value, nullptr) != 0) std::exit(1);
         readTimer(timer);
       }},
      {"timerfd_abs",
       [&] {
         itimerspec value{};
         value.it_value = timespecOf(ownNanos(CLOCK_MONOTONIC) + wait_ns);
         if (timerfd_settime(abs_timer, TFD_TIMER_ABSTIME, &value, nullptr) != 0) std::exit(1);
         readTimer(abs_timer);
       }},
  };
  std::vector<std::thread> threads;
  for (const auto& [kind, fn] : waits) threads.emplace_back([kind, &fn] { measure(kind, fn); });
  for (auto& t : threads) t.join();
  ::close(timer);
  ::close(abs_timer);
  std::printf("done\n");
  return 0;
}
