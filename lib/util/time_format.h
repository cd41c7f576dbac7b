// Kubernetes time formats: metav1.Time (RFC 3339, seconds) and metav1.MicroTime (RFC 3339, microseconds, "Z").
#pragma once

#include <string>
#include <string_view>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::util {

// "2006-01-02T15:04:05.000000Z", exactly as client-go writes MicroTime.
std::string formatMicroTime(WallTime time);
// "2006-01-02T15:04:05Z" (metav1.Time).
std::string formatTime(WallTime time);
// "2006-01-02T15:04:05.123Z", for logs and the CLI's event lines.
std::string formatMillisTime(WallTime time);
// Parses RFC 3339 with an optional fraction (up to nanoseconds) and "Z" or a numeric offset.
Result<WallTime> parseTime(std::string_view text);

}  // namespace singleton::util
