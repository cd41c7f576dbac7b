#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "util/backoff.h"
#include "util/duration.h"
#include "util/time_format.h"

namespace singleton::util {
namespace {

using namespace std::chrono_literals;

// Moves `clock` by `step` whenever someone sleeps on it, until the owner is done (then joins).
class Advancer {
 public:
  Advancer(FakeClock& clock, Millis step)
      : thread_([&clock, step](std::stop_token stop) {
          while (!stop.stop_requested()) {
            if (clock.sleepers() > 0) clock.advance(step);
            std::this_thread::sleep_for(1ms);
          }
        }) {}

 private:
  std::jthread thread_;
};

TEST(DurationTest, ParsesGoStyle) {
  struct Case {
    const char* text;
    long long ms;
  } cases[] = {{"0", 0},      {"0s", 0},        {"500ms", 500}, {"4s", 4000},
               {"1m", 60000}, {"1m30s", 90000}, {"1.5s", 1500}, {"2h", 7'200'000},
               {"1500us", 1}, {"100ns", 0},     {"+3s", 3000},  {"1h2m3s4ms", 3'723'004}};
  for (const auto& c : cases) {
    auto d = parseDuration(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.error().message;
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
}

TEST(DurationTest, RejectsMalformed) {
  for (const char* text : {"", "5", "-1s", "s", "1x", "1.2.3s", "ms", "1 s", "."}) {
    auto d = parseDuration(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(d.error().message.find("invalid duration"), std::string::npos);
  }
}

TEST(DurationTest, Formats) {
  EXPECT_EQ(formatDuration(0ms), "0s");
  EXPECT_EQ(formatDuration(500ms), "500ms");
  EXPECT_EQ(formatDuration(15s), "15s");
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(1500ms), "1.5s");
  EXPECT_EQ(formatDuration(3'723'004ms), "1h2m3.004s");
}

TEST(TimeFormatTest, MicroTimeRoundTrip) {
  auto t = parseTime("2024-02-29T23:59:58.123456Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(formatMicroTime(*t), "2024-02-29T23:59:58.123456Z");
  EXPECT_EQ(formatTime(*t), "2024-02-29T23:59:58Z");
  EXPECT_EQ(formatMillisTime(*t), "2024-02-29T23:59:58.123Z");
}

TEST(TimeFormatTest, ParsesVariants) {
  auto base = parseTime("2020-01-01T00:00:00Z");
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->time_since_epoch(), std::chrono::system_clock::duration(1'577'836'800s));
  auto offset = parseTime("2020-01-01T01:30:00+01:30");
  ASSERT_TRUE(offset.ok());
  EXPECT_EQ(*offset, *base);
  auto nanos = parseTime("2020-01-01T00:00:00.000001999Z");
  ASSERT_TRUE(nanos.ok());
  EXPECT_EQ(formatMicroTime(*nanos), "2020-01-01T00:00:00.000001Z");
  auto lower = parseTime("2020-01-01t00:00:00z");
  EXPECT_TRUE(lower.ok());
}

TEST(TimeFormatTest, RejectsMalformed) {
  for (const char* text : {"", "2020-01-01", "2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "2020-01-01T00:00:00",
                           "2020-01-01T00:00:00.Z", "2020-01-01T00:00:00Zjunk", "garbage"}) {
    EXPECT_FALSE(parseTime(text).ok()) << text;
  }
}

TEST(BackoffTest, GrowsToTheCapAndResets) {
  Backoff b(BackoffPolicy{100ms, 1s, 2.0, 0.0});
  EXPECT_EQ(b.next(), 100ms);
  EXPECT_EQ(b.next(), 200ms);
  EXPECT_EQ(b.next(), 400ms);
  EXPECT_EQ(b.next(), 800ms);
  EXPECT_EQ(b.next(), 1s);
  EXPECT_EQ(b.next(), 1s);
  b.reset();
  EXPECT_EQ(b.next(), 100ms);
}

TEST(BackoffTest, JitterStaysWithinBounds) {
  Backoff b(BackoffPolicy{1000ms, 1000ms, 2.0, 0.2}, 42);
  for (int i = 0; i < 1000; ++i) {
    auto d = b.next();
    EXPECT_GE(d, 800ms);
    EXPECT_LE(d, 1200ms);
  }
}

TEST(RetryTest, RetriesRetryableErrorsAndHonoursRetryAfter) {
  FakeClock clock;
  int calls = 0;
  std::function<Result<int>()> attempt = [&]() -> Result<int> {
    if (++calls < 3) {
      Error e = makeError(ErrorCode::kTooManyRequests, "slow down");
      e.retry_after = 5s;
      return e;
    }
    return 7;
  };
  const MonoTime start = clock.now();
  Result<int> result = 0;
  {
    Advancer advancer(clock, 1s);
    result = retry(attempt, RetryPolicy{BackoffPolicy{10ms, 100ms, 2.0, 0.0}, 5}, clock);
  }
  EXPECT_EQ(clock.now() - start, 10s) << "two waits of Retry-After, not the 10 ms backoff";
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result, 7);
  EXPECT_EQ(calls, 3);
}

TEST(RetryTest, StopsOnNonRetryableAndAfterMaxAttempts) {
  FakeClock clock;
  int calls = 0;
  std::function<Result<int>()> conflict = [&]() -> Result<int> {
    ++calls;
    return makeError(ErrorCode::kConflict, "no");
  };
  EXPECT_FALSE(retry(conflict, RetryPolicy{}, clock).ok());
  EXPECT_EQ(calls, 1);

  calls = 0;
  std::function<Result<int>()> network = [&]() -> Result<int> {
    ++calls;
    return makeError(ErrorCode::kNetwork, "down");
  };
  std::stop_source stop;
  Result<int> r = 0;
  {
    Advancer advancer(clock, 10ms);
    r = retry(network, RetryPolicy{BackoffPolicy{10ms, 10ms, 1.0, 0.0}, 3}, clock, stop.get_token());
  }
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(calls, 3);
}

TEST(FakeClockTest, CountsSleepersWithDeadlinesAhead) {
  FakeClock clock;
  EXPECT_EQ(clock.sleepers(), 0u);
  const MonoTime deadline = clock.now() + 2s;
  std::atomic<bool> woke{false};
  std::jthread sleeper([&](std::stop_token stop) { woke = clock.sleepUntil(deadline, stop); });
  while (clock.sleepers() != 1) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(clock.sleepingUntil(deadline));
  EXPECT_FALSE(clock.sleepingUntil(deadline + 1ms));
  clock.advance(1s);
  EXPECT_EQ(clock.sleepers(), 1u);
  clock.advance(1s);
  EXPECT_EQ(clock.sleepers(), 0u) << "a deadline reached is no longer ahead";
  sleeper.join();
  EXPECT_TRUE(woke.load());
  EXPECT_FALSE(clock.sleepingUntil(deadline));
}

TEST(ErrorTest, RetryableClassesAndDescription) {
  EXPECT_TRUE(makeError(ErrorCode::kNetwork, "").retryable());
  EXPECT_TRUE(makeError(ErrorCode::kServerError, "").retryable());
  EXPECT_TRUE(makeError(ErrorCode::kTooManyRequests, "").retryable());
  EXPECT_FALSE(makeError(ErrorCode::kConflict, "").retryable());
  EXPECT_FALSE(makeError(ErrorCode::kForbidden, "").retryable());
  Error e = makeError(ErrorCode::kNotFound, "leases \"x\" not found");
  e.http_status = 404;
  EXPECT_EQ(e.describe(), "NotFound (HTTP 404): leases \"x\" not found");
}

}  // namespace
}  // namespace singleton::util
