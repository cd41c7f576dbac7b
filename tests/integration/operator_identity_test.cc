// One identity, one process (issue 8, part 3), for the operator on a real control plane:
//   - a second singleton-operator started with a replica's --identity never leads beside it: it exits 2 with an
//     error naming the Lease and the identity, while the first keeps the Lease (one writer, no new term) and keeps
//     reconciling;
//   - three replicas on one host without --identity and without $POD_NAME get distinct identities
//     (<host name>_<random>) and exactly one of them leads.
// The primary witnesses are outside the processes: the operator Lease (polled on a connection of its own) and the
// pods' labels (the LeaderAuditor). The replicas' own leader_election_master_status gauges only support them.
//
// SINGLETON_OPERATOR_BINARY runs the replicas this test starts itself with another build; the harness's replica stays
// this build's. A build with main f8e057c's behaviour (a record naming its identity is its own; the default identity
// is the host name) fails both tests: the twin takes the Lease over as its own and keeps running (the harness's
// replica is the one that exits 2), and the three replicas all call themselves by the host name.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
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
// The harness's replica renews every 2.5 s (lease 4 s, renew deadline 3 s): a second writer would show as renewals
// closer together than that, and a twin has time to serve /metrics before it notices the first one's renewal.
constexpr auto kRenewInterval = 2500ms;
const std::string kLeaseName = std::string(kOperatorNamespace) + "/" + kOperatorLease;

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

const char* binaryOverride() { return std::getenv("SINGLETON_OPERATOR_BINARY"); }

std::vector<Json> jsonLines(const Process& p) {
  std::vector<Json> lines;
  std::istringstream in(p.stderrText());
  std::string line;
  while (std::getline(in, line)) {
    auto j = Json::parse(line, nullptr, false);
    if (j.is_object()) lines.push_back(std::move(j));
  }
  return lines;
}

std::string tail(const Process& p, std::size_t max = 4000) {
  const std::string text = p.stderrText();
  return text.size() > max ? text.substr(text.size() - max) : text;
}

// The identity from the replica's "campaigning" line, "" until it has logged one.
std::string campaigningIdentity(const Process& p) {
  for (const Json& j : jsonLines(p)) {
    if (j.value("msg", "") == "campaigning") return j.value("identity", "");
  }
  return "";
}

int metricsPortOf(const Process& p) {
  for (const Json& j : jsonLines(p)) {
    if (j.value("msg", "") != "serving" || j.value("server", "") != "metrics") continue;
    const std::string address = j.value("address", "");
    return std::atoi(address.c_str() + address.rfind(':') + 1);
  }
  return 0;
}

// The replica's own opinion (supporting evidence only): its leader_election_master_status, nullopt if unknown.
std::optional<int> masterStatus(const OperatorHarness& h, int port) {
  const auto [code, body] = h.httpGet(port, "/metrics");
  if (code != 200) return std::nullopt;
  const std::string key = std::string("leader_election_master_status{name=\"") + kOperatorLease + "\"} ";
  const auto at = body.find(key);
  if (at == std::string::npos) return std::nullopt;
  return std::atoi(body.c_str() + at + key.size());
}

// Every version of the operator Lease seen by polling it every 20 ms on a connection of its own.
class LeaseRecorder {
 public:
  struct Seen {
    Clock::time_point at;
    std::string resource_version;
    std::string holder;
    long long transitions = -1;
  };

  explicit LeaseRecorder(std::shared_ptr<kube::Transport> transport)
      : client_(std::move(transport)), thread_([this](std::stop_token stop) { loop(stop); }) {}
  ~LeaseRecorder() { stop(); }

  void stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::string describe() const {
    std::ostringstream out;
    const auto all = seen();
    for (const auto& s : all) {
      out << "  +" << ms(s.at - (all.empty() ? s.at : all.front().at)) << " ms rv " << s.resource_version << " holder "
          << s.holder << " transitions " << s.transitions << "\n";
    }
    return out.str();
  }

 private:
  void loop(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      auto lease = client_.getLease(kOperatorNamespace, kOperatorLease);
      if (lease.ok()) {
        std::lock_guard lock(mutex_);
        if (seen_.empty() || seen_.back().resource_version != lease->resource_version) {
          seen_.push_back({Clock::now(), lease->resource_version, lease->spec.holder_identity.value_or(""),
                           static_cast<long long>(lease->spec.lease_transitions.value_or(-1))});
        }
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  kube::Client client_;
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
  std::jthread thread_;
};

class OperatorIdentityTest : public OperatorTest {
 protected:
  static void SetUpTestSuite() {
    ::unsetenv("POD_NAME");  // the replicas this test starts inherit the environment: none may have a pod name
    OperatorHarness::Options options;
    options.operators = 1;  // "op-0"
    options.nodes = 2;
    options.log_level = "info";
    options.extra_operator_args = {"--renew-interval", "2500ms"};
    startHarness(std::move(options));
  }

  // A replica of our own with the harness's timings; `identity` empty: none given. Its log is its stderr.
  std::unique_ptr<Process> startReplica(const std::string& identity) {
    const auto& o = harness().options();
    std::vector<std::string> argv = {binaryOverride() != nullptr ? binaryOverride() : operatorBinary(),
                                     "--kubeconfig",
                                     harness().cluster().kubeconfigPath().string(),
                                     "--leader-election-namespace",
                                     kOperatorNamespace,
                                     "--lease-duration",
                                     o.lease_duration,
                                     "--renew-deadline",
                                     o.renew_deadline,
                                     "--retry-period",
                                     o.retry_period,
                                     "--health-probe-bind-address",
                                     "127.0.0.1:0",
                                     "--metrics-bind-address",
                                     "127.0.0.1:0",
                                     "--log-format",
                                     "json",
                                     "--log-level",
                                     o.log_level};
    // An older build may not know the newer flags.
    if (binaryOverride() == nullptr)
      argv.insert(argv.end(), o.extra_operator_args.begin(), o.extra_operator_args.end());
    if (!identity.empty()) {
      argv.push_back("--identity");
      argv.push_back(identity);
    }
    return std::make_unique<Process>(argv);
  }

  // Deletes the workload's leader pod and checks that exactly one new leadership follows, with the next token.
  void failoverOnce(const std::string& workload) {
    auto leader = waitForSteadyLeader(workload, kSteady);
    ASSERT_TRUE(leader) << auditor().describe(workload);
    const auto before = auditor().leaderships(workload).size();
    ASSERT_TRUE(harness().client().remove(kube::kPods, ns(), leader->name).ok());
    auto next = auditor().waitForLeadership(workload, before, 30s);
    ASSERT_TRUE(next) << auditor().describe(workload);
    EXPECT_NE(next->pod, leader->name);
    EXPECT_EQ(next->token, std::stoll(leader->token.value_or("-1")) + 1);
    ASSERT_TRUE(waitForSteadyLeader(workload, kSteady)) << auditor().describe(workload);
    EXPECT_EQ(auditor().leaderships(workload).size(), before + 1) << auditor().describe(workload);
  }
};

TEST_F(OperatorIdentityTest, ASecondProcessWithAReplicasIdentityNeverLeadsAndExitsTwoNamingLeaseAndIdentity) {
  ASSERT_EQ(harness().waitForOperatorLeader(30s), 0);
  createWorkload(workloadObject("same-id", 2));
  ASSERT_TRUE(waitForSteadyLeader("same-id", kSteady)) << auditor().describe("same-id");
  ASSERT_TRUE(waitForPodsReady("same-id", 2, kSteady)) << auditor().describe("same-id");
  const auto lease_before = harness().operatorLease();
  ASSERT_TRUE(lease_before);
  const long long term = lease_before->spec.lease_transitions.value_or(-1);
  const auto leaderships_before = auditor().leaderships("same-id").size();

  LeaseRecorder record(harness().transport());
  const auto started_at = Clock::now();
  auto twin = startReplica(OperatorHarness::identity(0));
  // While it runs, ask its own gauge too (supporting: a replica that believed it led would say 1).
  std::vector<int> twin_gauge;
  std::optional<int> status;
  while (!status && Clock::now() - started_at < 30s) {
    if (const int port = metricsPortOf(*twin); port != 0) {
      if (auto g = masterStatus(harness(), port)) twin_gauge.push_back(*g);
    }
    status = twin->wait(50ms);
  }
  ASSERT_TRUE(status) << "a second process with identity op-0 kept running for 30 s:\n" << tail(*twin);
  std::cout << "the twin exited " << *status << " after " << ms(Clock::now() - started_at) << " ms; its gauge read "
            << twin_gauge.size() << " time(s)\n";
  EXPECT_EQ(*status, 2) << tail(*twin);
  bool named = false;
  for (const Json& j : jsonLines(*twin)) {
    if (j.value("level", "") == "error" && j.value("lease", "") == kLeaseName && j.value("identity", "") == "op-0" &&
        j.value("msg", "").find("identity") != std::string::npos) {
      named = true;
      std::cout << "its error: " << j.dump() << "\n";
    }
    EXPECT_NE(j.value("msg", ""), "started leading") << "the twin led: " << j.dump();
  }
  EXPECT_TRUE(named) << "no error line naming " << kLeaseName << " and op-0:\n" << tail(*twin);
  for (int g : twin_gauge) EXPECT_EQ(g, 0) << "the twin's own gauge said it led";

  // The first replica is untouched: still running, still the holder, no new term, and the Lease has one writer.
  std::this_thread::sleep_for(harness().leaseDuration() + kRenewInterval);
  record.stop();
  EXPECT_TRUE(harness().operatorRunning(0)) << harness().operatorLogTail(0);
  const auto seen = record.seen();
  ASSERT_GE(seen.size(), 3u) << "the leader keeps renewing:\n" << record.describe();
  for (const auto& s : seen) {
    EXPECT_EQ(s.holder, "op-0") << record.describe();
    EXPECT_EQ(s.transitions, term) << "a new term was taken:\n" << record.describe();
  }
  // One writer renews a renew interval apart (give or take its requests' latency and the polling). Two writers at
  // that interval would interleave, and one of each pair of gaps would be at most half of it.
  auto min_gap = Clock::duration::max();
  for (std::size_t i = 2; i < seen.size(); ++i) min_gap = std::min(min_gap, seen[i].at - seen[i - 1].at);
  std::cout << "the Lease while and after the twin ran: " << seen.size() - 1 << " renewals by op-0, at least "
            << ms(min_gap) << " ms apart (renew interval " << ms(kRenewInterval) << " ms)\n";
  EXPECT_GT(min_gap, kRenewInterval / 2) << "two writers?\n" << record.describe();
  // The pods saw no leadership change while the twin ran, and the first replica still reconciles as sole leader.
  EXPECT_EQ(auditor().leaderships("same-id").size(), leaderships_before) << auditor().describe("same-id");
  failoverOnce("same-id");
  EXPECT_EQ(harness().operatorLeader(), 0);
}

TEST_F(OperatorIdentityTest, ThreeReplicasOnOneHostWithoutIdentityOrPodNameGetDistinctIdentitiesAndOneLeads) {
  // The harness's replica releases the Lease and stays stopped: only the three default-identity replicas campaign.
  harness().signalOperator(0, SIGTERM);
  ASSERT_EQ(harness().waitOperatorExit(0, 20s), 0) << harness().operatorLogTail(0);
  struct Restart {
    OperatorHarness& h;
    ~Restart() { h.ensureOperatorsRunning(); }
  } restart{harness()};

  std::vector<std::unique_ptr<Process>> replicas;
  for (int i = 0; i < 3; ++i) replicas.push_back(startReplica(""));
  std::vector<std::string> ids(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(eventually(
        [&] {
          ids[i] = campaigningIdentity(*replicas[i]);
          return !ids[i].empty();
        },
        30s))
        << "replica " << i << " logged no identity:\n"
        << tail(*replicas[i]);
  }
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  for (const auto& id : ids) {
    std::cout << "identity " << id << "\n";
    EXPECT_EQ(id.rfind(std::string(host) + "_", 0), 0u) << id << ": <host name>_<random>";
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 3u) << "identities shared on one host";

  // The Lease names exactly one of them, and keeps naming it with no new term (polled for over a lease).
  int leader = -1;
  ASSERT_TRUE(eventually(
      [&] {
        auto lease = harness().operatorLease();
        const std::string holder = lease ? lease->spec.holder_identity.value_or("") : "";
        int matches = 0;
        for (int i = 0; i < 3; ++i) {
          if (ids[i] == holder) {
            leader = i;
            ++matches;
          }
        }
        return matches == 1;
      },
      harness().leaseDuration() + 30s))
      << "the Lease does not name exactly one of them:\n"
      << [&] {
           auto lease = harness().operatorLease();
           return lease ? lease->spec.holder_identity.value_or("(none)") : "(no Lease)";
         }();
  std::cout << "the Lease names " << ids[leader] << " (replica " << leader << ")\n";
  LeaseRecorder record(harness().transport());
  const auto observed_from = Clock::now();
  // The one leader reconciles: a workload gets its leader (the auditor checks there is never more than one).
  createWorkload(workloadObject("default-ids", 2));
  ASSERT_TRUE(waitForSteadyLeader("default-ids", kSteady)) << auditor().describe("default-ids");
  const auto observed_for = Clock::now() - observed_from;
  if (observed_for < harness().leaseDuration() + 2s) {
    std::this_thread::sleep_for(harness().leaseDuration() + 2s - observed_for);
  }
  record.stop();
  const auto seen = record.seen();
  ASSERT_FALSE(seen.empty());
  for (const auto& s : seen) {
    EXPECT_EQ(s.holder, ids[leader]) << record.describe();
    EXPECT_EQ(s.transitions, seen.front().transitions) << "a new term was taken:\n" << record.describe();
  }
  // Supporting: their own gauges agree, and none of them exited.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(replicas[i]->running()) << "replica " << i << " exited:\n" << tail(*replicas[i]);
    std::optional<int> gauge;
    ASSERT_TRUE(eventually(
        [&] {
          const int port = metricsPortOf(*replicas[i]);
          gauge = port != 0 ? masterStatus(harness(), port) : std::nullopt;
          return gauge.has_value();
        },
        20s, 100ms))
        << "replica " << i << " serves no gauge:\n"
        << tail(*replicas[i]);
    EXPECT_EQ(*gauge, i == leader ? 1 : 0) << "replica " << i << " (" << ids[i] << ", leader " << ids[leader] << ")";
  }
  for (auto& r : replicas) r->signal(SIGTERM);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(replicas[i]->wait(20s), 0) << tail(*replicas[i]);
}

}  // namespace
}  // namespace singleton::testing
