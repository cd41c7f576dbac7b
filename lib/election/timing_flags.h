// The elector's three timings as command-line flags, with the same names and help in every binary that campaigns
// (singleton-elect, singleton-operator). LeaderElector::create checks how they relate.
#pragma once

#include "util/clock.h"
#include "util/flags.h"

namespace singleton::election {

inline void addTimingFlags(util::FlagSet& flags, util::Millis& lease_duration, util::Millis& renew_deadline,
                           util::Millis& retry_period) {
  flags.addDuration("lease-duration", lease_duration, "D",
                    "how long followers wait after the leader's last renewal (default {default})");
  flags.addDuration("renew-deadline", renew_deadline, "D",
                    "how long the leader retries renewing before it steps down (default {default})");
  flags.addDuration("retry-period", retry_period, "D",
                    "interval between renewals (default {default})\n"
                    "(need lease-duration > renew-deadline > 1.2 x retry-period)");
}

}  // namespace singleton::election
