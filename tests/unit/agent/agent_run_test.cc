// Agent::run() with its threads (reflector, confirmer, main loop) on the fake clock and the fake apiserver: the
// wiring of the steps agent_test.cc checks one by one, the signal path, and the request budget.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "agent/agent_fixture.h"

namespace singleton::agent::testing {
namespace {

class AgentRunTest : public AgentFixture {
 protected:
  ~AgentRunTest() override {
    runner_.request_stop();
    if (runner_.joinable()) runner_.join();
  }
  void start() {
    runner_ = std::jthread([this](std::stop_token stop) { status_ = agent_->run(stop); });
  }
  template <typename F>
  static bool eventually(F done) {
    for (int i = 0; i < 5000; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return done();
  }
  // Advances the fake clock in steps, each time waiting until `sleepers` threads sleep on it again.
  void advance(util::Millis total, util::Millis step, std::size_t sleepers) {
    for (util::Millis done{0}; done < total; done += step) {
      clock_.advance(step);
      ASSERT_TRUE(eventually([&] { return clock_.sleepers() >= sleepers; })) << "at " << done.count() << " ms";
    }
  }

  std::jthread runner_;
  std::atomic<int> status_{-1};
};

// SIGTERM while leading: COMMAND stops before any write (the confirmer may be reading meanwhile); the agent then
// acknowledges the move that follows and exits 0.
TEST_F(AgentRunTest, SignalStopsCommandFirstThenAcksAndExits0) {
  put(makeLease(kPod, kUid, 1));
  start();
  ASSERT_TRUE(eventually([&] { return agent_->role()["role"] == "leader"; }));  // its start fully logged
  const std::size_t mark = log_.size();
  agent_->signal();
  ASSERT_TRUE(eventually([&] { return !command_->running(); }));
  putAndWatch(makeLease("w-1", "uid-1", 2, kPod, kUid));
  ASSERT_TRUE(eventually([&] { return status_ != -1; }));
  EXPECT_EQ(status_, 0);
  std::vector<std::string> after;  // what happened after the signal, reads left out
  for (const auto& e : log_.matching("", mark)) {
    if (e.rfind("GET", 0) != 0) after.push_back(e);
  }
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.front(), "command stop");
  EXPECT_LT(log_.indexOf("command stop", mark), log_.indexOf("PATCH", mark));
  EXPECT_EQ(patches().size(), 1u);
  EXPECT_EQ(command_->starts(), 1);
}

// A second signal leaves at once, without waiting for a move to acknowledge.
TEST_F(AgentRunTest, SecondSignalLeavesAtOnce) {
  put(makeLease(kPod, kUid, 1));
  start();
  ASSERT_TRUE(eventually([&] { return command_->running(); }));
  agent_->signal();
  agent_->signal();
  ASSERT_TRUE(eventually([&] { return status_ != -1; }));
  EXPECT_EQ(status_, 0);
  EXPECT_FALSE(command_->running());
  EXPECT_TRUE(patches().empty());
}

// The cost: a leader sends one confirmation GET per renew-interval (12 a minute at the default 5 s); a standby sends
// nothing after its list (its watch is one long request).
TEST_F(AgentRunTest, LeaderSendsOneGetPerRenewIntervalStandbySendsNone) {
  put(makeLease(kPod, kUid, 1));
  start();
  ASSERT_TRUE(eventually([&] { return command_->running(); }));
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() >= 2; }));
  const std::size_t gets_before = log_.matching("GET lease").size();
  advance(60s, 250ms, 2);
  const std::size_t leader_gets = log_.matching("GET lease").size() - gets_before;
  std::cout << "leader: " << leader_gets << " confirmation GETs in 60 s of fake time\n";
  EXPECT_GE(leader_gets, 11u);
  EXPECT_LE(leader_gets, 13u);
  EXPECT_TRUE(command_->running());

  // Moved away (and acked): a standby now.
  putAndWatch(makeLease("w-1", "uid-1", 2, kPod, kUid));
  ASSERT_TRUE(eventually([&] { return !command_->running() && patches().size() == 1; }));
  watch(stored());  // the watch brings the acknowledged version
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() >= 1; }));
  const std::size_t requests_before = log_.size();
  advance(60s, 250ms, 1);
  std::size_t requests = 0;
  for (const auto& e : log_.matching("", requests_before))
    requests += e.rfind("GET", 0) == 0 || e.rfind("PATCH", 0) == 0;
  EXPECT_EQ(requests, 0u) << "a standby sent requests";
  EXPECT_EQ(log_.matching("GET list").size(), 1u);
}

}  // namespace
}  // namespace singleton::agent::testing
