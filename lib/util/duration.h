// Go-style durations ("500ms", "4s", "1m30s", "1.5h"), as users of Kubernetes tools write them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "util/result.h"

namespace singleton::util {

// Units: ns, us, µs, ms, s, m, h. Negative durations and bare numbers (other than "0") are rejected.
// Precision is one millisecond: smaller parts are rounded down.
Result<std::chrono::milliseconds> parseDuration(std::string_view text);
// The shortest Go-style text for a duration: "15s", "1m30s", "500ms", "0s".
std::string formatDuration(std::chrono::milliseconds duration);

}  // namespace singleton::util
