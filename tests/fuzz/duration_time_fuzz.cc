// Go durations and Kubernetes MicroTime: parse anything cleanly; what parses formats back to text that parses to the
// same value.
#include <chrono>
#include <cstdint>
#include <string_view>

#include "util/duration.h"
#include "util/time_format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = singleton::util::parseDuration(text); d.ok()) {
    auto again = singleton::util::parseDuration(singleton::util::formatDuration(*d));
    if (!again.ok() || *again != *d) __builtin_trap();
  }
  if (auto t = singleton::util::parseTime(text); t.ok()) {
    auto again = singleton::util::parseTime(singleton::util::formatMicroTime(*t));
    if (!again.ok() || *again != std::chrono::floor<std::chrono::microseconds>(*t)) __builtin_trap();
  }
  return 0;
}
