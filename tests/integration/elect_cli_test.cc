// singleton-elect on a real control plane: election, takeover after SIGKILL and SIGTERM, tokens, command mode.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "support/cluster_fixture.h"
#include "support/elect_candidate.h"
#include "support/process.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

// Short timings keep the suite fast; the invariant LeaseDuration > RenewDeadline > 1.2 x RetryPeriod holds.
constexpr auto kLease = 4s;
constexpr auto kRetry = 1s;

Json parse(const std::string& line) { return Json::parse(line); }

struct Group {
  std::vector<std::unique_ptr<Process>> members;
  std::vector<std::string> ids;

  // The member that printed started_leading first (by arrival) since `from` lines, waiting up to `timeout`. The
  // earliest, not the lowest index: on a loaded machine a first taker may lose its term at once to a second one, and
  // the takeover under test is the first.
  std::optional<std::pair<int, Process::Line>> waitForLeader(std::chrono::milliseconds timeout,
                                                             const std::vector<std::size_t>& from, int except = -1) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::optional<std::pair<int, Process::Line>> earliest;
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (static_cast<int>(i) == except) continue;
        auto line = members[i]->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); },
                                            0ms, from.empty() ? 0 : from[i]);
        if (line && (!earliest || line->at < earliest->second.at))
          earliest = std::make_pair(static_cast<int>(i), *line);
      }
      if (earliest) return earliest;
      std::this_thread::sleep_for(1ms);
    }
    return std::nullopt;
  }
  int countStarted() const {
    int n = 0;
    for (const auto& m : members) {
      for (const auto& l : m->lines()) n += isElectEvent(l, "started_leading");
    }
    return n;
  }
  // Every member's stderr, for a failure message.
  std::string logs() const {
    std::string out;
    for (std::size_t i = 0; i < members.size(); ++i) out += "--- " + ids[i] + " ---\n" + members[i]->stderrText();
    return out;
  }
  std::vector<std::size_t> lineCounts() const {
    std::vector<std::size_t> counts;
    for (const auto& m : members) counts.push_back(m->lines().size());
    return counts;
  }
};

Group startGroup(const std::string& lease, const ElectTimings& timings = {}) {
  Group g;
  for (const char* id : {"alpha", "bravo", "charlie"}) {
    g.ids.push_back(id);
    g.members.push_back(electCandidate(lease, id, {}, "", timings));
  }
  return g;
}

TEST(ElectCliTest, ThreeCandidatesExactlyOneLeadsAndAllKnowIt) {
  // Steady timings: this test asserts that the first leader is never deposed, which a loaded machine must not break.
  Group g = startGroup("default/elect-three", kSteadyTimings);
  auto leader = g.waitForLeader(30s, {});
  ASSERT_TRUE(leader) << g.members[0]->stderrText();
  std::this_thread::sleep_for(12s);  // past the lease duration: long enough for a wrong second leader to appear
  EXPECT_EQ(g.countStarted(), 1) << g.logs();
  const std::string leader_id = g.ids[leader->first];
  for (auto& m : g.members) {
    auto seen = m->waitForLine(
        [&](const std::string& l) { return isElectEvent(l, "new_leader") && parse(l)["leader"] == leader_id; }, 10s);
    EXPECT_TRUE(seen) << "every candidate reports the leader";
  }
  const Json started = parse(leader->second.text);
  EXPECT_EQ(started["identity"], leader_id);
  EXPECT_EQ(started["leader"], leader_id);
  EXPECT_EQ(started["token"], 0);
  EXPECT_TRUE(started["ts"].is_string());

  // The Lease is written exactly as Kubernetes and client-go write it.
  auto lease = cluster().kubectl({"get", "lease", "elect-three", "-n", "default", "-o", "json"});
  ASSERT_TRUE(lease.ok()) << lease.err;
  const Json spec = Json::parse(lease.out)["spec"];
  EXPECT_EQ(spec["holderIdentity"], leader_id);
  EXPECT_EQ(spec["leaseDurationSeconds"], 10);
  EXPECT_EQ(spec["leaseTransitions"], 0);
  EXPECT_EQ(spec["renewTime"].get<std::string>().size(), std::string("2006-01-02T15:04:05.000000Z").size());
}

TEST(ElectCliTest, SigkillLeaderAnotherLeadsWithinLeaseDurationAndTokenIncrements) {
  Group g = startGroup("default/elect-sigkill");
  auto first = g.waitForLeader(30s, {});
  ASSERT_TRUE(first);
  const long long token = parse(first->second.text)["token"];
  std::this_thread::sleep_for(2 * kRetry);  // followers have seen renewals
  const auto from = g.lineCounts();
  const auto killed_at = std::chrono::steady_clock::now();
  g.members[first->first]->signal(SIGKILL);
  auto next = g.waitForLeader(kLease + kRetry + 10s, from, first->first);
  ASSERT_TRUE(next);
  const auto takeover = std::chrono::duration_cast<std::chrono::milliseconds>(next->second.at - killed_at);
  std::cout << "SIGKILL takeover: " << takeover.count() << " ms (lease duration " << kLease.count() << " s)\n";
  EXPECT_LE(takeover, kLease + kRetry + 2s);
  EXPECT_EQ(parse(next->second.text)["token"], token + 1);
}

TEST(ElectCliTest, SigtermLeaderReleasesAndAnotherLeadsWithinASecond) {
  Group g = startGroup("default/elect-sigterm");
  auto first = g.waitForLeader(30s, {});
  ASSERT_TRUE(first);
  const long long token = parse(first->second.text)["token"];
  std::this_thread::sleep_for(2 * kRetry);
  const auto from = g.lineCounts();
  const auto terminated_at = std::chrono::steady_clock::now();
  g.members[first->first]->signal(SIGTERM);
  auto next = g.waitForLeader(10s, from, first->first);
  ASSERT_TRUE(next);
  const auto takeover = std::chrono::duration_cast<std::chrono::milliseconds>(next->second.at - terminated_at);
  std::cout << "SIGTERM takeover: " << takeover.count() << " ms\n";
  EXPECT_LE(takeover, 1s);
  EXPECT_EQ(parse(next->second.text)["token"], token + 1);
  auto& old = *g.members[first->first];
  EXPECT_EQ(old.wait(10s), 0) << old.stderrText();
  EXPECT_TRUE(old.waitForLine([](const std::string& l) { return isElectEvent(l, "stopped_leading"); }, 1s));
}

TEST(ElectCliTest, CommandRunsOnlyWhileLeadingWithTheFencingToken) {
  auto a = electCandidate("default/elect-command", "cmd-a",
                          {"sh", "-c", "echo token=$SINGLETON_FENCING_TOKEN; exec sleep 1000"});
  ASSERT_TRUE(a->waitForLine([](const std::string& l) { return l == "token=0"; }, 30s)) << a->stderrText();
  auto b = electCandidate("default/elect-command", "cmd-b",
                          {"sh", "-c", "echo token=$SINGLETON_FENCING_TOKEN; exec sleep 1000"});
  ASSERT_TRUE(b->waitForLine([](const std::string& l) { return isElectEvent(l, "new_leader"); }, 30s));
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(b->waitForLine([](const std::string& l) { return l.rfind("token=", 0) == 0; }, 0ms))
      << "a follower must not run the command";
  a->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0) << a->stderrText();
  EXPECT_TRUE(b->waitForLine([](const std::string& l) { return l == "token=1"; }, 10s)) << b->stderrText();
  b->signal(SIGTERM);
  EXPECT_EQ(b->wait(20s), 0);
}

TEST(ElectCliTest, CommandExitingOnItsOwnReleasesAndPassesItsStatus) {
  auto a = electCandidate("default/elect-exit", "exit-a", {"sh", "-c", "exit 3"});
  EXPECT_EQ(a->wait(30s), 3) << a->stderrText();
  auto lease = cluster().kubectl({"get", "lease", "elect-exit", "-n", "default", "-o", "json"});
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(Json::parse(lease.out)["spec"].value("holderIdentity", ""), "") << "released";
}

TEST(ElectCliTest, BadFlagsAndConfigGiveOneLineAndExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {electBinary(), "--identity", "x"},
      {electBinary(), "--lease", "default/x", "--identity", "x", "--lease-duration", "nope"},
      {electBinary(), "--lease", "default/x", "--identity", "x", "--kubeconfig", "/nonexistent/kubeconfig"},
  };
  for (const auto& argv : cases) {
    Process p(argv);
    EXPECT_EQ(p.wait(10s), 2);
    const std::string err = p.stderrText();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.rfind("singleton-elect: ", 0), 0u) << err;
  }
}

}  // namespace
}  // namespace singleton::testing
