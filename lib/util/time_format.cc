#include "util/time_format.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace singleton::util {
namespace {

std::string format(WallTime time, int fraction_digits) {
  using namespace std::chrono;
  const auto since_epoch = time.time_since_epoch();
  // Floor, not truncate: a time before 1970 is a negative count, and truncating its fraction rounds it up (found by
  // the duration_time fuzzer: 1929-12-01T10:01:05.114444444Z was written as .114445).
  const auto secs = floor<seconds>(since_epoch);
  const auto micros = floor<microseconds>(since_epoch - secs).count();
  const std::time_t t = secs.count();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (fraction_digits == 6) {
    std::snprintf(buf, sizeof buf, ".%06lld", static_cast<long long>(micros));
    out += buf;
  } else if (fraction_digits == 3) {
    std::snprintf(buf, sizeof buf, ".%03lld", static_cast<long long>(micros / 1000));
    out += buf;
  }
  out += 'Z';
  return out;
}

bool readDigits(std::string_view text, std::size_t& pos, int count, int& out) {
  out = 0;
  for (int i = 0; i < count; ++i, ++pos) {
    if (pos >= text.size() || !std::isdigit(static_cast<unsigned char>(text[pos]))) return false;
    out = out * 10 + (text[pos] - '0');
  }
  return true;
}

bool expect(std::string_view text, std::size_t& pos, char c) {
  if (pos < text.size() && (text[pos] == c || std::tolower(static_cast<unsigned char>(text[pos])) == c)) {
    ++pos;
    return true;
  }
  return false;
}

}  // namespace

std::string formatMicroTime(WallTime time) { return format(time, 6); }
std::string formatTime(WallTime time) { return format(time, 0); }
std::string formatMillisTime(WallTime time) { return format(time, 3); }

namespace {
constexpr int kFirstYear = 1700;
constexpr int kLastYear = 2261;
}  // namespace

Result<WallTime> parseTime(std::string_view text) {
  auto bad = [&] {
    return makeError(ErrorCode::kInvalidArgument, "not an RFC 3339 time: \"" + std::string(text) + "\"");
  };
  std::size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!readDigits(text, pos, 4, year) || !expect(text, pos, '-') || !readDigits(text, pos, 2, month) ||
      !expect(text, pos, '-') || !readDigits(text, pos, 2, day) || !expect(text, pos, 't') ||
      !readDigits(text, pos, 2, hour) || !expect(text, pos, ':') || !readDigits(text, pos, 2, minute) ||
      !expect(text, pos, ':') || !readDigits(text, pos, 2, second)) {
    return bad();
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return bad();
  // A time point in nanoseconds spans the years 1678 to 2262; outside a safe part of that, converting overflows.
  if (year < kFirstYear || year > kLastYear) {
    return makeError(ErrorCode::kInvalidArgument, "time out of range (years " + std::to_string(kFirstYear) + " to " +
                                                      std::to_string(kLastYear) + "): \"" + std::string(text) + "\"");
  }
  long long nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      if (digits < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (digits == 0) return bad();
    for (; digits < 9; ++digits) nanos *= 10;
  }
  int offset_minutes = 0;
  if (expect(text, pos, 'z')) {
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0, om = 0;
    if (!readDigits(text, pos, 2, oh) || !expect(text, pos, ':') || !readDigits(text, pos, 2, om)) return bad();
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();

  using namespace std::chrono;
  const year_month_day ymd{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                           std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return bad();
  const auto date = sys_days(ymd);
  auto tp = time_point_cast<system_clock::duration>(date) + hours(hour) + minutes(minute) + seconds(second) -
            minutes(offset_minutes);
  tp += duration_cast<system_clock::duration>(nanoseconds(nanos));
  return WallTime(tp);
}

}  // namespace singleton::util
