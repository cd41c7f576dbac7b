#include "election/timings.h"

#include <algorithm>

#include "util/duration.h"

namespace singleton::election {

using util::formatDuration;
using util::Millis;

Millis driftMargin(Millis lease_duration) { return lease_duration / 10; }

Millis stopBudget(Millis lease_duration, Millis renew_deadline) {
  return lease_duration - renew_deadline - driftMargin(lease_duration);
}

Millis killWait(Millis lease_duration, Millis renew_deadline) {
  return std::max(Millis(0), std::min(Millis(500), stopBudget(lease_duration, renew_deadline) / 4));
}

Millis defaultGracePeriod(Millis lease_duration, Millis renew_deadline) {
  return std::max(Millis(0), stopBudget(lease_duration, renew_deadline) - killWait(lease_duration, renew_deadline));
}

Millis defaultRenewInterval(Millis lease_duration, Millis renew_deadline, Millis retry_period) {
  return std::max(Millis(1), std::min(lease_duration / 3, renew_deadline - retry_period));
}

Millis effectiveRenewInterval(const Timings& t) {
  return t.renew_interval > Millis(0) ? t.renew_interval
                                      : defaultRenewInterval(t.lease_duration, t.renew_deadline, t.retry_period);
}

util::Status validateTimings(const Timings& t) {
  auto bad = [](const std::string& m) { return util::makeError(util::ErrorCode::kInvalidArgument, m); };
  if (t.retry_period <= Millis(0)) return bad("retry period must be positive");
  if (t.lease_duration < Millis(1000)) {
    return bad("lease duration must be at least 1s (the Lease stores whole seconds)");
  }
  if (t.lease_duration <= t.renew_deadline) {
    return bad("lease duration (" + formatDuration(t.lease_duration) + ") must be greater than renew deadline (" +
               formatDuration(t.renew_deadline) + ")");
  }
  if (t.renew_deadline.count() * 10 <= t.retry_period.count() * 12) {
    return bad("renew deadline (" + formatDuration(t.renew_deadline) + ") must be greater than 1.2 x retry period (" +
               formatDuration(t.retry_period) + ")");
  }
  if (t.renew_interval < Millis(0)) return bad("renew interval must not be negative");
  if (t.renew_interval >= t.renew_deadline) {
    return bad("renew interval (" + formatDuration(t.renew_interval) + ") must be less than renew deadline (" +
               formatDuration(t.renew_deadline) + ")");
  }
  if (t.stop_bound < Millis(0)) return bad("stop bound must not be negative");
  const Millis margin = driftMargin(t.lease_duration);
  if (t.renew_deadline + t.stop_bound + margin > t.lease_duration ||
      stopBudget(t.lease_duration, t.renew_deadline) <= Millis(0)) {
    return bad("renew deadline (" + formatDuration(t.renew_deadline) + ") + stop bound (" +
               formatDuration(t.stop_bound) + ") + drift margin (" + formatDuration(margin) +
               ", 10% of the lease) must not exceed lease duration (" + formatDuration(t.lease_duration) + ")");
  }
  return {};
}

util::Status validateTimings(Millis lease_duration, Millis renew_deadline, Millis retry_period) {
  return validateTimings(Timings{lease_duration, renew_deadline, retry_period, Millis(0), Millis(0)});
}

}  // namespace singleton::election
