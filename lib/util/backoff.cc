#include "util/backoff.h"

#include <algorithm>

namespace singleton::util {

Backoff::Backoff(BackoffPolicy policy, std::uint64_t seed) : policy_(policy), current_(policy.initial), rng_(seed) {}

Millis Backoff::next() {
  const Millis base = current_;
  current_ =
      std::min(policy_.max, Millis(static_cast<long long>(static_cast<double>(current_.count()) * policy_.factor)));
  if (policy_.jitter <= 0) return base;
  std::uniform_real_distribution<double> spread(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return Millis(std::max<long long>(1, static_cast<long long>(static_cast<double>(base.count()) * spread(rng_))));
}

void Backoff::reset() { current_ = policy_.initial; }

}  // namespace singleton::util
