// singleton-elect's safety on a real control plane: the command dies with its supervisor, two processes never share
// an identity, a candidate without a command campaigns again after losing, and a stale list is not a deletion. (The
// partition test is in elect_partition_test.cc.)
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/api_proxy.h"
#include "support/cluster_fixture.h"
#include "support/elect_candidate.h"
#include "support/process.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

// Running, not a zombie (in a container PID 1 may never reap an orphan).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return predicate();
}

pid_t pidFromLine(Process& p, const std::string& prefix) {
  auto line = p.waitForLine([&](const std::string& l) { return l.rfind(prefix, 0) == 0; }, 30s);
  return line ? std::stoi(line->text.substr(prefix.size())) : -1;
}

TEST(ElectSafetyTest, TheCommandAndWhatItSpawnedDieWhenSingletonElectIsKilled) {
  // The command starts a background child (which a shell would leave behind as an orphan) and waits.
  auto a = electCandidate("default/elect-orphan", "orphan-a",
                          {"sh", "-c", "echo command=$$; sleep 1000 & echo background=$!; wait"});
  const pid_t command = pidFromLine(*a, "command=");
  const pid_t background = pidFromLine(*a, "background=");
  ASSERT_GT(command, 0) << a->stderrText();
  ASSERT_GT(background, 0);
  ASSERT_TRUE(alive(command) && alive(background));
  a->signal(SIGKILL);
  a->wait(10s);
  EXPECT_TRUE(eventually([&] { return !alive(command); }, 5s)) << "the command outlived singleton-elect";
  EXPECT_TRUE(eventually([&] { return !alive(background); }, 5s)) << "the command's child outlived singleton-elect";
  if (alive(command)) ::kill(command, SIGKILL);
  if (alive(background)) ::kill(background, SIGKILL);
}

TEST(ElectSafetyTest, TwoProcessesWithOneIdentityNeverBothLeadAndTheSecondSaysWhy) {
  auto first = electCandidate("default/elect-same-id", "same");
  ASSERT_TRUE(first->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 30s))
      << first->stderrText();
  auto second = electCandidate("default/elect-same-id", "same");
  // The first renews within a renew interval (1.33 s here): a change under "same" the second did not make.
  const auto status = second->wait(20s);
  ASSERT_TRUE(status) << "the second kept running: " << second->stderrText();
  EXPECT_EQ(*status, 3) << second->stderrText();
  const std::string err = second->stderrText();
  // The structured log line (text format, the default): the message, then the Lease and the identity as fields.
  EXPECT_NE(err.find("another process is writing under this identity"), std::string::npos) << err;
  EXPECT_NE(err.find("object=\"default/elect-same-id\""), std::string::npos) << err;
  EXPECT_NE(err.find("identity=\"same\""), std::string::npos) << err;
  for (const auto& l : second->lines()) EXPECT_FALSE(isElectEvent(l, "started_leading")) << "the second led: " << l;
  EXPECT_TRUE(first->running());
  for (const auto& l : first->lines()) EXPECT_FALSE(isElectEvent(l, "stopped_leading")) << l;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait(20s), 0);
}

TEST(ElectSafetyTest, DefaultIdentitiesAreUniqueSoTwoCandidatesOnOneHostElectOne) {
  auto a = electCandidate("default/elect-default-id", "");
  auto b = electCandidate("default/elect-default-id", "");
  auto started = [](Process& p) {
    return p.waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 0ms).has_value();
  };
  ASSERT_TRUE(eventually([&] { return started(*a) || started(*b); }, 30s)) << a->stderrText();
  std::this_thread::sleep_for(6s);  // more than a lease: a wrong second leader would show
  EXPECT_NE(started(*a), started(*b)) << "exactly one leads";
  EXPECT_TRUE(a->running() && b->running());
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0);
  EXPECT_EQ(b->wait(20s), 0);
}

TEST(ElectSafetyTest, WithoutACommandItCampaignsAgainAfterLosingTheLease) {
  auto a = electCandidate("default/elect-again", "again-a");
  ASSERT_TRUE(a->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 30s))
      << a->stderrText();
  // Someone else takes the Lease (as a rival or an operator's hand would).
  auto took = cluster().kubectl({"patch", "lease", "elect-again", "-n", "default", "--type", "merge", "-p",
                                 R"({"spec":{"holderIdentity":"intruder","leaseTransitions":5}})"});
  ASSERT_TRUE(took.ok()) << took.err;
  ASSERT_TRUE(a->waitForLine([](const std::string& l) { return isElectEvent(l, "stopped_leading"); }, 10s))
      << a->stderrText();
  // The intruder never renews: after its lease expires, a leads again, with a token above the intruder's.
  std::size_t after = 0;
  const auto lines = a->lines();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (isElectEvent(lines[i], "stopped_leading")) after = i + 1;
  }
  auto again = a->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 30s, after);
  ASSERT_TRUE(again) << a->stderrText();
  EXPECT_GT(Json::parse(again->text)["token"].get<long long>(), 5);
  EXPECT_TRUE(a->running());
  a->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0);
}

// The race CI once hit by chance, made certain: the watch's list is served before the candidate creates the Lease
// (the create reaches the apiserver 500 ms late) but answered after it (2 s late). Its "no Lease" is as of a version
// older than the create's, so it must not end the term, nor start a second one.
TEST(ElectSafetyTest, AListServedBeforeTheCreateAndAnsweredAfterItIsNotADeletion) {
  ApiProxy proxy(cluster().apiserverPort());
  const auto kubeconfig = cluster().dir() / "kubeconfig-stale-list";
  proxy.writeKubeconfig(cluster().adminToken(), kubeconfig);
  auto is_list = [](const ApiProxy::Request& r) {
    return r.method == "GET" && r.path.ends_with("/leases") && !r.watch();
  };
  proxy.setAnswerDelay(is_list, 2s);
  proxy.setDelay([](const ApiProxy::Request& r) { return r.method == "POST" && r.path.ends_with("/leases"); }, 500ms);
  auto a = electCandidate("default/elect-stale-list", "stale-list-a", {}, kubeconfig.string());
  ASSERT_TRUE(a->waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 30s))
      << a->stderrText();
  ASSERT_EQ(proxy.delayedRequests(), 1U) << "the create went through the proxy, late";
  std::this_thread::sleep_for(5s);  // the list's answer arrives 2 s after it was served, then a renewal or more
  int started = 0;
  for (const auto& l : a->lines()) {
    started += isElectEvent(l, "started_leading");
    EXPECT_FALSE(isElectEvent(l, "stopped_leading")) << l << "\n" << a->stderrText();
  }
  EXPECT_EQ(started, 1) << a->stderrText();
  EXPECT_EQ(a->stderrText().find("deleted while leading"), std::string::npos) << a->stderrText();
  auto lease = cluster().kubectl({"get", "lease", "elect-stale-list", "-n", "default", "-o", "json"});
  ASSERT_TRUE(lease.ok()) << lease.err;
  EXPECT_EQ(Json::parse(lease.out)["spec"]["leaseTransitions"], 0) << "one term, not a spurious second";
  a->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0);
}

}  // namespace
}  // namespace singleton::testing
