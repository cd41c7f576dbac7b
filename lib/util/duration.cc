#include "util/duration.h"

#include <cctype>

namespace singleton::util {
namespace {
__extension__ using Uint128 = unsigned __int128;  // GCC and clang; __extension__ keeps -Wpedantic quiet
}  // namespace

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kInvalidArgument, "invalid duration \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return std::chrono::milliseconds(0);
  if (text[0] == '-') return bad("must not be negative");
  if (text[0] == '+') text.remove_prefix(1);

  // Exact integer arithmetic, as Go's time.ParseDuration: "0.55s" is 550ms, not 549.999...ms floored.
  constexpr Uint128 kLimitNs = 1'000'000'000'000'000'000ULL;  // ~31 years
  Uint128 total_ns = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t start = pos;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
    if (start == pos) return bad("expected a number");
    const std::string_view number = text.substr(start, pos - start);
    if (number == "." || number.find('.') != number.rfind('.')) return bad("malformed number");
    start = pos;
    while (pos < text.size() && !std::isdigit(static_cast<unsigned char>(text[pos])) && text[pos] != '.') ++pos;
    const std::string_view unit = text.substr(start, pos - start);
    unsigned long long scale = 0;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
      scale = 1'000;
    else if (unit == "ms")
      scale = 1'000'000;
    else if (unit == "s")
      scale = 1'000'000'000;
    else if (unit == "m")
      scale = 60'000'000'000;
    else if (unit == "h")
      scale = 3'600'000'000'000;
    else if (unit.empty())
      return bad("missing unit (use ms, s, m or h)");
    else
      return bad("unknown unit \"" + std::string(unit) + "\"");
    const auto dot = number.find('.');
    const std::string_view whole = number.substr(0, dot);
    const std::string_view fraction = dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
    Uint128 whole_value = 0;
    for (const char c : whole) {
      whole_value = whole_value * 10 + static_cast<unsigned>(c - '0');
      if (whole_value > kLimitNs) return bad("too large");
    }
    // Fraction digits beyond nanoseconds cannot matter: at most 19 are read (10^19 fits the 128-bit products).
    Uint128 fraction_value = 0, fraction_scale = 1;
    for (std::size_t i = 0; i < fraction.size() && i < 19; ++i) {
      fraction_value = fraction_value * 10 + static_cast<unsigned>(fraction[i] - '0');
      fraction_scale *= 10;
    }
    total_ns += whole_value * scale + fraction_value * scale / fraction_scale;
    if (total_ns > kLimitNs) return bad("too large");
  }
  return std::chrono::milliseconds(static_cast<long long>(total_ns / 1'000'000));
}

std::string formatDuration(std::chrono::milliseconds duration) {
  long long ms = duration.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  if (ms < 1000) return out + std::to_string(ms) + "ms";
  const long long hours = ms / 3'600'000;
  const long long minutes = (ms / 60'000) % 60;
  const long long seconds = (ms / 1000) % 60;
  const long long millis = ms % 1000;
  if (hours) out += std::to_string(hours) + "h";
  if (hours || minutes) out += std::to_string(minutes) + "m";
  out += std::to_string(seconds);
  if (millis) {
    std::string frac = std::to_string(millis + 1000).substr(1);
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    out += "." + frac;
  }
  return out + "s";
}

}  // namespace singleton::util
