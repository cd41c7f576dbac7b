// The elector's deadlines and the one inequality that keeps two leaders from acting at once.
//
// A leader that cannot renew gives up at renew_deadline after the start of its last successful request, then its work
// takes up to stop_bound to stop. A rival can acquire no earlier than lease_duration after it saw that same write,
// measured on its own clock. Clocks run at slightly different rates, so a margin of 10 % of the lease is kept:
//
//     renew_deadline + stop_bound + drift_margin <= lease_duration        (drift_margin = lease_duration / 10)
//
// docs/design.md ("The elector") has the argument in full.
#pragma once

#include "util/clock.h"
#include "util/result.h"

namespace singleton::election {

struct Timings {
  util::Millis lease_duration{15'000};
  util::Millis renew_deadline{10'000};
  util::Millis retry_period{2'000};
  util::Millis renew_interval{0};  // 0: defaultRenewInterval()
  util::Millis stop_bound{0};      // how long the leader's work may take to stop once told to
};

// What clock-rate drift may cost between two candidates over one lease: 10 % of it.
util::Millis driftMargin(util::Millis lease_duration);
// How long the leader's work may take to stop: lease_duration - renew_deadline - driftMargin (may be <= 0).
util::Millis stopBudget(util::Millis lease_duration, util::Millis renew_deadline);
// A supervised command's stop is SIGTERM, a grace period, SIGKILL, reaped. The reap gets a share of the stop budget of
// its own: a quarter, at most 500 ms (a killed process is reaped in milliseconds unless the kernel is stuck on it).
util::Millis killWait(util::Millis lease_duration, util::Millis renew_deadline);
// The longest grace period that keeps the whole stop within the budget: stopBudget - killWait, at least 0.
util::Millis defaultGracePeriod(util::Millis lease_duration, util::Millis renew_deadline);
// A third of the lease, but at most renew_deadline - retry_period so at least one retry fits before the deadline.
util::Millis defaultRenewInterval(util::Millis lease_duration, util::Millis renew_deadline, util::Millis retry_period);
// The renew interval in force: `t.renew_interval`, or the default when it is 0.
util::Millis effectiveRenewInterval(const Timings& t);

// kInvalidArgument naming the first relation that fails (one line):
// lease >= 1s; lease > renew_deadline > 1.2 x retry > 0; 0 < renew_interval < renew_deadline;
// renew_deadline + stop_bound + driftMargin <= lease.
util::Status validateTimings(const Timings& timings);
util::Status validateTimings(util::Millis lease_duration, util::Millis renew_deadline, util::Millis retry_period);

}  // namespace singleton::election
