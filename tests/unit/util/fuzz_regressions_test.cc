// Inputs the fuzzers (tests/fuzz) found, kept as tests so the bugs stay fixed.
#include <gtest/gtest.h>

#include "util/duration.h"
#include "util/error.h"
#include "util/flags.h"
#include "util/time_format.h"

namespace singleton::util {
namespace {

// fuzz_lease, fuzz_watch_stream, fuzz_duration_time: a renewTime in year 9999 (valid RFC 3339) overflowed the
// nanosecond time point while converting (signed overflow, undefined behaviour). Now a clean error.
TEST(FuzzRegressionTest, TimesOutsideTheRepresentableYearsAreAnError) {
  for (const char* text : {"9999-12-31T23:59:59Z", "2263-01-01T00:00:00Z", "1000-01-01T00:00:00.5+01:00"}) {
    auto t = parseTime(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.error().message.find("out of range"), std::string::npos) << t.error().message;
  }
  EXPECT_TRUE(parseTime("2261-12-31T23:59:59.999999Z").ok());
  EXPECT_TRUE(parseTime("1700-01-01T00:00:00Z").ok());
}

// fuzz_duration_time: ".5s.55s" parsed as 1049ms (binary floating point: 0.55 x 1e9 floored), so "--renew-deadline
// 0.55s" meant 549ms. Integer arithmetic now, as Go's time.ParseDuration.
TEST(FuzzRegressionTest, DecimalDurationsAreExact) {
  EXPECT_EQ(parseDuration(".5s.55s")->count(), 1050);
  EXPECT_EQ(parseDuration("0.55s")->count(), 550);
  EXPECT_EQ(parseDuration("1.001s")->count(), 1001);
  EXPECT_EQ(parseDuration("2.5h")->count(), 9'000'000);
  EXPECT_EQ(parseDuration("1.9999999ms")->count(), 1);
  EXPECT_FALSE(parseDuration("99999999999999999999999h").ok());
}

// fuzz_duration_time: a time before 1970 with a fraction finer than microseconds was written rounded up
// (".114444444" as ".114445": the fraction of a negative count was truncated toward zero), so it did not survive a
// MicroTime round trip.
TEST(FuzzRegressionTest, TimesBefore1970AreFlooredToMicroseconds) {
  const auto t = parseTime("1929-12-01T10:01:05.114444444Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(formatMicroTime(*t), "1929-12-01T10:01:05.114444Z");
  EXPECT_EQ(formatMicroTime(*parseTime("1969-12-31T23:59:59.9999999Z")), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(formatTime(*parseTime("1969-12-31T23:59:59.5Z")), "1969-12-31T23:59:59Z");
}

// fuzz_operator_flags: an unknown flag containing a newline was echoed into the error, which then spanned two lines
// (the promise is one readable line on stderr).
TEST(FuzzRegressionTest, UsageErrorsQuotingInputStayOnOneLine) {
  FlagSet flags{FlagSyntax{}};
  auto parsed = flags.parse({"-mid\n", "--x\x1b[31m"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  EXPECT_EQ(printable("a\nb\x1b"), "a\\nb\\x1b");
}

}  // namespace
}  // namespace singleton::util
