#include "fencing/guard.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace singleton::fencing {
namespace {

TEST(GuardTest, AcceptsEqualOrHigherAndRejectsLower) {
  Guard guard;
  EXPECT_TRUE(guard.admit(FencingToken(0)).ok());
  EXPECT_TRUE(guard.admit(FencingToken(3)).ok());
  EXPECT_TRUE(guard.admit(FencingToken(3)).ok()) << "the current leader keeps writing";
  auto stale = guard.admit(FencingToken(2));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, util::ErrorCode::kConflict);
  EXPECT_EQ(stale.error().reason, "StaleFencingToken");
  EXPECT_NE(stale.error().message.find("stale fencing token 2"), std::string::npos);
  EXPECT_EQ(guard.highest(), FencingToken(3));
}

TEST(GuardTest, ConcurrentAdmitsLeaveTheHighestAsTheMark) {
  Guard guard;
  std::vector<std::jthread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&guard, t] {
      for (int i = 0; i < 10'000; ++i) (void)guard.admit(FencingToken(i * 8 + t));
    });
  }
  threads.clear();
  EXPECT_EQ(guard.highest(), FencingToken(9'999 * 8 + 7));
  EXPECT_FALSE(guard.admit(FencingToken(5)).ok());
}

TEST(GuardTest, AnOldLeaderWokenAfterANewOneWroteIsRefused) {
  Guard store;
  const FencingToken old_leader(4), new_leader(5);
  ASSERT_TRUE(store.admit(old_leader).ok());
  // the old leader pauses (GC, partition); a new one is elected and writes
  ASSERT_TRUE(store.admit(new_leader).ok());
  // the old leader wakes, still believing it leads
  EXPECT_FALSE(store.admit(old_leader).ok());
}

TEST(KeyedGuardTest, FencesEachKeyOnItsOwn) {
  KeyedGuard guard;
  EXPECT_TRUE(guard.admit("orders", FencingToken(7)).ok());
  EXPECT_TRUE(guard.admit("invoices", FencingToken(2)).ok());
  EXPECT_FALSE(guard.admit("orders", FencingToken(6)).ok());
  EXPECT_TRUE(guard.admit("invoices", FencingToken(2)).ok());
  EXPECT_EQ(guard.highest("orders"), FencingToken(7));
  EXPECT_EQ(guard.highest("unknown"), FencingToken(-1));
}

}  // namespace
}  // namespace singleton::fencing
