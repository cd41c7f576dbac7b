// The operator's time-bounded write gate on a real control plane.
//
// OperatorPausedLeaderTest (issue 7, case 2, "a paused leader resumes with its write gate open"): 3 operator
// replicas, each behind its TcpProxy. The test deletes a workload's leader pod; from the moment the deletion is
// visible the proxy holds the operator leader L's answers, so L's workload-Lease write (the failover's
// compare-and-swap) is applied but L cannot go on to label the successor. As soon as the Lease shows the new token
// the test SIGSTOPs L and lets the held answer through into L's socket. Another replica takes over, labels the
// successor and then switches the workload over to a third pod. Then L gets SIGCONT: its worker finds the Lease
// answer and goes on to its now stale promotion. The write gate (shut by the monotonic clock, which ran while L was
// stopped) and the label fence must keep it off the pods: the LeaderAuditor (its own watch) fails the test on any
// instant with two leader-labelled pods and on a token going backwards.
// SINGLETON_GATE_ROUNDS=n runs n rounds that stopped L after its Lease write (default 3).
//
// OperatorGateClosedTest (issue 9, "the write gate is closed at the moment the elector gives up"): one operator
// replica behind its TcpProxy, the kube-apiserver writing an audit log. With a workload's leader steady, the proxy
// holds the replica's requests (answers and watch events still flow); past renew_deadline from that instant the test
// deletes the leader pod with a client of its own. A gate still open would now send a Lease CAS and label patches;
// they would wait in the proxy and reach the apiserver when it heals. After the heal the replica re-acquires its
// Lease and fails the workload over. The audit log must show no operator write to the workload's namespace between
// the hold and that re-acquisition (the first operator-Lease write generated after the heal).
// How it fails (checked on a build with the elector's deadline moved 10 s late in watchTerm and leadLoop, so the
// workers run on through the hold): with LeaderGate::mayWrite as it is, 0 writes, the test passes (the gate shuts
// at leadingUntil() by itself); with mayWrite also ignoring that deadline, 6 operator writes to the namespace were
// sent during the hold and reached the apiserver at the heal, and the test fails.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "support/operator_harness.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr auto kSteady = 60s;

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

int rounds() {
  const char* text = std::getenv("SINGLETON_GATE_ROUNDS");
  const int n = text ? std::atoi(text) : 3;
  return n > 0 ? n : 3;
}

// The wall clock as the apiserver writes MicroTime ("2026-12-01T12:00:00.123456Z"): strings compare as times.
std::string microNow() {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char head[32];
  std::strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%06lldZ", head, static_cast<long long>(us % 1000000));
  return out;
}

// Sends SIGCONT to a replica the test stopped, however the test ends.
class ResumeGuard {
 public:
  ResumeGuard(OperatorHarness& h, int index) : h_(h), index_(index) {}
  ~ResumeGuard() { resume(); }
  ResumeGuard(const ResumeGuard&) = delete;
  ResumeGuard& operator=(const ResumeGuard&) = delete;
  void resume() {
    if (index_ >= 0) h_.signalOperator(index_, SIGCONT);
    index_ = -1;
  }

 private:
  OperatorHarness& h_;
  int index_;
};

// ---------------------------------------------------------------------------------------------------------------
// Issue 7, case 2: a paused operator leader resumes.

class OperatorPausedLeaderTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    OperatorHarness::Options options;
    options.proxy_operators = true;
    startHarness(std::move(options));
  }

  long long leaseTransitions(const std::string& lease) {
    auto l = getLease(lease);
    return l ? (*l)["spec"].value("leaseTransitions", -1LL) : -1;
  }
};

TEST_F(OperatorPausedLeaderTest, AResumedLeaderDoesNotLabelAfterANewOperatorLeaderActed) {
  createWorkload(workloadObject("pw", 3));
  int stopped = 0;
  int attempts = 0;
  while (stopped < rounds() && attempts < 3 * rounds()) {
    ++attempts;
    SCOPED_TRACE("attempt " + std::to_string(attempts));
    for (int i = 0; i < harness().operatorCount(); ++i) harness().operatorProxy(i).heal();
    harness().ensureOperatorsRunning();
    auto leader_pod = waitForSteadyLeader("pw", kSteady);
    ASSERT_TRUE(leader_pod) << auditor().describe("pw");
    ASSERT_TRUE(waitForPodsReady("pw", 3, kSteady)) << auditor().describe("pw");
    const auto op = harness().waitForOperatorLeader(kSteady);
    ASSERT_TRUE(op);
    const auto log_path = harness().operatorLogPath(*op);
    const auto log_from = std::filesystem::file_size(log_path);
    const auto leaderships_before = auditor().leaderships("pw").size();
    TcpProxy& proxy = harness().operatorProxy(*op);
    const long long token = leaseTransitions("pw-leader");

    // 1. The leader pod goes at once (no grace period: no demotion between the Lease write and the promotion). From
    //    the moment the deletion is visible L's answers wait in its proxy, so L cannot go on past its Lease CAS;
    //    once the CAS shows in the API the test stops L and lets the answer through: L finds it when it resumes.
    kube::DeleteOptions now;
    now.grace_period_seconds = 0;
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader_pod->name, now).ok());
    ASSERT_TRUE(auditor().waitUntil(
        [&](const LeaderAuditor::State& s) {
          const auto& pods = s.workloads.at("pw").pods;
          const auto it = pods.find(leader_pod->name);
          return it == pods.end() || it->second.terminating || it->second.uid != leader_pod->uid;
        },
        10s));
    proxy.setPolicy({TcpProxy::Flow::kForward, TcpProxy::Flow::kHold});
    if (!eventually([&] { return leaseTransitions("pw-leader") > token; }, 2s, 1ms)) {
      std::cout << "attempt " << attempts << ": the operator leader had not seen the deletion; again\n";
      proxy.heal();
      continue;
    }
    harness().signalOperator(*op, SIGSTOP);
    ResumeGuard guard(harness(), *op);
    const auto stopped_at = Clock::now();
    proxy.heal();
    ++stopped;
    const auto lease = getLease("pw-leader");
    ASSERT_TRUE(lease);
    const std::string successor = (*lease)["spec"].value("holderIdentity", "");
    const bool labelled_before_stop = auditor().leaderships("pw").size() > leaderships_before;

    // 2. Another replica takes over and labels the successor (unless L did), then switches over to a third pod.
    const auto next_op = harness().waitForOperatorLeader(30s, OperatorHarness::identity(*op));
    ASSERT_TRUE(next_op) << harness().diagnostics();
    auto first = auditor().waitForLeadership("pw", leaderships_before, 30s);
    ASSERT_TRUE(first) << auditor().describe("pw");
    ASSERT_EQ(first->pod, successor);
    std::string third;
    ASSERT_TRUE(eventually(
        [&] {
          for (const Json& p : listPods("pw")) {
            const auto v = podView(p);
            if (v.name != successor && v.ready && !v.terminating) third = v.name;
          }
          return !third.empty();
        },
        kSteady));
    const auto r = kubectl({"annotate", "--overwrite", "sw", "pw", "singleton.dev/switchover-to=" + third});
    ASSERT_TRUE(r.ok()) << r.err;
    auto second = auditor().waitForLeadership("pw", leaderships_before + 1, 30s);
    ASSERT_TRUE(second) << auditor().describe("pw");
    ASSERT_EQ(second->pod, third);

    // 3. L resumes: whatever it had in hand must not reach the pods.
    const auto paused = Clock::now() - stopped_at;
    guard.resume();
    std::this_thread::sleep_for(3s);
    std::ifstream in(log_path);
    in.seekg(static_cast<std::streamoff>(log_from));
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const bool refused = log.find("a fenced write to pod") != std::string::npos;
    std::cout << "attempt " << attempts << ": stopped replica " << *op << " after its Lease write for " << successor
              << (labelled_before_stop ? " (its label patch had landed)" : " (before its label landed)") << ", paused "
              << ms(paused) << " ms while replica " << *next_op << " led " << successor << " then " << third
              << " (token " << second->token
              << "); after SIGCONT: " << (refused ? "a fenced write was refused" : "no refused write logged") << "\n";
    EXPECT_TRUE(auditor().violations().empty()) << auditor().describe("pw");
    EXPECT_LE(auditor().currentLeaders("pw").size(), 1u) << auditor().describe("pw");
    ASSERT_TRUE(auditor().violations().empty());
  }
  std::cout << stopped << " of " << attempts << " attempts stopped the operator leader right after its Lease write\n";
  EXPECT_GE(stopped, 1) << "no attempt stopped the operator leader after a Lease write: nothing was tested";
}

// ---------------------------------------------------------------------------------------------------------------
// Issue 9: the gate is closed once the renew deadline has passed.

constexpr const char* kAuditPolicy = R"(apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  namespaces: ["singleton-system"]
  verbs: ["create", "update", "patch"]
  resources:
  - group: "coordination.k8s.io"
    resources: ["leases"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
  resources:
  - group: ""
    resources: ["pods", "pods/status"]
  - group: "coordination.k8s.io"
    resources: ["leases"]
  - group: "singleton.dev"
    resources: ["singletonworkloads", "singletonworkloads/status"]
- level: None
)";

std::filesystem::path auditLogPath() { return cluster().dir() / "audit" / "audit.log"; }

// Restarts the kube-apiserver with an audit log (once per cluster); the flags stay for its later restarts.
void enableAuditLog() {
  LocalCluster& c = cluster();
  const auto args_path = c.dir() / "run" / "kube-apiserver.args";
  std::ifstream in(args_path);
  const std::string args((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  if (args.find("--audit-log-path=") != std::string::npos) return;
  std::filesystem::create_directories(c.dir() / "audit");
  const auto policy = c.dir() / "audit" / "policy.yaml";
  std::ofstream(policy) << kAuditPolicy;
  std::ofstream out(args_path, std::ios::app);
  if (!args.empty() && args.back() != '\n') out << '\n';
  out << "--audit-policy-file=" << policy.string() << '\n' << "--audit-log-path=" << auditLogPath().string() << '\n';
  out.close();
  c.restartApiserver();
}

std::vector<Json> auditEvents() {
  std::vector<Json> events;
  std::ifstream in(auditLogPath());
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded()) events.push_back(std::move(j));
  }
  return events;
}

bool isOperatorWrite(const Json& e) {
  static const std::set<std::string> kWrites = {"create", "update", "patch", "delete", "deletecollection"};
  return e.value("userAgent", "").rfind("singleton-operator", 0) == 0 && kWrites.count(e.value("verb", "")) > 0;
}

std::string describeEvent(const Json& e) {
  const Json ref = e.value("objectRef", Json::object());
  return e.value("requestReceivedTimestamp", "") + " " + e.value("verb", "") + " " + ref.value("resource", "") + " " +
         ref.value("namespace", "") + "/" + ref.value("name", "") + " -> " +
         std::to_string(e.value("responseStatus", Json::object()).value("code", 0));
}

class OperatorGateClosedTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    enableAuditLog();
    OperatorHarness::Options options;
    options.operators = 1;
    options.proxy_operators = true;
    startHarness(std::move(options));
  }
};

TEST_F(OperatorGateClosedTest, NoWriteReachesTheApiserverAfterTheRenewDeadline) {
  createWorkload(workloadObject("gw", 3));
  auto leader_pod = waitForSteadyLeader("gw", kSteady);
  ASSERT_TRUE(leader_pod) << auditor().describe("gw");
  ASSERT_TRUE(waitForPodsReady("gw", 3, kSteady)) << auditor().describe("gw");
  ASSERT_EQ(harness().waitForOperatorLeader(kSteady), 0);
  // Every write that follows the pods' readiness (the status) has landed, so that no request of the replica is on
  // the wire when the hold begins: one sent before its deadline and delivered at the heal is the documented exposure,
  // not what this test is about, and under load it was still in flight (a status PATCH held, then sent at the heal).
  ASSERT_TRUE(waitForStatus(
      "gw",
      [&](const Json& w) {
        return w["status"].value("readyReplicas", 0) == 3 && w["status"].value("leader", "") == leader_pod->name &&
               conditionOf(w, "Progressing") == "False" &&
               w["status"].value("observedGeneration", 0) == w["metadata"].value("generation", -1);
      },
      kSteady))
      << getWorkload("gw").value_or(Json()).dump(2);
  std::this_thread::sleep_for(500ms);
  TcpProxy& proxy = harness().operatorProxy(0);
  // The test's own writes carry a user agent of their own.
  kube::ClientOptions client_options;
  client_options.user_agent = "singleton-gate-test/0.1";
  kube::Client client(harness().transport(), client_options);

  // 1. The replica's requests stay in the proxy from now on; answers and watch events still reach it.
  const std::string hold_wall = microNow();
  proxy.setPolicy({TcpProxy::Flow::kHold, TcpProxy::Flow::kForward});
  const auto held_at = Clock::now();
  // 2. Past the renew deadline (3 s, from a renewal that began before the hold), plus a margin.
  std::this_thread::sleep_for(4s);
  kube::DeleteOptions now;
  now.grace_period_seconds = 0;
  ASSERT_TRUE(client.remove(kube::kPods, ns(), leader_pod->name, now).ok());
  ASSERT_TRUE(auditor().waitUntil(
      [&](const LeaderAuditor::State& s) {
        const auto& pods = s.workloads.at("gw").pods;
        const auto it = pods.find(leader_pod->name);
        return it == pods.end() || it->second.terminating || it->second.uid != leader_pod->uid;
      },
      10s));
  // 3. Time for the replica to see the deletion and (were its gate open) act on it; then the heal.
  std::this_thread::sleep_for(3s);
  const std::string heal_wall = microNow();
  const auto healed_at = Clock::now();
  proxy.heal();

  // 4. The replica re-acquires its Lease and fails the workload over.
  ASSERT_TRUE(eventually(
      [&] {
        const auto leaders = auditor().currentLeaders("gw");
        return leaders.size() == 1 && *leaders.begin() != leader_pod->name;
      },
      kSteady))
      << auditor().describe("gw") << harness().diagnostics();
  ASSERT_TRUE(waitForSteadyLeader("gw", kSteady)) << auditor().describe("gw");
  // What the replica had sent while held reached the apiserver at the heal (the proxy logs it with that time).
  std::size_t released = 0;
  for (const auto& c : proxy.chunks()) {
    if (c.upstream && c.at >= healed_at && c.at < healed_at + 100ms) released += c.bytes;
  }

  // 5. The audit log: the re-acquisition is the first operator-Lease write the replica generated after the heal
  //    (its renewTime is later than the heal); before it, no operator write to the workload's namespace.
  std::string reacquired;
  std::vector<Json> events;
  const bool found = eventually(
      [&] {
        events = auditEvents();
        for (const Json& e : events) {
          const Json ref = e.value("objectRef", Json::object());
          if (!isOperatorWrite(e) || ref.value("namespace", "") != kOperatorNamespace ||
              ref.value("resource", "") != "leases" || ref.value("name", "") != kOperatorLease)
            continue;
          const int code = e.value("responseStatus", Json::object()).value("code", 0);
          const Json spec = e.value("requestObject", Json::object()).value("spec", Json::object());
          const std::string renew = spec.value("renewTime", "");
          if (code / 100 == 2 && renew > heal_wall) {
            reacquired = e.value("requestReceivedTimestamp", "");
            return true;
          }
        }
        return false;
      },
      10s, 200ms);
  EXPECT_TRUE(found) << "no operator Lease write generated after the heal in " << auditLogPath();
  if (!found) reacquired = "~";  // after every timestamp: every write since the hold counts
  std::vector<std::string> early;
  int later = 0;
  int held_lease_writes = 0;
  for (const Json& e : events) {
    if (!isOperatorWrite(e)) continue;
    const Json ref = e.value("objectRef", Json::object());
    const std::string received = e.value("requestReceivedTimestamp", "");
    if (ref.value("namespace", "") == kOperatorNamespace && received > heal_wall && received < reacquired)
      ++held_lease_writes;
    if (ref.value("namespace", "") != ns()) continue;
    if (received > hold_wall && received < reacquired) early.push_back(describeEvent(e));
    if (received >= reacquired) ++later;
  }
  std::cout << "held " << ms(healed_at - held_at) << " ms; " << released
            << " bytes the replica sent while held reached the apiserver at the heal (" << held_lease_writes
            << " of them operator-Lease writes); re-acquired at " << reacquired << " (heal " << heal_wall << "); "
            << early.size() << " operator writes to " << ns() << " before that, " << later << " after\n";
  EXPECT_GT(released, 0u) << "the replica sent nothing while held: the hold did not test its gate";
  EXPECT_TRUE(early.empty()) << "operator writes to " << ns() << " sent while its gate should have been shut:\n"
                             << ::testing::PrintToString(early);
  EXPECT_GT(later, 0) << "the failover after the re-acquisition left no write in the audit log: the observer is blind";
}

}  // namespace
}  // namespace singleton::testing
