#include "election/leader_elector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/fake_lock.h"

namespace singleton::election {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::FakeLock;
using testing::FakeRecordStore;

struct Candidate {
  std::shared_ptr<FakeLock> lock;
  std::unique_ptr<LeaderElector> elector;
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<long long> token{-1};
  std::atomic<int> outcome{-1};
  std::vector<std::pair<std::string, long long>> new_leaders;
  std::mutex mutex;
  std::jthread thread;

  void start() {
    thread = std::jthread([this](std::stop_token stop) { outcome = static_cast<int>(elector->run(stop)); });
  }
  void stop() {
    thread.request_stop();
    thread.join();
  }
};

class ElectorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Candidate> candidate(const std::string& id, bool release_on_cancel = true) {
    auto c = std::make_unique<Candidate>();
    c->lock = std::make_shared<FakeLock>(store_, id);
    ElectorConfig config;
    config.lock = c->lock;
    config.lease_duration = 15s;
    config.renew_deadline = 10s;
    config.retry_period = 2s;
    config.release_on_cancel = release_on_cancel;
    config.clock = &clock_;
    Candidate* raw = c.get();
    config.callbacks.on_started_leading = [raw](fencing::FencingToken token, std::stop_token) {
      raw->token = token.value();
      ++raw->started;
    };
    config.callbacks.on_stopped_leading = [raw] { ++raw->stopped; };
    config.callbacks.on_new_leader = [raw](const std::string& holder, fencing::FencingToken token) {
      std::lock_guard g(raw->mutex);
      raw->new_leaders.emplace_back(holder, token.value());
    };
    auto elector = LeaderElector::create(config);
    EXPECT_TRUE(elector.ok());
    c->elector = std::move(elector).value();
    return c;
  }

  std::shared_ptr<FakeRecordStore> store_ = std::make_shared<FakeRecordStore>();
  util::FakeClock clock_;
};

TEST(ElectorConfigTest, RejectsBrokenTimingsAndMissingParts) {
  auto store = std::make_shared<FakeRecordStore>();
  auto valid = [&] {
    ElectorConfig c;
    c.lock = std::make_shared<FakeLock>(store, "a");
    c.callbacks.on_started_leading = [](fencing::FencingToken, std::stop_token) {};
    c.callbacks.on_stopped_leading = [] {};
    return c;
  };
  EXPECT_TRUE(LeaderElector::create(valid()).ok());

  struct Case {
    const char* what;
    std::function<void(ElectorConfig&)> mutate;
  };
  const std::vector<Case> cases = {
      {"lease <= renew", [](ElectorConfig& c) { c.lease_duration = 10s; }},
      {"renew <= 1.2 retry", [](ElectorConfig& c) { c.renew_deadline = 2400ms; }},
      {"zero retry", [](ElectorConfig& c) { c.retry_period = 0ms; }},
      {"sub-second lease",
       [](ElectorConfig& c) {
         c.lease_duration = 900ms;
         c.renew_deadline = 800ms;
         c.retry_period = 100ms;
       }},
      {"no lock", [](ElectorConfig& c) { c.lock.reset(); }},
      {"empty identity", [&](ElectorConfig& c) { c.lock = std::make_shared<FakeLock>(store, ""); }},
      {"no started callback", [](ElectorConfig& c) { c.callbacks.on_started_leading = nullptr; }},
      {"no stopped callback", [](ElectorConfig& c) { c.callbacks.on_stopped_leading = nullptr; }},
  };
  for (const auto& c : cases) {
    ElectorConfig config = valid();
    c.mutate(config);
    auto result = LeaderElector::create(config);
    ASSERT_FALSE(result.ok()) << c.what;
    EXPECT_EQ(result.error().code, util::ErrorCode::kInvalidArgument) << c.what;
  }
  EXPECT_TRUE(validateTimings(3s, 2s, 500ms).ok());
  EXPECT_NE(validateTimings(2s, 2s, 500ms).error().message.find("greater than renew deadline"), std::string::npos);
}

TEST_F(ElectorTest, FirstCandidateCreatesTheRecordWithTokenZero) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  auto record = store_->read();
  ASSERT_TRUE(record);
  EXPECT_EQ(record->record.holder_identity, "a");
  EXPECT_EQ(record->record.leader_transitions, 0);
  EXPECT_EQ(record->record.lease_duration_seconds, 15);
  EXPECT_EQ(record->record.acquire_time, clock_.wallNow());
}

TEST_F(ElectorTest, RenewKeepsTokenAndAcquireTime) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  const auto acquired = store_->read()->record.acquire_time;
  clock_.advance(2s);
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  auto record = store_->read()->record;
  EXPECT_EQ(record.leader_transitions, 0);
  EXPECT_EQ(record.acquire_time, acquired);
  EXPECT_EQ(record.renew_time, clock_.wallNow());
}

TEST_F(ElectorTest, SameIdentityReacquiringDoesNotIncrementTheToken) {
  auto first = candidate("a");
  ASSERT_TRUE(first->elector->tryAcquireOrRenew(1s));
  auto restarted = candidate("a");  // the same identity after a restart, before expiry
  ASSERT_TRUE(restarted->elector->tryAcquireOrRenew(1s));
  EXPECT_EQ(store_->read()->record.leader_transitions, 0);
}

TEST_F(ElectorTest, FollowerWaitsForExpiryOnItsOwnClockThenTakesOverWithNextToken) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));  // a leads, then goes silent (crashed)
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->elector->observedLeader() == "a"; }));
  clock_.advance(14'999ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(b->started, 0) << "took over before the lease expired";
  clock_.advance(1ms);
  ASSERT_TRUE(eventually([&] { return b->started == 1; }));
  EXPECT_EQ(b->token, 1);
  EXPECT_EQ(store_->read()->record.holder_identity, "b");
  EXPECT_EQ(store_->read()->record.leader_transitions, 1);
  b->stop();
  EXPECT_EQ(b->stopped, 1);
}

TEST_F(ElectorTest, WallClockJumpsDoNotExpireAHolder) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->elector->observedLeader() == "a"; }));
  clock_.stepWall(std::chrono::hours(1));  // our wall clock runs far ahead of the holder's renewTime
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(b->started, 0);
  b->stop();
}

TEST_F(ElectorTest, EachRenewalSeenRestartsTheExpiryClock) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->lock->delivered() >= 1; })) << "b's watch has synced";
  for (int i = 0; i < 10; ++i) {
    const int seen = b->lock->delivered();
    clock_.advance(10s);
    ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
    // b has handled the renewal from its watch before time moves on
    ASSERT_TRUE(eventually([&] { return b->lock->delivered() > seen; }));
  }
  EXPECT_EQ(b->started, 0);
  b->stop();
}

TEST_F(ElectorTest, LeaderThatCannotRenewStepsDownAtRenewDeadline) {
  auto a = candidate("a");
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  a->lock->partition(true);
  for (int i = 0; i < 4; ++i) {
    clock_.advance(2s);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(a->elector->isLeader()) << "stepped down before the renew deadline";
  clock_.advance(2s);
  std::this_thread::sleep_for(20ms);
  clock_.advance(2s);
  ASSERT_TRUE(eventually([&] { return a->outcome != -1; }));
  EXPECT_EQ(a->outcome, static_cast<int>(LeaderElector::Outcome::kLostLeadership));
  EXPECT_EQ(a->stopped, 1);
  EXPECT_FALSE(a->elector->isLeader());
}

TEST_F(ElectorTest, GracefulStopReleasesAndFollowerTakesOverAtOnce) {
  auto a = candidate("a");
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->elector->observedLeader() == "a"; }));
  a->stop();
  EXPECT_EQ(a->stopped, 1);
  // No clock advance: the release alone lets b in.
  ASSERT_TRUE(eventually([&] { return b->started == 1; }));
  EXPECT_EQ(b->token, 1);
  auto record = store_->read()->record;
  EXPECT_EQ(record.holder_identity, "b");
  EXPECT_EQ(record.leader_transitions, 1);
  b->stop();
  record = store_->read()->record;
  EXPECT_EQ(record.holder_identity, "");
  EXPECT_EQ(record.leader_transitions, 1) << "release must keep leaseTransitions";
}

TEST_F(ElectorTest, FollowersWatchInsteadOfPolling) {
  auto a = candidate("a");
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->elector->observedLeader() == "a" && b->lock->delivered() >= 1; }));
  const int gets_before = b->lock->gets();
  const int writes_before = store_->writes();
  for (int i = 1; i <= 30; ++i) {  // one minute of steady state, in lock step: both asleep, then one retry period
    ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 2; })) << i;
    clock_.advance(2s);
    ASSERT_TRUE(eventually([&] { return store_->writes() == writes_before + i; })) << i;
  }
  EXPECT_EQ(store_->writes(), writes_before + 30) << "one renewal per retry period";
  EXPECT_EQ(b->lock->gets(), gets_before) << "a watching follower must not poll";
  EXPECT_EQ(b->lock->updates(), 0);
  EXPECT_EQ(b->started, 0);
  a->stop();
  b->stop();
}

TEST_F(ElectorTest, ExactlyOneOfManyCandidatesLeads) {
  std::vector<std::unique_ptr<Candidate>> candidates;
  for (const char* id : {"a", "b", "c", "d", "e"}) candidates.push_back(candidate(id));
  for (auto& c : candidates) c->start();
  ASSERT_TRUE(eventually([&] {
    int leaders = 0;
    for (auto& c : candidates) leaders += c->started.load();
    return leaders == 1;
  }));
  std::this_thread::sleep_for(50ms);
  int leaders = 0;
  for (auto& c : candidates) leaders += c->started.load();
  EXPECT_EQ(leaders, 1);
  for (auto& c : candidates) c->stop();
}

TEST_F(ElectorTest, NewLeaderCallbackReportsHolderAndToken) {
  auto a = candidate("a");
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  auto b = candidate("b");
  b->start();
  ASSERT_TRUE(eventually([&] { return b->elector->observedLeader() == "a"; }));
  a->stop();
  ASSERT_TRUE(eventually([&] { return b->started == 1; }));
  b->stop();
  std::lock_guard g(b->mutex);
  ASSERT_EQ(b->new_leaders.size(), 2u);
  EXPECT_EQ(b->new_leaders[0], std::make_pair(std::string("a"), 0LL));
  EXPECT_EQ(b->new_leaders[1], std::make_pair(std::string("b"), 1LL));
}

TEST_F(ElectorTest, LeaderStepsDownAtOnceWhenSomeoneElseTakesTheRecord) {
  auto a = candidate("a");
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  LeaderElectionRecord stolen = store_->read()->record;
  stolen.holder_identity = "intruder";
  stolen.leader_transitions += 1;
  store_->set(stolen);
  ASSERT_TRUE(eventually([&] { return a->outcome != -1; }));
  EXPECT_EQ(a->outcome, static_cast<int>(LeaderElector::Outcome::kLostLeadership));
  EXPECT_EQ(store_->read()->record.holder_identity, "intruder") << "a must not release a lease it no longer holds";
}

TEST_F(ElectorTest, HealthCheckFailsWhenLeaderIsWedged) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->healthCheck(1s).ok()) << "a follower is healthy";
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1; }));
  EXPECT_TRUE(a->elector->healthCheck(1s).ok());
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 1; })) << "the leader waits to renew";
  a->lock->hang(true);  // the next renewal never returns
  clock_.advance(2s);
  ASSERT_TRUE(eventually([&] { return a->lock->stuck() == 1; }));  // the last good renewal was 2 s ago
  clock_.advance(13s);
  EXPECT_TRUE(a->elector->healthCheck(1s).ok()) << "within lease duration + tolerance";
  clock_.advance(2s);
  EXPECT_FALSE(a->elector->healthCheck(1s).ok());
  a->lock->hang(false);
  a->stop();
  EXPECT_TRUE(a->elector->healthCheck(1s).ok());
}

TEST_F(ElectorTest, WithoutAWatchFollowersPollEveryRetryPeriod) {
  auto a = candidate("a");
  ASSERT_TRUE(a->elector->tryAcquireOrRenew(1s));
  auto lock = std::make_shared<FakeLock>(store_, "b");
  ElectorConfig config;
  config.lock = lock;
  config.watch_record = false;
  config.clock = &clock_;
  std::atomic<int> started{0};
  config.callbacks.on_started_leading = [&](fencing::FencingToken, std::stop_token) { ++started; };
  config.callbacks.on_stopped_leading = [] {};
  auto b = std::move(LeaderElector::create(config)).value();
  std::jthread t([&](std::stop_token stop) { b->run(stop); });
  ASSERT_TRUE(eventually([&] { return lock->gets() == 1 && clock_.sleepers() == 1; }));
  clock_.advance(2s);
  ASSERT_TRUE(eventually([&] { return lock->gets() == 2 && clock_.sleepers() == 1; }));
  clock_.advance(14s);
  ASSERT_TRUE(eventually([&] { return started == 1; }));
}

}  // namespace
}  // namespace singleton::election
