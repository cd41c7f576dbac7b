#include "controller/reconcile_loop.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace singleton::controller {
namespace {

using namespace std::chrono_literals;
using Action = ReconcileResult::Action;

ReconcileResult resultOf(Action action, util::Millis after = util::Millis::zero()) {
  ReconcileResult result;
  result.action = action;
  result.after = after;
  return result;
}

// Answers every key with the result it is given; throws when told to.
class ScriptedReconciler final : public Reconciler {
 public:
  ReconcileResult reconcile(const std::string& key) override {
    last_key = key;
    if (throws) throw std::runtime_error("bug");
    return result;
  }
  ReconcileResult result;
  bool throws = false;
  std::string last_key;
};

class ReconcileLoopTest : public ::testing::Test {
 protected:
  // One key through the loop as a worker takes it: get(), process(), done().
  void once(const std::string& key) {
    queue_.add(key);
    const auto got = queue_.get();
    ASSERT_EQ(got, key);
    loop_.process(*got, reconciler_);
    queue_.done(*got);
  }
  double count(const std::string& result) { return registry_.counter("r_total", "", {{"result", result}}).value(); }

  util::FakeClock clock_;
  Registry registry_;
  WorkQueue queue_{clock_};
  ReconcileLoop loop_{
      queue_, registry_,
      ReconcileLoopOptions{.workers = 1, .reconciles_metric = "r_total", .duration_metric = "r_seconds"}, clock_};
  ScriptedReconciler reconciler_;
};

TEST_F(ReconcileLoopTest, RegistersItsMetricsAtZero) {
  const std::string text = registry_.render();
  EXPECT_NE(text.find("r_total{result=\"error\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("r_seconds_count 0"), std::string::npos) << text;
}

TEST_F(ReconcileLoopTest, SuccessForgetsTheBackoff) {
  reconciler_.result = resultOf(Action::kRetry);
  once("ns/a");
  EXPECT_EQ(queue_.numRequeues("ns/a"), 1);
  reconciler_.result = resultOf(Action::kForget);
  once("ns/a");
  EXPECT_EQ(reconciler_.last_key, "ns/a");
  EXPECT_EQ(queue_.numRequeues("ns/a"), 0);
  EXPECT_EQ(count("success"), 1);
  EXPECT_EQ(count("error"), 1);
}

TEST_F(ReconcileLoopTest, ErrorsAndExceptionsRetryWithBackoff) {
  reconciler_.result = resultOf(Action::kRetry);
  once("ns/a");
  reconciler_.throws = true;
  once("ns/b");
  EXPECT_EQ(queue_.numRequeues("ns/a"), 1);
  EXPECT_EQ(queue_.numRequeues("ns/b"), 1);
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_EQ(queue_.waitingLen(), 2u);
  EXPECT_EQ(count("error"), 2);
}

TEST_F(ReconcileLoopTest, AnErrorWithRetryAfterWaitsThatLongAndStillCountsAsAFailure) {
  reconciler_.result = resultOf(Action::kRetry, 1'000ms);  // e.g. a 429 with Retry-After: 1
  once("ns/a");
  EXPECT_EQ(queue_.numRequeues("ns/a"), 1);
  clock_.advance(999ms);
  EXPECT_EQ(queue_.len(), 0u) << "not before the server's Retry-After (the backoff alone says 5 ms)";
  clock_.advance(1ms);
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(count("error"), 1);
}

TEST_F(ReconcileLoopTest, RequeueComesBackOnTheKeysBackoffAndRequeueAfterLater) {
  reconciler_.result = resultOf(Action::kRequeue);
  once("ns/a");
  EXPECT_EQ(queue_.len(), 0u);
  clock_.advance(5ms);  // the first conflict: back after the base delay
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(queue_.get(), "ns/a");
  queue_.done("ns/a");
  once("ns/a");  // a second conflict in a row: twice as long
  clock_.advance(9ms);
  EXPECT_EQ(queue_.len(), 0u) << "a conflict that persists must back off, not spin";
  clock_.advance(1ms);
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(queue_.get(), "ns/a");
  queue_.done("ns/a");

  reconciler_.result = resultOf(Action::kRequeueAfter, 5'000ms);
  once("ns/b");
  EXPECT_EQ(queue_.len(), 0u);
  EXPECT_EQ(queue_.waitingLen(), 1u);
  EXPECT_EQ(queue_.numRequeues("ns/b"), 0);
  clock_.advance(5'000ms);
  EXPECT_EQ(queue_.len(), 1u);
  EXPECT_EQ(count("requeue"), 3);
}

}  // namespace
}  // namespace singleton::controller
