// singleton-sim-kubelet on a real control plane: the node goes Ready and schedulable, kube-scheduler binds a pod to
// it and the pod runs; the annotation commands; graceful deletion; a stopped heartbeat seen by the node-lifecycle
// controller; bind -> Ready latency; SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "kube/config.h"
#include "support/cluster_fixture.h"
#include "support/process.h"
#include "watch/cache.h"
#include "watch/reflector.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr const char* kNamespace = "sim-kubelet-test";
constexpr const char* kNode = "simtest-0";

std::string simKubeletBinary() { return std::string(SINGLETON_BINARY_DIR) + "/e2e/kubelet/singleton-sim-kubelet"; }

std::unique_ptr<Process> startSimKubelet(const std::string& prefix, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {simKubeletBinary(), "--kubeconfig", cluster().kubeconfigPath().string(),
                                   "--node-prefix", prefix};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv);
}

// Polls `check` every 20 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return check();
}

std::string conditionStatus(const Json& object, const std::string& type, const char* field = "status") {
  if (!object.is_object() || !object.contains("status")) return "";
  for (const Json& c : object["status"].value("conditions", Json::array())) {
    if (c.value("type", "") == type) return c.value(field, "");
  }
  return "";
}

bool hasNotReadyTaint(const Json& node) {
  for (const Json& t : node["spec"].value("taints", Json::array())) {
    const std::string key = t.value("key", "");
    if (key == "node.kubernetes.io/not-ready" || key == "node.kubernetes.io/unreachable") return true;
  }
  return false;
}

std::unique_ptr<kube::Client> makeClient() {
  auto config = kube::loadKubeconfig({cluster().kubeconfigPath().string(), ""});
  EXPECT_TRUE(config.ok()) << config.error().describe();
  if (!config.ok()) return nullptr;
  auto transport = kube::makeTransport(*config);
  EXPECT_TRUE(transport.ok()) << transport.error().describe();
  if (!transport.ok()) return nullptr;
  return std::make_unique<kube::Client>(*transport);
}

class SimKubeletTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    client_ = makeClient().release();
    ASSERT_NE(client_, nullptr);
    auto ns = client_->create(kube::kNamespaces, "", {{"metadata", {{"name", kNamespace}}}});
    ASSERT_TRUE(ns.ok() || ns.error().code == util::ErrorCode::kAlreadyExists) << ns.error().describe();
    kubelet_ = startSimKubelet("simtest-").release();
  }
  static void TearDownTestSuite() {
    // Leave the shared cluster as we found it: the namespace's pods deleted while our kubelet still finishes their
    // deletion, then no NotReady node left behind for later tests.
    if (client_ != nullptr) {
      (void)client_->remove(kube::kNamespaces, "", kNamespace);
      eventually(
          [] {
            auto pods = client_->list(kube::kPods, kNamespace);
            return pods.ok() && (*pods)["items"].empty();
          },
          20s);
    }
    if (kubelet_ != nullptr) {
      kubelet_->signal(SIGTERM);
      kubelet_->wait(10s);
      if (::testing::Test::HasFailure()) std::cerr << "sim kubelet stderr:\n" << kubelet_->stderrText();
    }
    delete kubelet_;
    kubelet_ = nullptr;
    if (client_ != nullptr) (void)client_->remove(kube::kNodes, "", kNode);
    delete client_;
    client_ = nullptr;
  }

  static kube::Client& client() { return *client_; }

  static Json get(const kube::Resource& resource, const std::string& ns, const std::string& name) {
    auto object = client_->get(resource, ns, name);
    return object.ok() ? *object : Json();
  }
  static Json pod(const std::string& name) { return get(kube::kPods, kNamespace, name); }
  static Json node() { return get(kube::kNodes, "", kNode); }

  // Creates a pod; bound to our node directly when `bind`, else left to kube-scheduler. Retries while the
  // namespace's default service account does not exist yet.
  static Json createPod(const std::string& name, bool bind) {
    Json spec = {{"containers", {{{"name", "app"}, {"image", "busybox:1"}}}},
                 {"nodeSelector", {{"kubernetes.io/hostname", kNode}}},
                 {"terminationGracePeriodSeconds", 30}};
    if (bind) spec["nodeName"] = kNode;
    const Json object = {{"metadata", {{"name", name}, {"namespace", kNamespace}}}, {"spec", spec}};
    util::Result<Json> created = util::makeError(util::ErrorCode::kInternal, "not tried");
    eventually(
        [&] {
          created = client_->create(kube::kPods, kNamespace, object);
          return created.ok() || created.error().code == util::ErrorCode::kAlreadyExists;
        },
        30s);
    EXPECT_TRUE(created.ok()) << name << ": " << created.error().describe();
    return created.ok() ? *created : Json();
  }

  static void annotatePod(const std::string& name, const std::string& key, const Json& value) {
    auto patched =
        client_->mergePatch(kube::kPods, kNamespace, name, {{"metadata", {{"annotations", {{key, value}}}}}});
    ASSERT_TRUE(patched.ok()) << patched.error().describe();
  }

  static bool podReady(const std::string& name) {
    const Json p = pod(name);
    return p.is_object() && p["status"].value("phase", "") == "Running" && conditionStatus(p, "Ready") == "True";
  }

  static inline kube::Client* client_ = nullptr;
  static inline Process* kubelet_ = nullptr;
};

TEST(SimKubeletCli, HelpAndBadFlags) {
  Process help({simKubeletBinary(), "--help"});
  EXPECT_EQ(help.wait(10s), 0);
  ASSERT_TRUE(eventually([&] { return !help.lines().empty(); }, 5s));
  EXPECT_NE(help.lines()[0].find("singleton-sim-kubelet"), std::string::npos);

  Process bad({simKubeletBinary(), "--nodes", "zero"});
  EXPECT_EQ(bad.wait(10s), 2);
  // stderr is read on a thread of its own, which may still be catching up when wait() returns.
  eventually([&] { return bad.stderrText().find('\n') != std::string::npos; }, 5s);
  const std::string err = bad.stderrText();
  EXPECT_NE(err.find("--nodes"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST_F(SimKubeletTest, NodeIsReadySchedulableAndLeased) {
  ASSERT_TRUE(eventually([] { return conditionStatus(node(), "Ready") == "True" && !hasNotReadyTaint(node()); }, 30s))
      << node().dump(2);
  const Json n = node();
  EXPECT_EQ(n["status"]["allocatable"].value("cpu", ""), "32");
  EXPECT_EQ(n["status"]["allocatable"].value("memory", ""), "256Gi");
  EXPECT_EQ(n["status"]["allocatable"].value("pods", ""), "1k");  // 1000, as the apiserver writes quantities
  for (const char* type : {"MemoryPressure", "DiskPressure", "PIDPressure"})
    EXPECT_EQ(conditionStatus(n, type), "False");

  // A heartbeat writes the node's status first and its Lease right after: the Lease may be a moment behind.
  auto lease = client().getLease("kube-node-lease", kNode);
  eventually(
      [&] {
        lease = client().getLease("kube-node-lease", kNode);
        return lease.ok();
      },
      10s);
  ASSERT_TRUE(lease.ok()) << lease.error().describe();
  EXPECT_EQ(lease->spec.holder_identity, kNode);
  EXPECT_EQ(lease->spec.lease_duration_seconds, 40);
  // The heartbeat renews the Lease and the Ready condition's heartbeat time (every 2 s by default).
  const auto first_renew = lease->spec.renew_time;
  const std::string first_heartbeat = conditionStatus(n, "Ready", "lastHeartbeatTime");
  EXPECT_TRUE(eventually(
      [&] {
        auto again = client().getLease("kube-node-lease", kNode);
        return again.ok() && again->spec.renew_time != first_renew &&
               conditionStatus(node(), "Ready", "lastHeartbeatTime") != first_heartbeat;
      },
      10s));
}

TEST_F(SimKubeletTest, ScheduledPodRunsAndIsReady) {
  createPod("scheduled", /*bind=*/false);
  ASSERT_TRUE(eventually([] { return podReady("scheduled"); }, 30s)) << pod("scheduled").dump(2);
  const Json p = pod("scheduled");
  EXPECT_EQ(p["spec"].value("nodeName", ""), kNode);  // bound by kube-scheduler
  const Json& status = p["status"];
  EXPECT_EQ(status.value("hostIP", ""), "127.0.0.1");
  EXPECT_EQ(status.value("podIP", "").rfind("10.244.", 0), 0u) << status.dump();
  EXPECT_FALSE(status.value("startTime", "").empty());
  for (const char* type : {"PodScheduled", "Initialized", "ContainersReady", "Ready"}) {
    EXPECT_EQ(conditionStatus(p, type), "True") << type;
  }
  ASSERT_EQ(status["containerStatuses"].size(), 1u);
  const Json& c = status["containerStatuses"][0];
  EXPECT_TRUE(c.value("ready", false));
  EXPECT_TRUE(c.value("started", false));
  EXPECT_EQ(c.value("containerID", ""), "sim://" + p["metadata"].value("uid", "") + "/app");
  EXPECT_TRUE(c["state"].contains("running"));
}

TEST_F(SimKubeletTest, ReadyAnnotationFailsAndRestoresReadiness) {
  createPod("flaky", /*bind=*/true);
  ASSERT_TRUE(eventually([] { return podReady("flaky"); }, 30s));

  annotatePod("flaky", "sim.singleton.dev/ready", "false");
  ASSERT_TRUE(eventually([] { return conditionStatus(pod("flaky"), "Ready") == "False"; }, 10s));
  const Json failed = pod("flaky");
  EXPECT_EQ(conditionStatus(failed, "Ready", "reason"), "SimulatedFailure");
  EXPECT_EQ(conditionStatus(failed, "ContainersReady"), "False");
  EXPECT_EQ(failed["status"].value("phase", ""), "Running");

  annotatePod("flaky", "sim.singleton.dev/ready", "true");
  EXPECT_TRUE(eventually([] { return podReady("flaky"); }, 10s));
  annotatePod("flaky", "sim.singleton.dev/ready", "false");
  ASSERT_TRUE(eventually([] { return conditionStatus(pod("flaky"), "Ready") == "False"; }, 10s));
  annotatePod("flaky", "sim.singleton.dev/ready", nullptr);  // removed
  EXPECT_TRUE(eventually([] { return podReady("flaky"); }, 10s));
}

TEST_F(SimKubeletTest, PhaseAnnotationFailsThePod) {
  createPod("doomed", /*bind=*/true);
  ASSERT_TRUE(eventually([] { return podReady("doomed"); }, 30s));
  annotatePod("doomed", "sim.singleton.dev/phase", "Failed");
  ASSERT_TRUE(eventually([] { return pod("doomed")["status"].value("phase", "") == "Failed"; }, 10s));
  EXPECT_EQ(conditionStatus(pod("doomed"), "Ready"), "False");
}

TEST_F(SimKubeletTest, GracefulDeletionCompletes) {
  createPod("doomed-gracefully", /*bind=*/true);
  ASSERT_TRUE(eventually([] { return podReady("doomed-gracefully"); }, 30s));
  const auto started = Clock::now();
  ASSERT_TRUE(client().remove(kube::kPods, kNamespace, "doomed-gracefully").ok());  // grace period 30 s
  ASSERT_TRUE(eventually(
      [] {
        auto p = client().get(kube::kPods, kNamespace, "doomed-gracefully");
        return !p.ok() && p.error().code == util::ErrorCode::kNotFound;
      },
      5s));
  std::cout << "graceful deletion completed in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() << " ms\n";
}

// Bound -> Ready as a client sees it: from the create's answer (the pod is bound, nodeName set) to the watch event
// that shows it Ready.
TEST_F(SimKubeletTest, EveryBoundPodTurnsReady) {
  constexpr int kPods = 50;
  std::mutex mutex;
  std::map<std::string, Clock::time_point> ready_at;
  watch::Cache cache;
  cache.addListener([&](const watch::Event& event) {
    if (conditionStatus(event.object, "Ready") != "True") return;
    std::lock_guard lock(mutex);
    ready_at.try_emplace(event.object["metadata"].value("name", ""), Clock::now());
  });
  watch::ReflectorOptions options;
  options.ns = kNamespace;
  options.label_selector = "bench=latency";
  watch::Reflector reflector(client(), kube::kPods, options, cache);
  std::jthread watcher([&](std::stop_token stop) { reflector.run(stop); });
  ASSERT_TRUE(eventually([&] { return cache.hasSynced(); }, 10s));

  std::map<std::string, Clock::time_point> created_at;
  for (int i = 0; i < kPods; ++i) {
    const std::string name = "latency-" + std::to_string(i);
    const Json object = {{"metadata", {{"name", name}, {"namespace", kNamespace}, {"labels", {{"bench", "latency"}}}}},
                         {"spec", {{"nodeName", kNode}, {"containers", {{{"name", "app"}, {"image", "busybox:1"}}}}}}};
    auto created = client().create(kube::kPods, kNamespace, object);
    ASSERT_TRUE(created.ok()) << created.error().describe();
    created_at[name] = Clock::now();
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mutex);
        return ready_at.size() == kPods;
      },
      60s));
  std::vector<double> millis;
  {
    std::lock_guard lock(mutex);
    for (const auto& [name, at] : created_at) {
      millis.push_back(std::chrono::duration<double, std::milli>(ready_at.at(name) - at).count());
    }
  }
  std::sort(millis.begin(), millis.end());
  const double p50 = millis[millis.size() / 2];
  const double p99 = millis[millis.size() * 99 / 100];
  std::cout << "bound -> Ready over " << kPods << " pods: p50 " << p50 << " ms, p99 " << p99 << " ms, max "
            << millis.back() << " ms\n";
  RecordProperty("bound_to_ready_p50_ms", std::to_string(p50));
  RecordProperty("bound_to_ready_p99_ms", std::to_string(p99));
  // Figures only: speed is the benchmarks' business (make bench-operator), a test on a shared machine asserts none.
}

// Runs last in this suite: the node is lost for a while.
TEST_F(SimKubeletTest, StoppedHeartbeatLosesTheNodeAndItsPodsReadiness) {
  createPod("on-lost-node", /*bind=*/true);
  ASSERT_TRUE(eventually([] { return podReady("on-lost-node"); }, 30s));

  auto annotate = [](const Json& value) {
    auto patched = client().mergePatch(kube::kNodes, "", kNode,
                                       {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", value}}}}}});
    ASSERT_TRUE(patched.ok()) << patched.error().describe();
  };
  annotate("stopped");
  const auto stopped_at = Clock::now();
  // --node-monitor-grace-period=10s, then the controller marks the node Unknown and its pods not ready.
  ASSERT_TRUE(eventually(
      [] {
        return conditionStatus(node(), "Ready") == "Unknown" &&
               conditionStatus(pod("on-lost-node"), "Ready") == "False";
      },
      60s))
      << node()["status"].dump(2) << "\n"
      << pod("on-lost-node")["status"].dump(2);
  std::cout << "node Unknown and pod not ready "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stopped_at).count()
            << " ms after the heartbeat stopped\n";
  // The lost node's kubelet writes nothing: the pod stays not ready.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(conditionStatus(pod("on-lost-node"), "Ready"), "False");

  annotate(nullptr);
  EXPECT_TRUE(eventually(
      [] {
        const Json n = node();
        return conditionStatus(n, "Ready") == "True" && !hasNotReadyTaint(n) && podReady("on-lost-node");
      },
      30s))
      << node().dump(2) << "\n"
      << pod("on-lost-node")["status"].dump(2);
}

// A kubelet of its own (another node): --ready-delay, then SIGTERM exits 0.
TEST(SimKubeletProcess, ReadyDelayThenSigtermExitsZero) {
  std::unique_ptr<kube::Client> client = makeClient();
  ASSERT_TRUE(client);
  auto kubelet = startSimKubelet("simdelay-", {"--ready-delay", "1500ms"});
  ASSERT_TRUE(eventually([&] { return kubelet->stderrText().find("ready:") != std::string::npos; }, 30s))
      << kubelet->stderrText();
  const Json object = {{"metadata", {{"name", "sim-kubelet-delayed"}, {"namespace", "default"}}},
                       {"spec", {{"nodeName", "simdelay-0"}, {"containers", {{{"name", "app"}, {"image", "x"}}}}}}};
  ASSERT_TRUE(eventually([&] { return client->create(kube::kPods, "default", object).ok(); }, 30s));
  auto readiness = [&] {
    auto pod = client->get(kube::kPods, "default", "sim-kubelet-delayed");
    if (!pod.ok()) return std::string();
    return (*pod)["status"].value("phase", "") + " " + conditionStatus(*pod, "Ready");
  };
  ASSERT_TRUE(eventually([&] { return readiness() == "Running False"; }, 10s)) << readiness();
  const auto running_at = Clock::now();
  ASSERT_TRUE(eventually([&] { return readiness() == "Running True"; }, 10s)) << readiness();
  EXPECT_GT(Clock::now() - running_at, 1000ms);

  ASSERT_TRUE(client->remove(kube::kPods, "default", "sim-kubelet-delayed").ok());
  EXPECT_TRUE(eventually([&] { return readiness().empty(); }, 10s));
  kubelet->signal(SIGTERM);
  EXPECT_EQ(kubelet->wait(10s), 0) << kubelet->stderrText();
  (void)client->remove(kube::kNodes, "", "simdelay-0");
}

}  // namespace
}  // namespace singleton::testing
