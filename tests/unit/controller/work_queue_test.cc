#include "controller/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "controller/metrics.h"
#include "support/fake_lock.h"

namespace singleton::controller {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

class WorkQueueTest : public ::testing::Test {
 protected:
  util::FakeClock clock_;
  Registry registry_;
  Gauge& depth_ = registry_.gauge("workqueue_depth", "depth");
  WorkQueue queue_{clock_, [this](std::size_t depth) { depth_.set(static_cast<double>(depth)); }};
};

TEST_F(WorkQueueTest, HandsOutKeysInOrderAndDeduplicates) {
  queue_.add("ns/a");
  queue_.add("ns/b");
  queue_.add("ns/a");
  EXPECT_EQ(queue_.len(), 2u);
  EXPECT_EQ(depth_.value(), 2);
  EXPECT_EQ(queue_.get(), "ns/a");
  EXPECT_EQ(queue_.get(), "ns/b");
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_EQ(depth_.value(), 0);
}

TEST_F(WorkQueueTest, KeyAddedWhileProcessingIsQueuedAgainOnDone) {
  queue_.add("ns/a");
  ASSERT_EQ(queue_.get(), "ns/a");
  queue_.add("ns/a");
  queue_.add("ns/a");
  // Not handed out while a worker holds it: one worker per key.
  EXPECT_EQ(queue_.len(), 0u);
  queue_.done("ns/a");
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(queue_.get(), "ns/a");
  queue_.done("ns/a");
  EXPECT_EQ(queue_.len(), 0u);
}

TEST_F(WorkQueueTest, AddAfterWaitsForTheFakeClock) {
  queue_.addAfter("ns/a", 100ms);
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_EQ(queue_.waitingLen(), 1u);
  clock_.advance(99ms);
  EXPECT_EQ(queue_.len(), 0u);
  clock_.advance(1ms);
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(queue_.get(), "ns/a");
}

TEST_F(WorkQueueTest, AddAfterKeepsTheEarlierTimeAndAddWins) {
  queue_.addAfter("ns/a", 100ms);
  queue_.addAfter("ns/a", 50ms);
  queue_.addAfter("ns/a", 200ms);
  EXPECT_EQ(queue_.waitingLen(), 1u);
  clock_.advance(50ms);
  EXPECT_EQ(queue_.len(), 1u);

  queue_.addAfter("ns/b", 1s);
  queue_.add("ns/b");  // an immediate add makes the delayed one redundant
  EXPECT_EQ(queue_.waitingLen(), 0u);
  EXPECT_EQ(queue_.len(), 2u);
}

TEST_F(WorkQueueTest, BlockedGetWakesWhenTheDelayPasses) {
  std::atomic<bool> got{false};
  std::jthread worker([&] {
    auto key = queue_.get();
    got = key.has_value() && *key == "ns/a";
  });
  std::this_thread::sleep_for(20ms);  // the worker is asleep, with nothing delayed (a long idle deadline)
  queue_.addAfter("ns/a", 1s);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(got.load());
  clock_.advance(1s);
  EXPECT_TRUE(eventually([&] { return got.load(); }));
}

TEST_F(WorkQueueTest, ResetDropsPendingDelayedAndBackoffButStaysUsable) {
  queue_.add("ns/a");
  queue_.addAfter("ns/b", 100ms);
  queue_.addRateLimited("ns/c");
  queue_.addRateLimited("ns/c");
  ASSERT_EQ(queue_.get(), "ns/a");
  queue_.add("ns/a");  // re-added while in processing
  queue_.reset();
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_EQ(queue_.waitingLen(), 0u);
  EXPECT_EQ(depth_.value(), 0);
  EXPECT_EQ(queue_.numRequeues("ns/c"), 0) << "a new term starts without the old backoff";
  queue_.done("ns/a");
  EXPECT_EQ(queue_.len(), 0u) << "the old term's re-add is gone too";
  clock_.advance(1s);
  EXPECT_EQ(queue_.len(), 0u);
  queue_.add("ns/e");
  EXPECT_EQ(queue_.get(), "ns/e");
}

TEST_F(WorkQueueTest, RateLimitedBackoffDoublesFromFiveMillisToThirtySecondsAndForgetResets) {
  const std::vector<util::Millis> expected = {5ms, 10ms, 20ms, 40ms, 80ms};
  for (const util::Millis delay : expected) {
    queue_.addRateLimited("ns/a");
    clock_.advance(delay - 1ms);
    EXPECT_EQ(queue_.len(), 0u) << delay.count();
    clock_.advance(1ms);
    ASSERT_EQ(queue_.len(), 1u) << delay.count();
    ASSERT_EQ(queue_.get(), "ns/a");
    queue_.done("ns/a");
  }
  EXPECT_EQ(queue_.numRequeues("ns/a"), 5);
  for (int i = 0; i < 30; ++i) {
    queue_.addRateLimited("ns/a");
    clock_.advance(30s);
    ASSERT_EQ(queue_.get(), "ns/a");
    queue_.done("ns/a");
  }
  // Capped at 30 s.
  queue_.addRateLimited("ns/a");
  clock_.advance(30s - 1ms);
  EXPECT_EQ(queue_.len(), 0u);
  clock_.advance(1ms);
  EXPECT_EQ(queue_.len(), 1u);
  ASSERT_EQ(queue_.get(), "ns/a");
  queue_.done("ns/a");

  queue_.forget("ns/a");
  EXPECT_EQ(queue_.numRequeues("ns/a"), 0);
  queue_.addRateLimited("ns/a");
  clock_.advance(5ms);
  EXPECT_EQ(queue_.len(), 1u);
}

TEST_F(WorkQueueTest, GetReturnsNulloptOnStopAndShutdown) {
  std::stop_source stop;
  std::atomic<bool> returned{false};
  std::jthread worker([&] {
    EXPECT_FALSE(queue_.get(stop.get_token()).has_value());
    returned = true;
  });
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(returned.load());
  stop.request_stop();
  EXPECT_TRUE(eventually([&] { return returned.load(); }));

  std::atomic<bool> shut{false};
  std::jthread other([&] {
    EXPECT_FALSE(queue_.get().has_value());
    shut = true;
  });
  queue_.shutDown();
  EXPECT_TRUE(eventually([&] { return shut.load(); }));
  queue_.add("ns/a");
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_TRUE(queue_.shuttingDown());
}

TEST_F(WorkQueueTest, NeverHandsOneKeyToTwoWorkersAtOnce) {
  constexpr int kKeys = 5;
  constexpr int kAddsPerKey = 200;
  std::mutex mutex;
  std::set<std::string> in_flight;
  std::atomic<int> overlaps{0};
  std::atomic<int> processed{0};
  std::stop_source stop;
  std::vector<std::jthread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (auto key = queue_.get(stop.get_token())) {
        {
          std::lock_guard lock(mutex);
          if (!in_flight.insert(*key).second) ++overlaps;
        }
        std::this_thread::yield();
        {
          std::lock_guard lock(mutex);
          in_flight.erase(*key);
        }
        ++processed;
        queue_.done(*key);
      }
    });
  }
  for (int i = 0; i < kAddsPerKey; ++i) {
    for (int k = 0; k < kKeys; ++k) queue_.add("ns/" + std::to_string(k));
  }
  EXPECT_TRUE(eventually([&] { return queue_.len() == 0; }));
  stop.request_stop();
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GE(processed.load(), kKeys);
  EXPECT_LE(processed.load(), kKeys * kAddsPerKey);
}

}  // namespace
}  // namespace singleton::controller
