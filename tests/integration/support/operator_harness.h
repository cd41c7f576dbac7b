// The operator on the shared local control plane, for integration tests: the CRD, the namespace singleton-system,
// one singleton-sim-kubelet playing a few Nodes, and several singleton-operator processes electing a leader among
// themselves. Helpers find the operator leader, stop and restart replicas, create SingletonWorkloads and read what
// the operator made of them.
//
//   class MyTest : public OperatorTest {};   // one harness per test suite, one namespace + LeaderAuditor per test
//   TEST_F(MyTest, Works) {
//     createWorkload(workloadObject("web", 3));
//     auto leader = waitForLeader("web");
//     ...
//   }
//
// Isolation on the shared cluster: the harness's Nodes carry the label and NoSchedule taint
// singleton.dev/test-pool=operator and workloadObject() templates select and tolerate them, so these pods land only
// on the harness's Nodes and other tests' pods never do. Every operator's output goes to a file in
// <cluster dir>/operator-logs (kept with SINGLETON_KEEP_CLUSTER=1) and, on a failed test, its tail to stderr.
#pragma once

#include <sys/types.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "support/api_proxy.h"
#include "support/cluster_fixture.h"
#include "support/leader_auditor.h"
#include "support/process.h"
#include "support/tcp_proxy.h"

namespace singleton::testing {

using Json = nlohmann::json;

inline constexpr const char* kOperatorNamespace = "singleton-system";
inline constexpr const char* kOperatorLease = "singleton-operator";
inline constexpr const char* kTestPoolKey = "singleton.dev/test-pool";
inline constexpr const char* kTestPoolValue = "operator";

std::string operatorBinary();    // ${SINGLETON_BINARY_DIR}/operator/singleton-operator
std::string simKubeletBinary();  // ${SINGLETON_BINARY_DIR}/e2e/kubelet/singleton-sim-kubelet

// Polls `check` every `period` until it holds or `timeout` passes; returns its last value.
bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout,
                std::chrono::milliseconds period = std::chrono::milliseconds(20));

// A SingletonWorkload: busybox running `sleep` (nothing runs it), on the harness's Nodes. `spec` is merged into the
// spec (e.g. {{"service", ...}}, {{"leaseDurationSeconds", 5}}).
Json workloadObject(const std::string& ns, const std::string& name, int replicas, const Json& spec = Json::object());

class OperatorHarness {
 public:
  struct Options {
    int operators = 3;
    int nodes = 3;
    std::string node_prefix = "op-node-";
    std::string lease_duration = "4s";
    std::string renew_deadline = "3s";
    std::string retry_period = "1s";
    std::string heartbeat = "1s";
    std::string log_level = "debug";
    std::vector<std::string> extra_operator_args;
    // Each replica talks to the apiserver through a TcpProxy of its own (operatorProxy(i)), for network faults.
    bool proxy_operators = false;
    // Each replica talks plain HTTP to an ApiProxy of its own (operatorApiProxy(i)), for faults on single requests.
    // Together with proxy_operators, the TcpProxy sits in front of the ApiProxy: replica → TcpProxy → ApiProxy →
    // apiserver, so a replica can be cut off, reset, or have single requests answered, delayed or held.
    bool api_proxy_operators = false;
  };

  OperatorHarness(LocalCluster& cluster, Options options);
  explicit OperatorHarness(LocalCluster& cluster);
  ~OperatorHarness();  // stop()
  OperatorHarness(const OperatorHarness&) = delete;
  OperatorHarness& operator=(const OperatorHarness&) = delete;

  // CRD (Established), namespace, sim kubelet (Nodes Ready, labelled and tainted), operators, an operator leader.
  // Throws std::runtime_error with the reason.
  void start();
  // SIGTERM every operator and the kubelet (KILL after 10 s). Idempotent; never throws.
  void stop() noexcept;

  LocalCluster& cluster() { return cluster_; }
  const Options& options() const { return options_; }
  std::shared_ptr<kube::Transport> transport() { return transport_; }
  kube::Client& client() { return *client_; }
  std::chrono::milliseconds leaseDuration() const;
  std::chrono::milliseconds retryPeriod() const;

  // --- operator replicas ----------------------------------------------------------------------------------------
  int operatorCount() const { return static_cast<int>(operators_.size()); }
  static std::string identity(int index) { return "op-" + std::to_string(index); }
  bool operatorRunning(int index);
  Process& operatorProcess(int index) { return *operators_.at(index).process; }
  void signalOperator(int index, int sig);
  std::optional<int> waitOperatorExit(int index, std::chrono::milliseconds timeout);
  void startOperator(int index);  // (re)start replica `index`; its earlier output stays in its log file
  void ensureOperatorsRunning();  // restarts any replica that is not running
  // The port /healthz + /readyz and /metrics listen on (from the "serving" log line), 0 until known.
  int healthPort(int index) const;
  int metricsPort(int index) const;
  // GET http://127.0.0.1:PORT/PATH: status code and body ({0, ""} if nothing answers).
  std::pair<int, std::string> httpGet(int port, const std::string& path) const;
  std::filesystem::path operatorLogPath(int index) const;
  // The proxy between replica `index` and the apiserver (options().proxy_operators); throws std::logic_error if none.
  TcpProxy& operatorProxy(int index);
  // The running replica's pid (-1 if none).
  pid_t operatorPid(int index) const;
  // The ApiProxy between replica `index` and the apiserver (options().api_proxy_operators); throws std::logic_error
  // if none.
  ApiProxy& operatorApiProxy(int index);
  std::string operatorLogTail(int index, std::size_t lines = 60) const;

  // The operators' Lease singleton-system/singleton-operator (nullopt if absent).
  std::optional<kube::Lease> operatorLease();
  // Index of the replica the Lease names as holder, if it names one of ours.
  std::optional<int> operatorLeader();
  // Waits until the Lease names a holder other than `not_this` (any holder when empty); the replica index.
  std::optional<int> waitForOperatorLeader(std::chrono::milliseconds timeout, const std::string& not_this = "");

  // --- the simulated kubelet ------------------------------------------------------------------------------------
  std::vector<std::string> nodeNames() const;
  Process& kubelet() { return *kubelet_; }
  std::string kubeletLogTail(std::size_t lines = 40) const;

  // --- objects --------------------------------------------------------------------------------------------------
  void createNamespace(const std::string& ns);  // idempotent; throws on failure
  util::Result<Json> createWorkload(const Json& object);
  std::optional<Json> getWorkload(const std::string& ns, const std::string& name);
  std::vector<Json> listPods(const std::string& ns, const std::string& workload);
  std::optional<Json> getPod(const std::string& ns, const std::string& name);
  std::optional<Json> getLease(const std::string& ns, const std::string& name);
  std::optional<Json> getService(const std::string& ns, const std::string& name);
  // core/v1 Events whose involvedObject is the named object (any kind when `kind` is empty).
  std::vector<Json> events(const std::string& ns, const std::string& name, const std::string& kind = "");

  // Everything useful after a failure: operator leader, log tails of every replica and the kubelet.
  std::string diagnostics() const;

 private:
  struct Replica {
    std::unique_ptr<Process> process;
    int health_port = 0;
    int metrics_port = 0;
    std::unique_ptr<TcpProxy> proxy;           // with options_.proxy_operators
    std::unique_ptr<ApiProxy> api_proxy;       // with options_.api_proxy_operators
    std::filesystem::path proxied_kubeconfig;  // names the proxy
  };
  void startKubelet();
  void prepareNodes();
  void readPorts(int index) const;

  LocalCluster& cluster_;
  Options options_;
  std::filesystem::path log_dir_;
  std::shared_ptr<kube::Transport> transport_;
  std::unique_ptr<kube::Client> client_;
  mutable std::vector<Replica> operators_;
  std::unique_ptr<Process> kubelet_;
  int kubelet_starts_ = 0;
  bool started_ = false;
};

// A test suite on one OperatorHarness (started in SetUpTestSuite, stopped in TearDownTestSuite) with, per test, a
// fresh namespace named after the test and a LeaderAuditor on it. TearDown fails the test on any auditor violation
// and prints diagnostics when the test failed. Namespaces are deleted when the suite ends.
class OperatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  // For a suite that needs other harness options (e.g. proxy_operators): call from its own SetUpTestSuite.
  static void startHarness(OperatorHarness::Options options);
  void SetUp() override;
  void TearDown() override;

  static OperatorHarness& harness() { return *harness_; }
  LeaderAuditor& auditor() { return *auditor_; }
  const std::string& ns() const { return ns_; }

  // Shorthands in this test's namespace.
  Json workloadObject(const std::string& name, int replicas, const Json& spec = Json::object()) const;
  Json createWorkload(const Json& object);  // ADD_FAILURE on error
  std::optional<Json> getWorkload(const std::string& name) { return harness().getWorkload(ns_, name); }
  std::optional<Json> getPod(const std::string& name) { return harness().getPod(ns_, name); }
  std::optional<Json> getLease(const std::string& name) { return harness().getLease(ns_, name); }
  std::vector<Json> listPods(const std::string& workload) { return harness().listPods(ns_, workload); }
  CommandResult kubectl(std::vector<std::string> args) const;  // with -n <ns> appended

  // Waits until the auditor sees exactly one leader with a token for `workload` whose pod is Ready and whose
  // token is the Lease's, and the workload's status agrees (leader, fencingToken). Returns the leader's view.
  std::optional<LeaderAuditor::PodView> waitForSteadyLeader(const std::string& workload,
                                                            std::chrono::milliseconds timeout);
  // Waits until the auditor sees exactly `replicas` pods of the workload, all Ready and none terminating.
  bool waitForPodsReady(const std::string& workload, int replicas, std::chrono::milliseconds timeout);
  // Waits for the workload's status to satisfy `check`.
  std::optional<Json> waitForStatus(const std::string& workload, const std::function<bool(const Json&)>& check,
                                    std::chrono::milliseconds timeout);

  static std::string conditionOf(const Json& workload, const std::string& type, const char* field = "status");

 private:
  static OperatorHarness* harness_;
  static std::vector<std::string> namespaces_;
  std::string ns_;
  std::unique_ptr<LeaderAuditor> auditor_;
};

}  // namespace singleton::testing
