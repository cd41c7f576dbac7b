// A leader cut off from the apiserver by a blackhole (no FIN, no RST) whose command ignores SIGTERM: the command's
// last sign of life comes before the new leader's command starts. Both commands stamp every line with the machine's
// monotonic clock (/proc/uptime), so the two logs are compared on one clock, not sampled by the test.
// SINGLETON_PARTITION_ROUNDS=N repeats the scenario (default 1).
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/cluster_fixture.h"
#include "support/elect_candidate.h"
#include "support/process.h"
#include "support/tcp_proxy.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

// Ignores SIGTERM (so only SIGKILL stops it) and prints "tick <identity> <uptime seconds>" every 10 ms.
const std::vector<std::string> kStubbornCommand = {
    "sh", "-c",
    "trap '' TERM; while :; do read up idle < /proc/uptime; echo \"tick $SINGLETON_IDENTITY $up\"; sleep 0.01; done"};

// The uptime stamps of `id`'s ticks in `p`'s output, in order.
std::vector<double> ticks(const Process& p, const std::string& id) {
  std::vector<double> out;
  for (const auto& line : p.lines()) {
    std::istringstream in(line);
    std::string word, who;
    double at = 0;
    if (in >> word >> who >> at && word == "tick" && who == id) out.push_back(at);
  }
  return out;
}

TEST(ElectPartitionTest, ABlackholedLeadersCommandIsDeadBeforeTheNextOneStarts) {
  const char* rounds_env = std::getenv("SINGLETON_PARTITION_ROUNDS");
  const int rounds = rounds_env != nullptr ? std::max(1, std::atoi(rounds_env)) : 1;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string lease = "default/elect-partition-" + std::to_string(round);
    TcpProxy proxy(cluster().apiserverPort());
    const auto proxied = cluster().dir() / ("kubeconfig-partition-" + std::to_string(round));
    proxy.writeKubeconfig(cluster().kubeconfigPath(), proxied);

    auto a = electCandidate(lease, "part-a", kStubbornCommand, proxied.string());
    ASSERT_TRUE(a->waitForLine([](const std::string& l) { return l.rfind("tick part-a ", 0) == 0; }, 30s))
        << a->stderrText();
    auto b = electCandidate(lease, "part-b", kStubbornCommand);
    ASSERT_TRUE(b->waitForLine([](const std::string& l) { return isElectEvent(l, "new_leader"); }, 30s))
        << b->stderrText();
    std::this_thread::sleep_for(2s);  // b has seen a renew

    proxy.blackhole();  // a can neither renew nor hear anything; no connection closes
    ASSERT_TRUE(b->waitForLine([](const std::string& l) { return l.rfind("tick part-b ", 0) == 0; }, 30s))
        << b->stderrText();
    const auto a_status = a->wait(30s);
    ASSERT_TRUE(a_status) << "a never stopped: " << a->stderrText();
    EXPECT_EQ(*a_status, 1) << "lost leadership with a command: exit 1";

    const auto a_ticks = ticks(*a, "part-a");
    const auto b_ticks = ticks(*b, "part-b");
    ASSERT_FALSE(a_ticks.empty());
    ASSERT_FALSE(b_ticks.empty());
    const double gap_ms = (b_ticks.front() - a_ticks.back()) * 1000;
    std::cout << "partition: old command's last tick " << a_ticks.back() << " s, new command's first tick "
              << b_ticks.front() << " s (uptime): " << (gap_ms >= 0 ? "gap " : "OVERLAP ") << std::abs(gap_ms)
              << " ms\n";
    EXPECT_LT(a_ticks.back(), b_ticks.front()) << "two commands ran at once for " << -gap_ms << " ms\n"
                                               << a->stderrText();
    b->signal(SIGTERM);
    EXPECT_EQ(b->wait(20s), 0);
  }
}

}  // namespace
}  // namespace singleton::testing
