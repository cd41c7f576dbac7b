#include "util/duration.h"

#include <cctype>
#include <cmath>

namespace singleton::util {

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kInvalidArgument, "invalid duration \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return std::chrono::milliseconds(0);
  if (text[0] == '-') return bad("must not be negative");
  if (text[0] == '+') text.remove_prefix(1);

  long double total_ns = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t start = pos;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
    if (start == pos) return bad("expected a number");
    const std::string number(text.substr(start, pos - start));
    if (number == "." || number.find('.') != number.rfind('.')) return bad("malformed number");
    const long double value = std::stold(number);
    start = pos;
    while (pos < text.size() && !std::isdigit(static_cast<unsigned char>(text[pos])) && text[pos] != '.') ++pos;
    const std::string_view unit = text.substr(start, pos - start);
    long double scale = 0;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1e6;
    else if (unit == "s")
      scale = 1e9;
    else if (unit == "m")
      scale = 60e9;
    else if (unit == "h")
      scale = 3600e9;
    else if (unit.empty())
      return bad("missing unit (use ms, s, m or h)");
    else
      return bad("unknown unit \"" + std::string(unit) + "\"");
    total_ns += value * scale;
  }
  if (total_ns > 1e18L) return bad("too large");
  return std::chrono::milliseconds(static_cast<long long>(std::floor(total_ns / 1e6L)));
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
