// libsingleton-clock-rate.so: an LD_PRELOAD library that runs a process's monotonic clocks at a rate, for the fault
// campaign's clock faults (tests/integration/chaos/peers.cc). SINGLETON_CLOCK_RATE=R (e.g. 1.02, 0.98; absent,
// invalid, not in (0.01, 100) or 1: pass-through) makes CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE
// and CLOCK_BOOTTIME (so std::chrono::steady_clock) read
//
//   fake(t) = base + (real(t) - base) * R        base: that clock when the library was loaded
//
// and translates the waits the electors time with that clock, so that a wait of d by the process's own clock takes
// d / R of real time:
//
//   clock_gettime                 the clocks above scaled; every other clock forwarded to the next library (so
//                                 libfaketime, preloaded after this one, still fakes CLOCK_REALTIME)
//   pthread_cond_clockwait        std::condition_variable::wait_for/wait_until on steady_clock (libstdc++ 12): a
//                                 monotonic absolute deadline becomes real = base + (fake - base) / R
//   clock_nanosleep               TIMER_ABSTIME on those clocks converted as above, relative durations divided by R
//   nanosleep, usleep, sleep      std::this_thread::sleep_for (nanosleep); divided by R
//   timerfd_create/settime/gettime  Boost.Asio's steady_timer in cpprestsdk (one timerfd on CLOCK_MONOTONIC per
//                                 io_context): relative times divided by R, TIMER_ABSTIME converted, the remaining
//                                 time read back multiplied by R
//
// Use it with libfaketime as LD_PRELOAD=<this>:<libfaketime> and FAKETIME_DONT_FAKE_MONOTONIC=1: libfaketime 0.9.10
// fakes the wall clock; with the monotonic clock faked too, it does not translate pthread_cond_clockwait's absolute
// deadline (a 300 ms wait_for never returns). The calls translated here go straight to libc, not to the next library:
// libfaketime scales nanosleep, usleep, clock_nanosleep and timerfd_settime by its own FAKETIME rate even with
// FAKETIME_DONT_FAKE_MONOTONIC=1, which would divide twice. Waits on CLOCK_REALTIME are forwarded to it.
//
// Left out, as singleton-elect, singleton-operator, libcpprest and libstdc++ do not use them for steady-clock waits
// (nm -D: none of them imports these): pthread_cond_timedwait on a condvar with a CLOCK_MONOTONIC attribute (its
// clock is not visible without tracking pthread_cond_init; Boost.Asio's posix_event would, but cpprestsdk's build does
// not call it), sem_clockwait, sem_timedwait, pthread_mutex_clocklock, pthread_rwlock_clock*, timer_settime (POSIX
// timers), and libstdc++'s futex waits (std::future::wait_for, std::atomic::wait, std::counting_semaphore), which go
// through syscall(SYS_futex) and cannot be told apart from other syscall() uses without decoding its arguments. The
// relative timeouts of poll, ppoll, select and epoll_wait are not scaled: these binaries use them with no timeout
// (Asio's epoll loop, which times with its timerfd), 0, or short timeouts re-checked against steady_clock deadlines;
// under libfaketime they are divided by the same FAKETIME rate anyway.
//
// clock_gettime may be reached from a vDSO-like hot path or a signal handler: it allocates nothing and takes no lock.
// The next and libc symbols are resolved in the constructor, or lazily (atomically) by a call that comes first.
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace {

constexpr int64_t kNanos = 1'000'000'000;
// Times or durations beyond this (about 31 years) are "forever" (e.g. time_point::max()): passed on unchanged.
constexpr int64_t kForeverSeconds = 1'000'000'000;

// Written once by the constructor before any other thread exists; `active` (release/acquire) publishes them.
double rate = 1.0;
int64_t base_ns[4] = {0, 0, 0, 0};
std::atomic<bool> active{false};

// The monotonic clocks and their slot in base_ns, or -1.
int slotOf(clockid_t clock) {
  switch (clock) {
    case CLOCK_MONOTONIC:
      return 0;
    case CLOCK_MONOTONIC_RAW:
      return 1;
    case CLOCK_MONOTONIC_COARSE:
      return 2;
    case CLOCK_BOOTTIME:
      return 3;
    default:
      return -1;
  }
}

// A symbol resolved once: from the next library (RTLD_NEXT) or from libc itself.
template <typename Fn>
Fn resolve(std::atomic<Fn>& slot, const char* name, bool from_libc) {
  Fn fn = slot.load(std::memory_order_acquire);
  if (fn != nullptr) return fn;
  void* handle = RTLD_NEXT;
  if (from_libc) {
    handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) handle = RTLD_NEXT;
  }
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (fn != nullptr) slot.store(fn, std::memory_order_release);
  return fn;
}

using ClockGettimeFn = int (*)(clockid_t, struct timespec*);
using CondClockwaitFn = int (*)(pthread_cond_t*, pthread_mutex_t*, clockid_t, const struct timespec*);
using ClockNanosleepFn = int (*)(clockid_t, int, const struct timespec*, struct timespec*);
using NanosleepFn = int (*)(const struct timespec*, struct timespec*);
using UsleepFn = int (*)(useconds_t);
using SleepFn = unsigned int (*)(unsigned int);
using TimerfdCreateFn = int (*)(int, int);
using TimerfdSettimeFn = int (*)(int, int, const struct itimerspec*, struct itimerspec*);
using TimerfdGettimeFn = int (*)(int, struct itimerspec*);

std::atomic<ClockGettimeFn> next_clock_gettime{nullptr};
std::atomic<CondClockwaitFn> next_cond_clockwait{nullptr};
std::atomic<CondClockwaitFn> libc_cond_clockwait{nullptr};
std::atomic<ClockNanosleepFn> next_clock_nanosleep{nullptr};
std::atomic<ClockNanosleepFn> libc_clock_nanosleep{nullptr};
std::atomic<NanosleepFn> next_nanosleep{nullptr};
std::atomic<NanosleepFn> libc_nanosleep{nullptr};
std::atomic<UsleepFn> next_usleep{nullptr};
std::atomic<SleepFn> next_sleep{nullptr};
std::atomic<TimerfdCreateFn> next_timerfd_create{nullptr};
std::atomic<TimerfdSettimeFn> next_timerfd_settime{nullptr};
std::atomic<TimerfdSettimeFn> libc_timerfd_settime{nullptr};
std::atomic<TimerfdGettimeFn> next_timerfd_gettime{nullptr};
std::atomic<TimerfdGettimeFn> libc_timerfd_gettime{nullptr};

// The clock of each timerfd this process created (slotOf() + 1; 0: not a monotonic timerfd or not seen).
constexpr int kMaxTimerFds = 4096;
std::atomic<unsigned char> timerfd_clock[kMaxTimerFds];

// Rounding without libm (the library links nothing but libc).
int64_t roundUp(double x) {
  const auto truncated = static_cast<int64_t>(x);
  return static_cast<double>(truncated) < x ? truncated + 1 : truncated;
}
int64_t roundNearest(double x) { return x < 0 ? -roundUp(-x - 0.5) : roundUp(x - 0.5); }

int64_t toNanos(const struct timespec& ts) { return static_cast<int64_t>(ts.tv_sec) * kNanos + ts.tv_nsec; }

struct timespec fromNanos(int64_t ns) {
  if (ns < 0) ns = 0;
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(ns / kNanos);
  ts.tv_nsec = static_cast<long>(ns % kNanos);
  return ts;
}

bool forever(const struct timespec& ts) { return ts.tv_sec >= kForeverSeconds; }

// A duration by the process's clock as real time (rounded up, so that a wait never ends early by its own clock).
struct timespec realDuration(const struct timespec& fake) {
  if (forever(fake) || fake.tv_sec < 0) return fake;
  return fromNanos(roundUp(static_cast<double>(toNanos(fake)) / rate));
}

// A real duration as the process's clock sees it.
struct timespec fakeDuration(const struct timespec& real) {
  if (forever(real) || real.tv_sec < 0) return real;
  return fromNanos(roundNearest(static_cast<double>(toNanos(real)) * rate));
}

// An absolute time on monotonic clock `slot` as real time; at least 1 ns (0 would disarm a timerfd).
struct timespec realDeadline(int slot, const struct timespec& fake) {
  if (forever(fake)) return fake;
  const int64_t base = base_ns[slot];
  const int64_t real = base + roundUp(static_cast<double>(toNanos(fake) - base) / rate);
  return fromNanos(real < 1 ? 1 : real);
}

// The slot of `clock` if this library scales it now, else -1.
int scaledSlot(clockid_t clock) {
  if (!active.load(std::memory_order_acquire)) return -1;
  return slotOf(clock);
}

bool scaling() { return active.load(std::memory_order_acquire); }

__attribute__((constructor)) void initClockRate() {
  const ClockGettimeFn gettime = resolve(next_clock_gettime, "clock_gettime", false);
  resolve(next_cond_clockwait, "pthread_cond_clockwait", false);
  resolve(libc_cond_clockwait, "pthread_cond_clockwait", true);
  resolve(next_clock_nanosleep, "clock_nanosleep", false);
  resolve(libc_clock_nanosleep, "clock_nanosleep", true);
  resolve(next_nanosleep, "nanosleep", false);
  resolve(libc_nanosleep, "nanosleep", true);
  resolve(next_usleep, "usleep", false);
  resolve(next_sleep, "sleep", false);
  resolve(next_timerfd_create, "timerfd_create", false);
  resolve(next_timerfd_settime, "timerfd_settime", false);
  resolve(libc_timerfd_settime, "timerfd_settime", true);
  resolve(next_timerfd_gettime, "timerfd_gettime", false);
  resolve(libc_timerfd_gettime, "timerfd_gettime", true);

  const char* text = getenv("SINGLETON_CLOCK_RATE");
  if (text == nullptr || *text == '\0' || gettime == nullptr) return;
  char* end = nullptr;
  const double parsed = strtod(text, &end);
  if (end == text || *end != '\0' || !(parsed > 0.01) || parsed >= 100 || parsed == 1.0) return;
  const clockid_t clocks[4] = {CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME};
  for (int i = 0; i < 4; ++i) {
    struct timespec now {};
    if (gettime(clocks[i], &now) == 0) base_ns[i] = toNanos(now);
  }
  rate = parsed;
  active.store(true, std::memory_order_release);
}

}  // namespace

extern "C" {

int clock_gettime(clockid_t clock, struct timespec* ts) {
  const ClockGettimeFn next = resolve(next_clock_gettime, "clock_gettime", false);
  if (next == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = next(clock, ts);
  const int slot = scaledSlot(clock);
  if (result != 0 || slot < 0) return result;
  const int64_t base = base_ns[slot];
  *ts = fromNanos(base + roundNearest(static_cast<double>(toNanos(*ts) - base) * rate));
  return 0;
}

int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t clock,
                           const struct timespec* abstime) {
  const int slot = scaledSlot(clock);
  if (slot < 0) {
    const CondClockwaitFn next = resolve(next_cond_clockwait, "pthread_cond_clockwait", false);
    return next != nullptr ? next(cond, mutex, clock, abstime) : ENOSYS;
  }
  const CondClockwaitFn libc = resolve(libc_cond_clockwait, "pthread_cond_clockwait", true);
  if (libc == nullptr) return ENOSYS;
  const struct timespec real = realDeadline(slot, *abstime);
  return libc(cond, mutex, clock, &real);
}

int clock_nanosleep(clockid_t clock, int flags, const struct timespec* request, struct timespec* remain) {
  const int slot = scaledSlot(clock);
  if (slot < 0 || request == nullptr) {
    const ClockNanosleepFn next = resolve(next_clock_nanosleep, "clock_nanosleep", false);
    return next != nullptr ? next(clock, flags, request, remain) : ENOSYS;
  }
  const ClockNanosleepFn libc = resolve(libc_clock_nanosleep, "clock_nanosleep", true);
  if (libc == nullptr) return ENOSYS;
  if ((flags & TIMER_ABSTIME) != 0) {
    const struct timespec real = realDeadline(slot, *request);
    return libc(clock, flags, &real, remain);
  }
  const struct timespec real = realDuration(*request);
  const int result = libc(clock, flags, &real, remain);
  if (result == EINTR && remain != nullptr) *remain = fakeDuration(*remain);
  return result;
}

int nanosleep(const struct timespec* request, struct timespec* remain) {
  if (!scaling() || request == nullptr) {
    const NanosleepFn next = resolve(next_nanosleep, "nanosleep", false);
    if (next != nullptr) return next(request, remain);
    errno = ENOSYS;
    return -1;
  }
  const NanosleepFn libc = resolve(libc_nanosleep, "nanosleep", true);
  if (libc == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const struct timespec real = realDuration(*request);
  const int result = libc(&real, remain);
  if (result != 0 && errno == EINTR && remain != nullptr) *remain = fakeDuration(*remain);
  return result;
}

// glibc's usleep and sleep call its nanosleep internally, past this library: both are replaced when scaling.
int usleep(useconds_t micros) {
  if (!scaling()) {
    const UsleepFn next = resolve(next_usleep, "usleep", false);
    if (next != nullptr) return next(micros);
  }
  const struct timespec request = fromNanos(static_cast<int64_t>(micros) * 1000);
  return nanosleep(&request, nullptr);
}

unsigned int sleep(unsigned int seconds) {
  if (!scaling()) {
    const SleepFn next = resolve(next_sleep, "sleep", false);
    if (next != nullptr) return next(seconds);
  }
  const struct timespec request = fromNanos(static_cast<int64_t>(seconds) * kNanos);
  struct timespec remain {};
  if (nanosleep(&request, &remain) == 0) return 0;
  return static_cast<unsigned int>(remain.tv_sec + (remain.tv_nsec > 0 ? 1 : 0));
}

int timerfd_create(int clock, int flags) {
  const TimerfdCreateFn next = resolve(next_timerfd_create, "timerfd_create", false);
  if (next == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int fd = next(clock, flags);
  if (fd >= 0 && fd < kMaxTimerFds) {
    timerfd_clock[fd].store(static_cast<unsigned char>(slotOf(clock) + 1), std::memory_order_release);
  }
  return fd;
}

int timerfd_settime(int fd, int flags, const struct itimerspec* value, struct itimerspec* old_value) {
  const int slot = fd >= 0 && fd < kMaxTimerFds && scaling()
                       ? static_cast<int>(timerfd_clock[fd].load(std::memory_order_acquire)) - 1
                       : -1;
  if (slot < 0 || value == nullptr) {
    const TimerfdSettimeFn next = resolve(next_timerfd_settime, "timerfd_settime", false);
    if (next == nullptr) {
      errno = ENOSYS;
      return -1;
    }
    return next(fd, flags, value, old_value);
  }
  const TimerfdSettimeFn libc = resolve(libc_timerfd_settime, "timerfd_settime", true);
  if (libc == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  struct itimerspec real = *value;
  real.it_interval = realDuration(value->it_interval);
  // A zero it_value disarms the timer: left as it is.
  if (value->it_value.tv_sec != 0 || value->it_value.tv_nsec != 0) {
    real.it_value =
        (flags & TFD_TIMER_ABSTIME) != 0 ? realDeadline(slot, value->it_value) : realDuration(value->it_value);
    if (real.it_value.tv_sec == 0 && real.it_value.tv_nsec == 0) real.it_value.tv_nsec = 1;
  }
  const int result = libc(fd, flags, &real, old_value);
  if (result == 0 && old_value != nullptr) {
    old_value->it_interval = fakeDuration(old_value->it_interval);
    old_value->it_value = fakeDuration(old_value->it_value);
  }
  return result;
}

int timerfd_gettime(int fd, struct itimerspec* value) {
  const bool scaled =
      fd >= 0 && fd < kMaxTimerFds && scaling() && timerfd_clock[fd].load(std::memory_order_acquire) != 0;
  const TimerfdGettimeFn fn = scaled ? resolve(libc_timerfd_gettime, "timerfd_gettime", true)
                                     : resolve(next_timerfd_gettime, "timerfd_gettime", false);
  if (fn == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = fn(fd, value);
  if (result == 0 && scaled && value != nullptr) {
    value->it_interval = fakeDuration(value->it_interval);
    value->it_value = fakeDuration(value->it_value);
  }
  return result;
}

}  // extern "C"
