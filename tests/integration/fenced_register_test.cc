// A fenced register written by singleton-elect's leaders, checked like etcd checks itself: each candidate's COMMAND
// (tests/tools/fenced_client.cc) writes with its fencing token and reads back, recording every invocation and
// completion; a linearizability checker (tests/unit/support/fenced_register.h) checks the merged history against the
// fenced-register model. Faults: the leader's supervisor SIGSTOPped past the lease (its command keeps running and
// writing with the old token: the documented limit that tokens exist for), then the next leader SIGKILLed.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "support/cluster_fixture.h"
#include "support/elect_candidate.h"
#include "support/fenced_register.h"
#include "support/fenced_store.h"
#include "support/process.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

std::string clientBinary() { return std::string(SINGLETON_BINARY_DIR) + "/tests/singleton-fenced-client"; }

struct Scenario {
  std::vector<fenced::Operation> history;
  int leaderships = 0;
};

// Three candidates on `lease` write to `store`; the first leader's supervisor is paused past the lease, the second
// leader is killed, the third writes for a while. Returns the merged history.
Scenario runScenario(FencedStore& store, const std::string& lease) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("fenced-" + std::to_string(::getpid()) + "-" + lease.substr(lease.find('/') + 1));
  std::filesystem::create_directories(dir);
  const std::vector<std::string> ids = {"alpha", "bravo", "charlie"};
  std::vector<std::unique_ptr<Process>> members;
  for (const auto& id : ids) {
    members.push_back(electCandidate(lease, id,
                                     {clientBinary(), "--port", std::to_string(store.port()), "--writer", id,
                                      "--history", (dir / (id + ".history")).string()}));
  }
  std::vector<std::size_t> seen(members.size(), 0);
  // The next member (other than `except`) to print started_leading after the lines already seen.
  auto nextLeader = [&](int except) -> int {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (static_cast<int>(i) == except) continue;
        if (members[i]->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 0ms,
                                    seen[i])) {
          for (std::size_t j = 0; j < members.size(); ++j) seen[j] = members[j]->lines().size();
          return static_cast<int>(i);
        }
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  };
  Scenario out;
  const int first = nextLeader(-1);
  EXPECT_GE(first, 0);
  if (first < 0) return out;
  std::this_thread::sleep_for(1s);
  // 1. The supervisor freezes; its command does not (nothing can stop it), and keeps writing with the old token.
  members[first]->signal(SIGSTOP);
  const int second = nextLeader(first);
  EXPECT_GE(second, 0) << members[first]->stderrText();
  std::this_thread::sleep_for(1s);  // both commands write: the old token against the new one
  members[first]->signal(SIGCONT);  // it finds its term over and stops its command
  EXPECT_TRUE(members[first]->wait(20s)) << "the resumed supervisor exits once its command has stopped";
  // 2. The next leader dies at once (its command with it); the last candidate takes over.
  if (second >= 0) {
    members[second]->signal(SIGKILL);
    const int third = nextLeader(second);
    EXPECT_GE(third, 0);
    out.leaderships = third >= 0 ? 3 : 2;
  }
  std::this_thread::sleep_for(1s);
  for (auto& m : members) m->signal(SIGTERM);
  for (auto& m : members) m->wait(20s);

  std::vector<std::string> lines;
  for (const auto& id : ids) {
    std::ifstream in(dir / (id + ".history"));
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::filesystem::remove_all(dir);
  out.history = fenced::parseHistory(lines);
  return out;
}

struct Counts {
  std::size_t writes = 0, ok = 0, refused = 0, unknown = 0, reads = 0;
};
Counts count(const std::vector<fenced::Operation>& ops) {
  Counts c;
  for (const auto& op : ops) {
    if (!op.is_write) {
      ++c.reads;
      continue;
    }
    ++c.writes;
    c.ok += op.result == fenced::Operation::Result::kOk;
    c.refused += op.result == fenced::Operation::Result::kRefused;
    c.unknown += op.result == fenced::Operation::Result::kUnknown;
  }
  return c;
}

TEST(FencedElectTest, HistoryOfFencedLeadersIsLinearizableAndNoStaleWriteIsAccepted) {
  FencedStore store(/*fenced=*/true);
  const Scenario run = runScenario(store, "default/fenced-register");
  ASSERT_EQ(run.leaderships, 3);
  const auto started = std::chrono::steady_clock::now();
  const auto check = fenced::checkLinearizable(run.history);
  const auto checked_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  const Counts c = count(run.history);
  std::cout << "fenced store: " << run.history.size() << " operations (" << c.writes << " writes: " << c.ok
            << " accepted, " << c.refused << " refused by the fence, " << c.unknown << " with a lost answer; "
            << c.reads << " reads), linearizable: " << (check.linearizable ? "yes" : "NO") << " (checked in "
            << checked_ms << " ms), accepted stale writes: " << fenced::acceptedStaleWrites(run.history) << "\n";
  EXPECT_TRUE(check.linearizable) << "stuck at " << check.first_stuck;
  EXPECT_EQ(fenced::acceptedStaleWrites(run.history), 0u);
  // The paused leader's command went on writing with its old token: the fence was exercised, not just present.
  EXPECT_GE(c.refused, 1u) << "no stale write reached the store: the scenario did not test the fence";
}

TEST(FencedElectTest, WithoutTheFenceTheSameScenarioAcceptsStaleWrites) {
  // The exposure the token removes: the same faults against a store that accepts every write.
  FencedStore store(/*fenced=*/false);
  const Scenario run = runScenario(store, "default/unfenced-register");
  ASSERT_EQ(run.leaderships, 3);
  const auto check = fenced::checkLinearizable(run.history);
  const std::size_t stale = fenced::acceptedStaleWrites(run.history);
  std::cout << "unfenced store: " << run.history.size() << " operations, " << stale
            << " stale writes accepted (each one a write the fence refuses), linearizable as a fenced register: "
            << (check.linearizable ? "yes" : "no") << "\n";
  EXPECT_GE(stale, 1u);
  EXPECT_FALSE(check.linearizable) << "the checker must catch an accepted stale write";
}

}  // namespace
}  // namespace singleton::testing
