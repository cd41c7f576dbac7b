#include "election/leader_elector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "election/elector_fixture.h"

namespace singleton::election {
namespace {

using namespace std::chrono_literals;
using testing::Candidate;
using testing::ElectorTest;
using testing::eventually;
using testing::FakeLock;
using testing::FakeRecordStore;

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

TEST_F(ElectorTest, RestartedCandidateWithTheSameIdentityWaitsForExpiryAndTakesANewToken) {
  auto first = candidate("a");
  ASSERT_TRUE(first->elector->tryAcquireOrRenew(1s));
  // The same identity after a restart: the record may as well be another live process's, so it waits for expiry.
  auto restarted = candidate("a");
  EXPECT_FALSE(restarted->elector->tryAcquireOrRenew(1s));
  clock_.advance(15s);
  ASSERT_TRUE(restarted->elector->tryAcquireOrRenew(1s));
  EXPECT_EQ(store_->read()->record.leader_transitions, 1) << "a new term, a new token";
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
  const auto t0 = clock_.now();
  a->start();
  ASSERT_TRUE(eventually([&] { return a->started == 1 && clock_.sleepingUntil(t0 + 5s); }));
  EXPECT_EQ(a->elector->leadingUntil(), t0 + 10s);
  a->lock->partition(true);
  // Renewal at 5 s fails; retries every retry period (7 s, 9 s); the term ends at 10 s exactly.
  clock_.advance(5s);
  ASSERT_TRUE(eventually([&] { return clock_.sleepingUntil(t0 + 7s); }));
  clock_.advance(2s);
  ASSERT_TRUE(eventually([&] { return clock_.sleepingUntil(t0 + 9s); }));
  clock_.advance(2s);
  ASSERT_TRUE(eventually([&] { return clock_.sleepingUntil(t0 + 11s); }));
  clock_.advance(999ms);
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(a->elector->isLeader()) << "stepped down before the renew deadline";
  clock_.advance(1ms);
  ASSERT_TRUE(eventually([&] { return a->outcome != -1; }));
  EXPECT_EQ(a->outcome, static_cast<int>(LeaderElector::Outcome::kLostLeadership));
  EXPECT_EQ(a->stopped, 1);
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_EQ(a->elector->leadingUntil(), std::nullopt);
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
  // One minute of steady state, in lock step: everyone asleep (the leader's renewer and its deadline watch, the
  // follower), then one renew interval.
  EXPECT_EQ(a->elector->renewInterval(), 5s);
  for (int i = 1; i <= 12; ++i) {
    ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 3; })) << i;
    clock_.advance(5s);
    ASSERT_TRUE(eventually([&] { return store_->writes() == writes_before + i; })) << i;
  }
  EXPECT_EQ(store_->writes(), writes_before + 12) << "one renewal per renew interval: 12 a minute at 15/10/2 s";
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
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 2; })) << "the leader waits to renew";
  a->lock->hang(true);  // the next renewal never returns
  clock_.advance(5s);
  ASSERT_TRUE(eventually([&] { return a->lock->stuck() == 1; }));  // the last good renewal was 5 s ago
  clock_.advance(10s);
  ASSERT_TRUE(eventually([&] { return !a->elector->isLeader(); })) << "the term ends at the deadline, stuck or not";
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
