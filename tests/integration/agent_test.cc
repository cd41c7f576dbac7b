// singleton-agent on a real control plane. No operator runs: the test plays it, writing the workload's Lease as the
// operator's hand-off does (docs/handoff.md). Each agent runs as its own fake "pod" (name and UID by flag), and its
// COMMAND is a small Python loop that logs start, a heartbeat every 10 ms, and stop, on CLOCK_MONOTONIC (the clock
// of std::chrono::steady_clock here), so the test compares the processes' own activity with its own instants.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "election/handoff.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "support/cluster_fixture.h"
#include "support/process.h"
#include "support/tcp_proxy.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr const char* kNs = "default";
constexpr int kLeaseSeconds = 4;
constexpr auto kRenewDeadline = 2s;
constexpr auto kRenewInterval = 500ms;
// What the agent derives for a 4s lease and a 2s deadline (election::defaultGracePeriod, killWait).
constexpr auto kGrace = 1200ms;
constexpr auto kKillWait = 400ms;

constexpr const char* kWorkloadScript = R"(
import os, signal, sys, time
f = open(sys.argv[1], 'a', buffering=1)
def now(): return time.monotonic_ns() // 1000
f.write('start %d %s\n' % (now(), os.environ.get('SINGLETON_FENCING_TOKEN', '')))
def term(*_):
    f.write('stop %d\n' % now())
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    f.write('beat %d\n' % now())
    time.sleep(0.01)
)";

std::string agentBinary() { return std::string(SINGLETON_BINARY_DIR) + "/cli/singleton-agent"; }
std::string python() { return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }
long long nowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

bool isEvent(const std::string& line, const std::string& event) {
  auto j = Json::parse(line, nullptr, false);
  return j.is_object() && j.value("event", "") == event;
}

template <typename F>
bool eventually(F f, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

// One active window of a COMMAND, from its own log.
struct Window {
  long long start = 0;  // µs, CLOCK_MONOTONIC
  long long last = 0;   // last heartbeat or stop
  bool stopped = false;
  std::string token;
};

std::vector<Window> readWindows(const std::filesystem::path& log) {
  std::vector<Window> windows;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string kind;
    long long t = 0;
    s >> kind >> t;
    if (kind == "start") {
      windows.push_back({t, t, false, ""});
      s >> windows.back().token;
    } else if (!windows.empty() && (kind == "beat" || kind == "stop")) {
      windows.back().last = std::max(windows.back().last, t);
      if (kind == "stop") windows.back().stopped = true;
    }
  }
  return windows;
}

// The HTTP status and body of GET url (curl), or status 0.
std::pair<int, std::string> httpGet(const std::string& url) {
  auto r = runCommand({"curl", "-s", "-m", "2", "-w", "\n%{http_code}", url});
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return {0, ""};
  int status = 0;
  try {
    status = std::stoi(r.out.substr(nl + 1));
  } catch (...) {
  }
  return {status, r.out.substr(0, nl)};
}

std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = kube::loadKubeconfig({cluster().kubeconfigPath().string(), ""});
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto transport = kube::makeBeastTransport(*config);
    ASSERT_TRUE(transport.ok()) << transport.error().message;
    client_ = std::make_unique<kube::Client>(*transport);
    dir_ = std::filesystem::temp_directory_path() / ("agent-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    agents_.clear();
    std::filesystem::remove_all(dir_);
  }

  // The operator's write: holder, token, leader UID and the hand-off annotations, by compare-and-swap (created the
  // first time). The acknowledgement of any earlier hand-off is dropped, as the operator's move does.
  Json writeLease(const std::string& workload, const std::string& holder, const std::string& uid, long long token,
                  const std::string& from = "", const std::string& from_uid = "") {
    const std::string name = workload + "-leader";
    for (int attempt = 0; attempt < 20; ++attempt) {
      auto current = client_->get(kube::kLeases, kNs, name);
      Json lease;
      if (current.ok()) {
        lease = *current;
      } else {
        EXPECT_EQ(current.error().code, util::ErrorCode::kNotFound) << current.error().message;
        lease = {{"apiVersion", "coordination.k8s.io/v1"},
                 {"kind", "Lease"},
                 {"metadata", {{"name", name}, {"namespace", kNs}}},
                 {"spec", Json::object()}};
      }
      Json& annotations = lease["metadata"]["annotations"];
      if (!annotations.is_object()) annotations = Json::object();
      annotations[election::kLeaderUidAnnotation] = uid;
      annotations[election::kHandoffFromAnnotation] = from;
      annotations[election::kHandoffFromUidAnnotation] = from_uid;
      annotations.erase(election::kHandoffAckedAnnotation);
      annotations.erase(election::kHandoffAckedByAnnotation);
      lease["spec"]["holderIdentity"] = holder;
      lease["spec"]["leaseTransitions"] = token;
      lease["spec"]["leaseDurationSeconds"] = kLeaseSeconds;
      auto written =
          current.ok() ? client_->update(kube::kLeases, kNs, lease) : client_->create(kube::kLeases, kNs, lease);
      if (written.ok()) return *written;
      if (written.error().code != util::ErrorCode::kConflict) {
        ADD_FAILURE() << written.error().message;
        return {};
      }
    }
    ADD_FAILURE() << "lease write kept conflicting";
    return {};
  }
  election::HandoffView readLease(const std::string& workload) {
    auto lease = client_->get(kube::kLeases, kNs, workload + "-leader");
    EXPECT_TRUE(lease.ok());
    return lease.ok() ? election::parseHandoff(*lease) : election::HandoffView{};
  }

  std::filesystem::path logOf(const std::string& pod) const { return dir_ / (pod + ".log"); }
  std::filesystem::path roleDirOf(const std::string& pod) const { return dir_ / (pod + "-role"); }

  // An agent for pod `pod` (UID "uid-<pod>"), with COMMAND unless sidecar.
  // `command` replaces the logging workload (with sidecar false).
  Process& startAgent(const std::string& workload, const std::string& pod, bool sidecar = false,
                      const std::string& kubeconfig = "", const std::vector<std::string>& command = {}) {
    std::filesystem::create_directories(roleDirOf(pod));
    std::vector<std::string> argv = {agentBinary(),
                                     "--kubeconfig",
                                     kubeconfig.empty() ? cluster().kubeconfigPath().string() : kubeconfig,
                                     "--workload",
                                     workload,
                                     "--pod-name",
                                     pod,
                                     "--pod-namespace",
                                     kNs,
                                     "--pod-uid",
                                     "uid-" + pod,
                                     "--renew-deadline",
                                     "2s",
                                     "--renew-interval",
                                     "500ms",
                                     "--role-dir",
                                     roleDirOf(pod).string(),
                                     "--log-level",
                                     "debug"};
    if (!sidecar && !command.empty()) {
      argv.push_back("--");
      argv.insert(argv.end(), command.begin(), command.end());
    } else if (!sidecar) {
      for (const std::string& a :
           {std::string("--"), python(), std::string("-c"), std::string(kWorkloadScript), logOf(pod).string()}) {
        argv.push_back(a);
      }
    }
    agents_.push_back(std::make_unique<Process>(argv));
    return *agents_.back();
  }
  // The agent's /role, /readyz address from its "ready" line.
  std::string urlOf(Process& agent, const std::string& path) {
    auto line = agent.waitForLine([](const std::string& l) { return isEvent(l, "ready"); }, 20s);
    EXPECT_TRUE(line) << agent.stderrText();
    if (!line) return "";
    return "http://" + Json::parse(line->text)["address"].get<std::string>() + path;
  }
  std::optional<Json> waitEvent(Process& agent, const std::string& event, std::chrono::milliseconds timeout,
                                long long token = -1) {
    auto line = agent.waitForLine(
        [&](const std::string& l) {
          if (!isEvent(l, event)) return false;
          return token < 0 || Json::parse(l).value("token", -2LL) == token;
        },
        timeout);
    if (!line) return std::nullopt;
    return Json::parse(line->text);
  }
  int countEvents(Process& agent, const std::string& event) {
    int n = 0;
    for (const auto& l : agent.lines()) n += isEvent(l, event);
    return n;
  }

  std::unique_ptr<kube::Client> client_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<Process>> agents_;
};

// (a) The holder with no hand-off pending starts COMMAND with its token; the other pod stays standby.
// (b) The operator's CAS to w-1 names w-0 as the one to stop first: w-0 stops COMMAND and acknowledges, and only
//     then does w-1 start; the two active windows, from the processes' own logs, do not overlap.
// (e) The role files and /role follow.
TEST_F(AgentTest, HandoffWaitsForTheOldLeaderToStop) {
  const std::string w = "handoff";
  writeLease(w, "w-0", "uid-w-0", 1);
  Process& a0 = startAgent(w, "w-0");
  Process& a1 = startAgent(w, "w-1");
  auto started0 = waitEvent(a0, "started_command", 30s, 1);
  ASSERT_TRUE(started0) << a0.stderrText();
  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-0")).empty(); }, 10s));
  EXPECT_EQ(readWindows(logOf("w-0"))[0].token, "1");
  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "leader\n"; }, 5s));
  EXPECT_EQ(readFile(roleDirOf("w-0") / "token"), "1\n");
  auto role0 = httpGet(urlOf(a0, "/role"));
  ASSERT_EQ(role0.first, 200);
  EXPECT_EQ(Json::parse(role0.second)["role"], "leader");
  EXPECT_EQ(Json::parse(role0.second)["token"], 1);
  EXPECT_FALSE(Json::parse(role0.second)["since"].get<std::string>().empty());
  EXPECT_EQ(httpGet(urlOf(a0, "/readyz")).first, 200);
  EXPECT_EQ(httpGet(urlOf(a0, "/healthz")).first, 200);
  auto role1 = httpGet(urlOf(a1, "/role"));
  ASSERT_EQ(role1.first, 200);
  EXPECT_EQ(Json::parse(role1.second)["role"], "standby");
  EXPECT_EQ(readFile(roleDirOf("w-1") / "role"), "standby\n");
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(countEvents(a1, "started_command"), 0);

  // The hand-off: the test is the operator.
  writeLease(w, "w-1", "uid-w-1", 2, "w-0", "uid-w-0");
  auto stopped0 = waitEvent(a0, "stopped_command", 20s, 1);
  ASSERT_TRUE(stopped0) << a0.stderrText();
  auto acked = waitEvent(a0, "acked_handoff", 20s, 2);
  ASSERT_TRUE(acked) << a0.stderrText();
  auto started1 = waitEvent(a1, "started_command", 20s, 2);
  ASSERT_TRUE(started1) << a1.stderrText();
  // Same machine, same wall clock, millisecond stamps: w-1 started no earlier than w-0's ack.
  EXPECT_LE((*acked)["ts"].get<std::string>(), (*started1)["ts"].get<std::string>());
  EXPECT_LE((*stopped0)["ts"].get<std::string>(), (*acked)["ts"].get<std::string>());

  const election::HandoffView view = readLease(w);
  EXPECT_TRUE(view.acked);
  EXPECT_EQ(view.acked_by, "agent");
  EXPECT_TRUE(election::mayBeActive(view, "w-1", "uid-w-1"));

  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-1")).empty(); }, 10s));
  const auto windows0 = readWindows(logOf("w-0"));
  const auto windows1 = readWindows(logOf("w-1"));
  ASSERT_EQ(windows0.size(), 1u);
  ASSERT_EQ(windows1.size(), 1u);
  EXPECT_TRUE(windows0[0].stopped);
  EXPECT_EQ(windows1[0].token, "2");
  EXPECT_LT(windows0[0].last, windows1[0].start) << "w-0 was still active when w-1 started";
  std::cout << "gap between w-0's last action and w-1's start: " << (windows1[0].start - windows0[0].last) / 1000.0
            << " ms\n";
  for (Process* a : {&a0, &a1}) {
    for (const auto& l : a->lines()) std::cout << "  " << l << "\n";
  }
  std::cout << a1.stderrText();

  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-1") / "role") == "leader\n"; }, 5s));
  EXPECT_EQ(readFile(roleDirOf("w-1") / "token"), "2\n");
  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "standby\n"; }, 5s));
  EXPECT_EQ(Json::parse(httpGet(urlOf(a0, "/role")).second)["role"], "standby");
  EXPECT_EQ(Json::parse(httpGet(urlOf(a1, "/role")).second)["role"], "leader");
  EXPECT_EQ(httpGet(urlOf(a0, "/readyz")).first, 200);  // an ordinary standby is ready
}

// Round after round of hand-offs among three agents: the active windows of all three COMMANDs, merged in time order,
// never overlap, and their tokens strictly increase.
TEST_F(AgentTest, RepeatedHandoffsNeverOverlap) {
  const std::string w = "rounds";
  const std::vector<std::string> pods = {"w-0", "w-1", "w-2"};
  writeLease(w, pods[0], "uid-" + pods[0], 1);
  std::vector<Process*> agents;
  for (const auto& p : pods) agents.push_back(&startAgent(w, p));
  ASSERT_TRUE(waitEvent(*agents[0], "started_command", 30s, 1)) << agents[0]->stderrText();
  constexpr int kRounds = 12;
  for (int round = 1; round <= kRounds; ++round) {
    const std::size_t from = (round - 1) % pods.size();
    const std::size_t to = round % pods.size();
    const long long token = round + 1;
    // Let the COMMAND log a few heartbeats first, so that every window is visible in the logs.
    ASSERT_TRUE(eventually(
        [&] {
          return readWindows(logOf(pods[from])).size() ==
                 static_cast<std::size_t>((round - 1) / static_cast<int>(pods.size()) + 1);
        },
        10s));
    std::this_thread::sleep_for(50ms);
    writeLease(w, pods[to], "uid-" + pods[to], token, pods[from], "uid-" + pods[from]);
    ASSERT_TRUE(waitEvent(*agents[to], "started_command", 20s, token)) << "round " << round << "\n"
                                                                       << agents[to]->stderrText();
  }
  std::vector<Window> all;
  auto collect = [&] {
    all.clear();
    for (const auto& p : pods) {
      for (const auto& win : readWindows(logOf(p))) all.push_back(win);
    }
    return all.size() == static_cast<std::size_t>(kRounds + 1);
  };
  EXPECT_TRUE(eventually(collect, 10s));  // the last COMMAND has logged its start
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kRounds + 1));
  std::sort(all.begin(), all.end(), [](const Window& a, const Window& b) { return a.start < b.start; });
  long long min_gap = std::numeric_limits<long long>::max();
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    EXPECT_LT(all[i].last, all[i + 1].start) << "window " << i << " overlaps the next";
    EXPECT_LT(std::stoll(all[i].token), std::stoll(all[i + 1].token));
    min_gap = std::min(min_gap, all[i + 1].start - all[i].last);
  }
  std::cout << kRounds << " hand-offs, smallest gap between windows " << min_gap / 1000.0 << " ms\n";
}

// A successor waits while the hand-off is pending, and an acknowledgement from an earlier hand-off does not count.
TEST_F(AgentTest, SuccessorWaitsForThisHandoffsAck) {
  const std::string w = "pending";
  // w-0's pod is gone without an agent: nobody acknowledges.
  writeLease(w, "w-1", "uid-w-1", 5, "w-0", "uid-w-0");
  {
    // An ack of an earlier token left on the Lease.
    auto lease = client_->get(kube::kLeases, kNs, w + "-leader");
    ASSERT_TRUE(lease.ok());
    (*lease)["metadata"]["annotations"][election::kHandoffAckedAnnotation] = "4";
    ASSERT_TRUE(client_->update(kube::kLeases, kNs, *lease).ok());
  }
  Process& a1 = startAgent(w, "w-1");
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(countEvents(a1, "started_command"), 0) << a1.stderrText();
  EXPECT_FALSE(std::filesystem::exists(logOf("w-1")));
  // The operator completes it (e.g. the pod is gone).
  auto lease = client_->get(kube::kLeases, kNs, w + "-leader");
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(client_
                  ->mergePatch(kube::kLeases, kNs, w + "-leader",
                               election::ackMergePatch(election::parseHandoff(*lease), election::AckedBy::kPodGone))
                  .ok());
  EXPECT_TRUE(waitEvent(a1, "started_command", 20s, 5)) << a1.stderrText();
}

// (c) SIGTERM to the agent stops COMMAND first, then the agent exits 0.
TEST_F(AgentTest, SigtermStopsCommandFirst) {
  const std::string w = "sigterm";
  writeLease(w, "w-0", "uid-w-0", 3);
  Process& a0 = startAgent(w, "w-0");
  ASSERT_TRUE(waitEvent(a0, "started_command", 30s, 3)) << a0.stderrText();
  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-0")).empty(); }, 10s));
  a0.signal(SIGTERM);
  auto status = a0.wait(20s);
  const long long exited = nowMicros();
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << a0.stderrText();
  auto windows = readWindows(logOf("w-0"));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_TRUE(windows[0].stopped) << "COMMAND got SIGTERM and logged its stop";
  EXPECT_LT(windows[0].last, exited);
  EXPECT_TRUE(waitEvent(a0, "stopped_command", 0ms, 3));
  // Nothing runs any more.
  const auto size = std::filesystem::file_size(logOf("w-0"));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(std::filesystem::file_size(logOf("w-0")), size);
}

// Pod deletion: SIGTERM stops COMMAND first; the agent then waits briefly for the operator's move that names it as
// the one to stop first, acknowledges it, and exits 0, so the successor starts without waiting for other evidence.
TEST_F(AgentTest, SigtermAcksTheMoveThatFollows) {
  const std::string w = "sigterm-ack";
  writeLease(w, "w-0", "uid-w-0", 4);
  Process& a0 = startAgent(w, "w-0");
  Process& a1 = startAgent(w, "w-1");
  ASSERT_TRUE(waitEvent(a0, "started_command", 30s, 4)) << a0.stderrText();
  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-0")).empty(); }, 10s));
  a0.signal(SIGTERM);
  ASSERT_TRUE(waitEvent(a0, "stopped_command", 10s, 4)) << a0.stderrText();
  writeLease(w, "w-1", "uid-w-1", 5, "w-0", "uid-w-0");  // the operator reacts to the deletion
  EXPECT_TRUE(waitEvent(a0, "acked_handoff", 10s, 5)) << a0.stderrText();
  auto status = a0.wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << a0.stderrText();
  ASSERT_TRUE(waitEvent(a1, "started_command", 20s, 5)) << a1.stderrText();
  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-1")).empty(); }, 10s));
  const auto windows0 = readWindows(logOf("w-0"));
  const auto windows1 = readWindows(logOf("w-1"));
  ASSERT_EQ(windows0.size(), 1u);
  ASSERT_EQ(windows1.size(), 1u);
  EXPECT_LT(windows0[0].last, windows1[0].start);
}

// The acknowledgement patches are compare-and-swaps on the real apiserver: built from an older version of the Lease,
// both forms are refused, and the Lease is unchanged.
TEST_F(AgentTest, AckPatchesAreCompareAndSwaps) {
  const std::string w = "ackcas";
  const std::string name = w + "-leader";
  writeLease(w, "w-1", "uid-w-1", 2, "w-0", "uid-w-0");
  auto old_lease = client_->get(kube::kLeases, kNs, name);
  ASSERT_TRUE(old_lease.ok());
  const election::HandoffView old_view = election::parseHandoff(*old_lease);
  writeLease(w, "w-2", "uid-w-2", 3, "w-1", "uid-w-1");  // moved on meanwhile
  auto merge =
      client_->mergePatch(kube::kLeases, kNs, name, election::ackMergePatch(old_view, election::AckedBy::kAgent));
  ASSERT_FALSE(merge.ok());
  EXPECT_EQ(merge.error().code, util::ErrorCode::kConflict) << merge.error().message;
  auto json = client_->jsonPatch(kube::kLeases, kNs, name, election::ackJsonPatch(old_view, election::AckedBy::kAgent));
  ASSERT_FALSE(json.ok());
  std::cout << "stale JSON patch: " << util::errorCodeName(json.error().code) << " (HTTP " << json.error().http_status
            << ")\n";
  election::HandoffView now = readLease(w);
  EXPECT_FALSE(now.complete);
  EXPECT_EQ(now.holder, "w-2");
  // From the current version, the JSON patch form applies.
  auto applied = client_->jsonPatch(kube::kLeases, kNs, name, election::ackJsonPatch(now, election::AckedBy::kPodGone));
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  now = readLease(w);
  EXPECT_TRUE(now.complete);
  EXPECT_EQ(now.acked_by, "pod-gone");
}

// (d) A leader cut off from the apiserver (blackholed TCP proxy) stops COMMAND within renew-deadline + grace (and
// the reap) from its last confirmation, which was sent before the cut; /readyz fails. After the heal it confirms
// again and, still the holder, starts COMMAND again.
TEST_F(AgentTest, BlackholedLeaderStepsDown) {
  const std::string w = "blackhole";
  writeLease(w, "w-0", "uid-w-0", 7);
  TcpProxy proxy(cluster().apiserverPort());
  const auto kubeconfig = dir_ / "kubeconfig-proxied";
  proxy.writeKubeconfig(cluster().kubeconfigPath(), kubeconfig);
  Process& a0 = startAgent(w, "w-0", false, kubeconfig.string());
  ASSERT_TRUE(waitEvent(a0, "started_command", 30s, 7)) << a0.stderrText();
  const std::string readyz = urlOf(a0, "/readyz");
  ASSERT_TRUE(eventually([&] { return !readWindows(logOf("w-0")).empty(); }, 10s));
  std::this_thread::sleep_for(1s);  // a few confirmations

  const long long cut = nowMicros();
  proxy.blackhole();
  auto demoted = waitEvent(a0, "self_demoted", 10s, 7);
  ASSERT_TRUE(demoted) << a0.stderrText();
  ASSERT_TRUE(waitEvent(a0, "stopped_command", 10s, 7));
  const auto windows = readWindows(logOf("w-0"));
  ASSERT_EQ(windows.size(), 1u);
  const long long bound =
      std::chrono::duration_cast<std::chrono::microseconds>(kRenewDeadline + kGrace + kKillWait).count();
  std::cout << "last action " << (windows[0].last - cut) / 1000.0 << " ms after the cut (bound " << bound / 1000.0
            << " ms)\n";
  EXPECT_LE(windows[0].last - cut, bound);
  EXPECT_EQ(httpGet(readyz).first, 503);
  EXPECT_EQ(readFile(roleDirOf("w-0") / "role"), "standby\n");

  proxy.heal();
  EXPECT_TRUE(eventually([&] { return countEvents(a0, "started_command") == 2; }, 20s)) << a0.stderrText();
  EXPECT_TRUE(eventually([&] { return httpGet(readyz).first == 200; }, 5s));
}

// (e) Sidecar mode: no COMMAND, the role is only published, and a hand-off away from it is acknowledged at once.
TEST_F(AgentTest, SidecarPublishesRole) {
  const std::string w = "sidecar";
  writeLease(w, "w-0", "uid-w-0", 11);
  Process& a0 = startAgent(w, "w-0", true);
  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "leader\n"; }, 20s)) << a0.stderrText();
  EXPECT_EQ(readFile(roleDirOf("w-0") / "token"), "11\n");
  auto role = httpGet(urlOf(a0, "/role"));
  ASSERT_EQ(role.first, 200);
  EXPECT_EQ(Json::parse(role.second)["role"], "leader");
  EXPECT_EQ(Json::parse(role.second)["token"], 11);

  writeLease(w, "w-1", "uid-w-1", 12, "w-0", "uid-w-0");
  EXPECT_TRUE(waitEvent(a0, "acked_handoff", 20s, 12)) << a0.stderrText();
  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "standby\n"; }, 5s));
  EXPECT_EQ(Json::parse(httpGet(urlOf(a0, "/role")).second)["role"], "standby");
  EXPECT_TRUE(readLease(w).complete);
}

// COMMAND exiting by itself: the agent reports it, turns standby and exits with COMMAND's status.
TEST_F(AgentTest, CommandExitEndsTheAgentWithItsStatus) {
  const std::string w = "selfexit";
  writeLease(w, "w-0", "uid-w-0", 9);
  Process& a0 = startAgent(w, "w-0", false, "", {"sh", "-c", "sleep 0.3; exit 7"});
  auto status = a0.wait(30s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 7) << a0.stderrText();
  auto exited = waitEvent(a0, "command_exited", 0ms, 9);
  ASSERT_TRUE(exited) << a0.stderrText();
  EXPECT_EQ((*exited)["status"], 7);
  EXPECT_EQ(readFile(roleDirOf("w-0") / "role"), "standby\n");
}

// Standbys make no requests beyond their watch: nothing goes upstream through a standby's proxy once it watches.
// The leader's cost is one GET per renew-interval. Also reports the agents' resident size.
TEST_F(AgentTest, StandbyMakesNoRequests) {
  const std::string w = "quiet";
  writeLease(w, "w-0", "uid-w-0", 1);
  TcpProxy proxy(cluster().apiserverPort());
  const auto kubeconfig = dir_ / "kubeconfig-proxied";
  proxy.writeKubeconfig(cluster().kubeconfigPath(), kubeconfig);
  Process& a0 = startAgent(w, "w-0", true);
  Process& a1 = startAgent(w, "w-1", true, kubeconfig.string());
  ASSERT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "leader\n"; }, 20s)) << a0.stderrText();
  ASSERT_TRUE(waitEvent(a1, "role", 20s, 1)) << a1.stderrText();  // a1 has listed the Lease
  std::this_thread::sleep_for(500ms);
  auto confirmations = [&] {  // the leader logs each confirmation GET at debug level
    const std::string text = a0.stderrText();
    std::size_t n = 0;
    for (auto at = text.find("confirmation GET"); at != std::string::npos; at = text.find("confirmation GET", at + 1)) {
      ++n;
    }
    return n;
  };
  const std::size_t confirmations_before = confirmations();
  const auto cut = Clock::now();
  std::this_thread::sleep_for(3s);
  const std::size_t leader_gets = confirmations() - confirmations_before;
  EXPECT_EQ(proxy.bytesUpstreamAfter(cut), 0u) << "a standby sent something besides its watch";
  EXPECT_EQ(proxy.connections().size(), 2u) << "one list and one watch";
  // One GET per renew-interval (500 ms here; 5 s by default, i.e. 12 a minute).
  std::cout << "leader: " << leader_gets << " confirmation GETs in 3 s at renew-interval 500 ms\n";
  EXPECT_GE(leader_gets, 5u);
  EXPECT_LE(leader_gets, 7u);
  for (Process* a : {&a0, &a1}) {
    std::ifstream status("/proc/" + std::to_string(a->pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) std::cout << "agent pid " << a->pid() << " " << line << "\n";
    }
  }
}

// Watch failures are retried: after the apiserver is killed and restarted, a standby's watch resumes and it sees the
// hand-off written afterwards; the agents keep running throughout.
TEST_F(AgentTest, WatchSurvivesApiserverRestart) {
  const std::string w = "restart";
  writeLease(w, "w-0", "uid-w-0", 1);
  Process& a0 = startAgent(w, "w-0", true);
  Process& a1 = startAgent(w, "w-1", true);
  ASSERT_TRUE(eventually([&] { return readFile(roleDirOf("w-0") / "role") == "leader\n"; }, 20s)) << a0.stderrText();
  ASSERT_TRUE(waitEvent(a1, "role", 20s, 1)) << a1.stderrText();
  cluster().restartApiserver(/*kill=*/true);
  writeLease(w, "w-1", "uid-w-1", 2, "w-0", "uid-w-0");
  EXPECT_TRUE(waitEvent(a0, "acked_handoff", 30s, 2)) << a0.stderrText();
  EXPECT_TRUE(eventually([&] { return readFile(roleDirOf("w-1") / "role") == "leader\n"; }, 30s)) << a1.stderrText();
  EXPECT_TRUE(a0.running());
  EXPECT_TRUE(a1.running());
}

// A Lease whose duration does not leave room for renew-deadline + grace + the drift margin: exit 2, nothing started.
TEST_F(AgentTest, LeaseTooShortForTheTimingsExits2) {
  const std::string w = "tooshort";
  writeLease(w, "w-0", "uid-w-0", 1);
  auto lease = client_->get(kube::kLeases, kNs, w + "-leader");
  ASSERT_TRUE(lease.ok());
  (*lease)["spec"]["leaseDurationSeconds"] = 2;  // = renew-deadline
  ASSERT_TRUE(client_->update(kube::kLeases, kNs, *lease).ok());
  Process& a0 = startAgent(w, "w-0");
  auto status = a0.wait(20s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 2) << a0.stderrText();
  EXPECT_NE(a0.stderrText().find("must not exceed"), std::string::npos) << a0.stderrText();
  EXPECT_FALSE(std::filesystem::exists(logOf("w-0")));
}

}  // namespace
}  // namespace singleton::testing
