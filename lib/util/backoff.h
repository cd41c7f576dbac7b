// Exponential backoff with jitter, and a retry helper that honours a server's Retry-After.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <stop_token>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::util {

struct BackoffPolicy {
  Millis initial{200};
  Millis max{30'000};
  double factor = 2.0;
  double jitter = 0.2;  // each delay is spread uniformly over ±jitter of itself
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}, std::uint64_t seed = std::random_device{}());
  // The next delay; grows by `factor` each call up to `max`.
  Millis next();
  void reset();

 private:
  BackoffPolicy policy_;
  Millis current_;
  std::mt19937_64 rng_;
};

struct RetryPolicy {
  BackoffPolicy backoff;
  int max_attempts = 5;  // including the first
};

// Calls `attempt` until it succeeds, fails with an error that is not retryable, attempts run out, or stop is
// requested. Waits between attempts on `clock`: the larger of the backoff delay and the error's Retry-After.
template <typename T>
Result<T> retry(const std::function<Result<T>()>& attempt, const RetryPolicy& policy, const Clock& clock,
                std::stop_token stop = {}) {
  Backoff backoff(policy.backoff);
  for (int i = 1;; ++i) {
    Result<T> result = attempt();
    if (result.ok() || !result.error().retryable() || i >= policy.max_attempts) return result;
    Millis delay = backoff.next();
    if (result.error().retry_after && *result.error().retry_after > delay) delay = *result.error().retry_after;
    if (!clock.sleepFor(delay, stop)) return makeError(ErrorCode::kCancelled, "stopped while retrying");
  }
}

}  // namespace singleton::util
