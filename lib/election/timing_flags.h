// The elector's three timings as command-line flags, with the same names and help in every binary that campaigns
// (singleton-elect, singleton-operator). LeaderElector::create checks how they relate.
#pragma once

#include <string>
#include <utility>

#include "util/clock.h"
#include "util/duration.h"
#include "util/flags.h"

namespace singleton::election {

inline void addTimingFlags(util::FlagSet& flags, util::Millis& lease_duration, util::Millis& renew_deadline,
                           util::Millis& retry_period) {
  flags.addDuration("lease-duration", lease_duration, "D",
                    "how long followers wait after the leader's last renewal (default {default})");
  flags.addDuration("renew-deadline", renew_deadline, "D",
                    "how long the leader retries renewing before it steps down (default {default})");
  flags.addDuration("retry-period", retry_period, "D",
                    "interval between a follower's polls and the leader's retries after a failed renewal (default "
                    "{default})\n(need lease-duration > renew-deadline > 1.2 x retry-period, and renew-deadline + "
                    "10% of lease-duration < lease-duration)");
}

// --renew-interval: 0 (the default) means election::defaultRenewInterval(), a third of the lease.
inline void addRenewIntervalFlag(util::FlagSet& flags, util::Millis& renew_interval) {
  flags.addDuration("renew-interval", renew_interval, "D",
                    "interval between the leader's renewals while they succeed; default: a third of lease-duration "
                    "(at most renew-deadline - retry-period); must be less than renew-deadline");
}

// --grace-period: how long a supervised command may take after SIGTERM. `set` records that it was given (the default
// depends on the Lease's duration, known later for the agent).
inline void addGracePeriodFlag(util::FlagSet& flags, util::Millis& grace_period, bool& set, const std::string& help) {
  flags.addFunc(
      "grace-period",
      [&grace_period, &set](const std::string& value) -> util::Status {
        auto d = util::parseDuration(value);
        if (!d.ok()) return std::move(d).takeError();
        grace_period = *d;
        set = true;
        return {};
      },
      "D", help);
}

}  // namespace singleton::election
