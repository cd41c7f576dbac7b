#include "support/operator_harness.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "kube/config.h"
#include "util/duration.h"

namespace singleton::testing {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const kube::Resource kWorkloads{"singleton.dev", "v1alpha1", "singletonworkloads", true};

std::string tailOfFile(const std::filesystem::path& path, std::size_t lines) {
  std::ifstream in(path);
  if (!in) return "(no " + path.string() + ")\n";
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

std::string conditionStatus(const Json& object, const std::string& type) {
  if (!object.is_object() || !object.contains("status")) return "";
  for (const Json& c : object["status"].value("conditions", Json::array())) {
    if (c.value("type", "") == type) return c.value("status", "");
  }
  return "";
}

std::string lowerDns(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  if (out.size() > 55) out = out.substr(0, 55);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace

std::string operatorBinary() { return std::string(SINGLETON_BINARY_DIR) + "/operator/singleton-operator"; }
std::string simKubeletBinary() { return std::string(SINGLETON_BINARY_DIR) + "/e2e/kubelet/singleton-sim-kubelet"; }

bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout,
                std::chrono::milliseconds period) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(period);
  }
  return check();
}

Json workloadObject(const std::string& ns, const std::string& name, int replicas, const Json& spec) {
  Json object = {
      {"apiVersion", "singleton.dev/v1alpha1"},
      {"kind", "SingletonWorkload"},
      {"metadata", {{"name", name}, {"namespace", ns}}},
      {"spec",
       {{"replicas", replicas},
        {"template",
         {{"metadata", {{"labels", {{"app", name}}}}},
          {"spec",
           {{"terminationGracePeriodSeconds", 5},
            {"nodeSelector", {{kTestPoolKey, kTestPoolValue}}},
            {"tolerations", Json::array({{{"key", kTestPoolKey},
                                          {"operator", "Equal"},
                                          {"value", kTestPoolValue},
                                          {"effect", "NoSchedule"}}})},
            {"containers",
             Json::array({{{"name", "main"}, {"image", "busybox:1.36"}, {"command", {"sleep", "1000000"}}}})}}}}}}}};
  for (auto it = spec.begin(); it != spec.end(); ++it) object["spec"][it.key()] = it.value();
  return object;
}

// --- OperatorHarness ----------------------------------------------------------------------------------------------

OperatorHarness::OperatorHarness(LocalCluster& cluster, Options options)
    : cluster_(cluster), options_(std::move(options)) {
  operators_.resize(static_cast<std::size_t>(options_.operators));
}

OperatorHarness::OperatorHarness(LocalCluster& cluster) : OperatorHarness(cluster, Options{}) {}

OperatorHarness::~OperatorHarness() { stop(); }

std::chrono::milliseconds OperatorHarness::leaseDuration() const {
  auto d = util::parseDuration(options_.lease_duration);
  return d.ok() ? std::chrono::duration_cast<std::chrono::milliseconds>(*d) : 15s;
}

std::chrono::milliseconds OperatorHarness::retryPeriod() const {
  auto d = util::parseDuration(options_.retry_period);
  return d.ok() ? std::chrono::duration_cast<std::chrono::milliseconds>(*d) : 2s;
}

void OperatorHarness::start() {
  if (started_) return;
  started_ = true;
  log_dir_ = cluster_.dir() / "operator-logs";
  std::filesystem::create_directories(log_dir_);

  auto config = kube::loadKubeconfig({cluster_.kubeconfigPath().string(), ""});
  if (!config.ok()) throw std::runtime_error("kubeconfig: " + config.error().describe());
  auto transport = kube::makeTransport(*config);
  if (!transport.ok()) throw std::runtime_error("transport: " + transport.error().describe());
  transport_ = *transport;
  client_ = std::make_unique<kube::Client>(transport_);

  // The CRD, Established.
  const std::string crd = std::string(SINGLETON_SOURCE_DIR) + "/crds/singleton.dev_singletonworkloads.yaml";
  if (auto r = cluster_.kubectl({"apply", "-f", crd}); !r.ok()) throw std::runtime_error("apply CRD: " + r.err);
  // Not `kubectl wait`: 1.20's fails at once when it reads the CRD before any condition is written.
  const std::vector<std::string> established = {"get", "crd", "singletonworkloads.singleton.dev", "-o",
                                                R"(jsonpath={.status.conditions[?(@.type=="Established")].status})"};
  CommandResult last;
  if (!eventually([&] { return (last = cluster_.kubectl(established)).ok() && last.out == "True"; }, 60s, 200ms)) {
    throw std::runtime_error("CRD not Established: Established=" + last.out + " " + last.err);
  }
  // The CRD's discovery must reach the operator's informers too: a list answers once it is served.
  if (!eventually([&] { return client_->list(kWorkloads, "").ok(); }, 30s, 100ms)) {
    throw std::runtime_error("singletonworkloads are not served");
  }
  createNamespace(kOperatorNamespace);

  startKubelet();
  prepareNodes();
  for (int i = 0; i < operatorCount(); ++i) startOperator(i);
  if (!waitForOperatorLeader(leaseDuration() + 30s)) {
    throw std::runtime_error("no operator leader within " + options_.lease_duration + " + 30s\n" + diagnostics());
  }
}

void OperatorHarness::stop() noexcept {
  if (!started_) return;
  started_ = false;
  try {
    for (auto& r : operators_) {
      if (r.process && r.process->running()) r.process->signal(SIGTERM);
    }
    for (auto& r : operators_) {
      if (r.process && !r.process->wait(10s)) r.process->signal(SIGKILL);
      if (r.process) r.process->wait(5s);
      r.process.reset();
    }
    if (kubelet_) {
      kubelet_->signal(SIGTERM);
      if (!kubelet_->wait(10s)) kubelet_->signal(SIGKILL);
      kubelet_->wait(5s);
      std::ofstream(log_dir_ / "sim-kubelet.log", std::ios::app) << kubelet_->stderrText();
      kubelet_.reset();
    }
  } catch (...) {
  }
}

// --- operators ----------------------------------------------------------------------------------------------------

std::filesystem::path OperatorHarness::operatorLogPath(int index) const {
  return log_dir_ / (identity(index) + ".log");
}

pid_t OperatorHarness::operatorPid(int index) const {
  const Replica& r = operators_.at(static_cast<std::size_t>(index));
  return r.process ? r.process->pid() : -1;
}

TcpProxy& OperatorHarness::operatorProxy(int index) {
  auto& r = operators_.at(static_cast<std::size_t>(index));
  if (!r.proxy)
    throw std::logic_error("operator " + std::to_string(index) + " has no proxy (Options::proxy_operators)");
  return *r.proxy;
}

ApiProxy& OperatorHarness::operatorApiProxy(int index) {
  auto& r = operators_.at(static_cast<std::size_t>(index));
  if (!r.api_proxy)
    throw std::logic_error("operator " + std::to_string(index) + " has no ApiProxy (Options::api_proxy_operators)");
  return *r.api_proxy;
}

void OperatorHarness::startOperator(int index) {
  Replica& r = operators_.at(static_cast<std::size_t>(index));
  if (r.process && r.process->running()) return;
  r.process.reset();
  r.health_port = 0;
  r.metrics_port = 0;
  const std::string log = operatorLogPath(index).string();
  { std::ofstream(log, std::ios::app) << "==== starting " << identity(index) << "\n"; }
  std::string kubeconfig = cluster_.kubeconfigPath().string();
  if (options_.api_proxy_operators && !r.api_proxy) {
    // Plain HTTP to the proxy, with the credentials of the cluster's kubeconfig (its admin token). The proxies outlive
    // restarts of their replica, so a test can keep one fault in place across them.
    r.api_proxy = std::make_unique<ApiProxy>(cluster_.apiserverPort());
    r.proxied_kubeconfig = log_dir_ / ("kubeconfig-api-" + identity(index));
    r.api_proxy->writeKubeconfig(cluster_.adminToken(), r.proxied_kubeconfig);
  }
  if (options_.proxy_operators && !r.proxy) {
    const std::filesystem::path upstream =
        r.api_proxy ? r.proxied_kubeconfig : std::filesystem::path(cluster_.kubeconfigPath());
    r.proxy = std::make_unique<TcpProxy>(r.api_proxy ? r.api_proxy->port() : cluster_.apiserverPort());
    r.proxied_kubeconfig = log_dir_ / ("kubeconfig-" + identity(index));
    r.proxy->writeKubeconfig(upstream, r.proxied_kubeconfig);
  }
  if (r.proxy || r.api_proxy) kubeconfig = r.proxied_kubeconfig.string();
  // sh execs the operator with its output appended to the log file, so the pid is the operator's.
  std::vector<std::string> argv = {"/bin/sh",
                                   "-c",
                                   "exec \"$0\" \"$@\" >>'" + log + "' 2>&1",
                                   operatorBinary(),
                                   "--kubeconfig",
                                   kubeconfig,
                                   "--identity",
                                   identity(index),
                                   "--leader-election-namespace",
                                   kOperatorNamespace,
                                   "--lease-duration",
                                   options_.lease_duration,
                                   "--renew-deadline",
                                   options_.renew_deadline,
                                   "--retry-period",
                                   options_.retry_period,
                                   "--health-probe-bind-address",
                                   "127.0.0.1:0",
                                   "--metrics-bind-address",
                                   "127.0.0.1:0",
                                   "--log-format",
                                   "json",
                                   "--log-level",
                                   options_.log_level};
  argv.insert(argv.end(), options_.extra_operator_args.begin(), options_.extra_operator_args.end());
  r.process = std::make_unique<Process>(argv);
}

bool OperatorHarness::operatorRunning(int index) {
  auto& r = operators_.at(static_cast<std::size_t>(index));
  return r.process && r.process->running();
}

void OperatorHarness::signalOperator(int index, int sig) {
  auto& r = operators_.at(static_cast<std::size_t>(index));
  if (r.process) r.process->signal(sig);
}

std::optional<int> OperatorHarness::waitOperatorExit(int index, std::chrono::milliseconds timeout) {
  auto& r = operators_.at(static_cast<std::size_t>(index));
  if (!r.process) return std::nullopt;
  return r.process->wait(timeout);
}

void OperatorHarness::ensureOperatorsRunning() {
  for (int i = 0; i < operatorCount(); ++i) {
    if (!operatorRunning(i)) startOperator(i);
  }
}

void OperatorHarness::readPorts(int index) const {
  Replica& r = operators_.at(static_cast<std::size_t>(index));
  if (r.health_port != 0 && r.metrics_port != 0) return;
  // The last "serving" lines of the log (this incarnation's come after the last "==== starting").
  std::ifstream in(operatorLogPath(index));
  std::string line;
  int health = 0, metrics = 0;
  while (std::getline(in, line)) {
    if (line.rfind("==== starting", 0) == 0) {
      health = metrics = 0;
      continue;
    }
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_object() || j.value("msg", "") != "serving") continue;
    const std::string address = j.value("address", "");
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) continue;
    const int port = std::atoi(address.c_str() + colon + 1);
    if (j.value("server", "") == "health") health = port;
    if (j.value("server", "") == "metrics") metrics = port;
  }
  r.health_port = health;
  r.metrics_port = metrics;
}

int OperatorHarness::healthPort(int index) const {
  readPorts(index);
  return operators_.at(static_cast<std::size_t>(index)).health_port;
}

int OperatorHarness::metricsPort(int index) const {
  readPorts(index);
  return operators_.at(static_cast<std::size_t>(index)).metrics_port;
}

std::pair<int, std::string> OperatorHarness::httpGet(int port, const std::string& path) const {
  if (port == 0) return {0, ""};
  auto r =
      runCommand({"curl", "-s", "-m", "5", "-w", "\n%{http_code}", "http://127.0.0.1:" + std::to_string(port) + path});
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return {0, ""};
  return {std::atoi(r.out.c_str() + nl + 1), r.out.substr(0, nl)};
}

std::string OperatorHarness::operatorLogTail(int index, std::size_t lines) const {
  return tailOfFile(operatorLogPath(index), lines);
}

std::optional<kube::Lease> OperatorHarness::operatorLease() {
  auto lease = client_->getLease(kOperatorNamespace, kOperatorLease);
  if (!lease.ok()) return std::nullopt;
  return *lease;
}

std::optional<int> OperatorHarness::operatorLeader() {
  auto lease = operatorLease();
  if (!lease) return std::nullopt;
  const std::string holder = lease->spec.holder_identity.value_or("");
  for (int i = 0; i < operatorCount(); ++i) {
    if (holder == identity(i)) return i;
  }
  return std::nullopt;
}

std::optional<int> OperatorHarness::waitForOperatorLeader(std::chrono::milliseconds timeout,
                                                          const std::string& not_this) {
  std::optional<int> found;
  eventually(
      [&] {
        found = operatorLeader();
        if (found && identity(*found) == not_this) found.reset();
        return found.has_value();
      },
      timeout, 10ms);
  return found;
}

// --- kubelet --------------------------------------------------------------------------------------------------

std::vector<std::string> OperatorHarness::nodeNames() const {
  std::vector<std::string> names;
  for (int i = 0; i < options_.nodes; ++i) names.push_back(options_.node_prefix + std::to_string(i));
  return names;
}

void OperatorHarness::startKubelet() {
  kubelet_ = std::make_unique<Process>(std::vector<std::string>{
      simKubeletBinary(), "--kubeconfig", cluster_.kubeconfigPath().string(), "--nodes", std::to_string(options_.nodes),
      "--node-prefix", options_.node_prefix, "--heartbeat", options_.heartbeat});
  ++kubelet_starts_;
}

void OperatorHarness::prepareNodes() {
  for (const auto& node : nodeNames()) {
    bool ready = eventually(
        [&] {
          auto n = client_->get(kube::kNodes, "", node);
          return n.ok() && conditionStatus(*n, "Ready") == "True";
        },
        60s, 50ms);
    if (!ready) throw std::runtime_error("node " + node + " not Ready\n" + kubeletLogTail());
    // Drop a heartbeat command a failed earlier test may have left behind.
    (void)client_->mergePatch(kube::kNodes, "", node,
                              {{"metadata",
                                {{"labels", {{kTestPoolKey, kTestPoolValue}}},
                                 {"annotations", {{"sim.singleton.dev/heartbeat", nullptr}}}}}});
    auto current = client_->get(kube::kNodes, "", node);
    if (!current.ok()) throw std::runtime_error("node " + node + ": " + current.error().describe());
    bool tainted = false;
    for (const Json& t : (*current)["spec"].value("taints", Json::array())) {
      if (t.value("key", "") == kTestPoolKey) tainted = true;
    }
    if (!tainted) {
      auto r = cluster_.kubectl(
          {"taint", "node", node, std::string(kTestPoolKey) + "=" + kTestPoolValue + ":NoSchedule", "--overwrite"});
      if (!r.ok()) throw std::runtime_error("taint " + node + ": " + r.err);
    }
  }
}

std::string OperatorHarness::kubeletLogTail(std::size_t lines) const {
  if (!kubelet_) return "";
  std::istringstream in(kubelet_->stderrText());
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

// --- objects --------------------------------------------------------------------------------------------------

void OperatorHarness::createNamespace(const std::string& ns) {
  auto r = client_->create(kube::kNamespaces, "", {{"metadata", {{"name", ns}}}});
  if (!r.ok() && r.error().code != util::ErrorCode::kAlreadyExists) {
    throw std::runtime_error("namespace " + ns + ": " + r.error().describe());
  }
}

util::Result<Json> OperatorHarness::createWorkload(const Json& object) {
  return client_->create(kWorkloads, object["metadata"].value("namespace", "default"), object);
}

std::optional<Json> OperatorHarness::getWorkload(const std::string& ns, const std::string& name) {
  auto r = client_->get(kWorkloads, ns, name);
  if (!r.ok()) return std::nullopt;
  return *r;
}

std::vector<Json> OperatorHarness::listPods(const std::string& ns, const std::string& workload) {
  kube::ListOptions options;
  options.label_selector = "singleton.dev/workload=" + workload;
  auto r = client_->list(kube::kPods, ns, options);
  if (!r.ok()) return {};
  std::vector<Json> pods((*r)["items"].begin(), (*r)["items"].end());
  std::sort(pods.begin(), pods.end(), [](const Json& a, const Json& b) {
    return a["metadata"].value("name", "") < b["metadata"].value("name", "");
  });
  return pods;
}

std::optional<Json> OperatorHarness::getPod(const std::string& ns, const std::string& name) {
  auto r = client_->get(kube::kPods, ns, name);
  if (!r.ok()) return std::nullopt;
  return *r;
}

std::optional<Json> OperatorHarness::getLease(const std::string& ns, const std::string& name) {
  auto r = client_->get(kube::kLeases, ns, name);
  if (!r.ok()) return std::nullopt;
  return *r;
}

std::optional<Json> OperatorHarness::getService(const std::string& ns, const std::string& name) {
  auto r = client_->get(kube::kServices, ns, name);
  if (!r.ok()) return std::nullopt;
  return *r;
}

std::vector<Json> OperatorHarness::events(const std::string& ns, const std::string& name, const std::string& kind) {
  kube::ListOptions options;
  options.field_selector = "involvedObject.name=" + name;
  if (!kind.empty()) options.field_selector += ",involvedObject.kind=" + kind;
  auto r = client_->list(kube::kEvents, ns, options);
  if (!r.ok()) return {};
  return std::vector<Json>((*r)["items"].begin(), (*r)["items"].end());
}

std::string OperatorHarness::diagnostics() const {
  std::ostringstream out;
  out << "---- operator logs in " << log_dir_.string() << "\n";
  for (int i = 0; i < static_cast<int>(operators_.size()); ++i) {
    out << "---- " << identity(i) << " (last lines):\n" << operatorLogTail(i, 40);
  }
  out << "---- sim kubelet (last lines):\n" << kubeletLogTail(20);
  return out.str();
}

// --- OperatorTest -------------------------------------------------------------------------------------------------

OperatorHarness* OperatorTest::harness_ = nullptr;
std::vector<std::string> OperatorTest::namespaces_;

void OperatorTest::SetUpTestSuite() { startHarness(OperatorHarness::Options{}); }

void OperatorTest::startHarness(OperatorHarness::Options options) {
  harness_ = new OperatorHarness(singleton::testing::cluster(), std::move(options));
  try {
    harness_->start();
  } catch (const std::exception& e) {
    FAIL() << "operator harness did not start: " << e.what();
  }
}

void OperatorTest::TearDownTestSuite() {
  if (harness_ == nullptr) return;
  // Delete this suite's namespaces while the kubelet still finishes the pods' deletions, so the shared cluster is
  // left as found.
  for (const auto& ns : namespaces_) (void)harness_->client().remove(kube::kNamespaces, "", ns);
  for (const auto& ns : namespaces_) {
    eventually([&] { return !harness_->client().get(kube::kNamespaces, "", ns).ok(); }, 60s, 200ms);
  }
  namespaces_.clear();
  harness_->stop();
  delete harness_;
  harness_ = nullptr;
}

void OperatorTest::SetUp() {
  ASSERT_NE(harness_, nullptr);
  harness_->ensureOperatorsRunning();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  ns_ = lowerDns(std::string("op-") + info->name());
  namespaces_.push_back(ns_);
  ASSERT_NO_THROW(harness_->createNamespace(ns_));
  auditor_ = std::make_unique<LeaderAuditor>(harness_->transport(), ns_);
  ASSERT_TRUE(auditor_->start(30s)) << "the auditor's pod watch did not sync";
}

void OperatorTest::TearDown() {
  if (auditor_) {
    const auto violations = auditor_->violations();
    EXPECT_TRUE(violations.empty()) << "leader auditor violations:\n"
                                    << [&] {
                                         std::string all;
                                         for (const auto& v : violations) all += "  " + v + "\n";
                                         return all;
                                       }();
    auditor_->stop();
  }
  if (HasFailure() && harness_ != nullptr) {
    std::cerr << "==== diagnostics for " << ns_ << "\n" << harness_->diagnostics();
    auto pods = harness_->client().list(kube::kPods, ns_);
    if (pods.ok()) {
      std::cerr << "---- pods in " << ns_ << ":\n";
      for (const Json& p : (*pods)["items"]) {
        const auto v = podView(p);
        std::cerr << "  " << v.name << " role=" << v.role << " token=" << v.token.value_or("-") << " ready=" << v.ready
                  << " node=" << v.node << " terminating=" << v.terminating << "\n";
      }
    }
  }
  // Workloads go now (garbage collection removes their pods); the namespace at the end of the suite.
  (void)harness_->client().raw("DELETE", "/apis/singleton.dev/v1alpha1/namespaces/" + ns_ + "/singletonworkloads");
  auditor_.reset();
}

Json OperatorTest::workloadObject(const std::string& name, int replicas, const Json& spec) const {
  return singleton::testing::workloadObject(ns_, name, replicas, spec);
}

Json OperatorTest::createWorkload(const Json& object) {
  auto r = harness().createWorkload(object);
  if (!r.ok()) {
    ADD_FAILURE() << "create workload: " << r.error().describe();
    return Json();
  }
  return *r;
}

CommandResult OperatorTest::kubectl(std::vector<std::string> args) const {
  args.push_back("-n");
  args.push_back(ns_);
  return harness_->cluster().kubectl(args);
}

std::string OperatorTest::conditionOf(const Json& workload, const std::string& type, const char* field) {
  if (!workload.is_object() || !workload.contains("status")) return "";
  for (const Json& c : workload["status"].value("conditions", Json::array())) {
    if (c.value("type", "") == type) return c.value(field, "");
  }
  return "";
}

std::optional<Json> OperatorTest::waitForStatus(const std::string& workload,
                                                const std::function<bool(const Json&)>& check,
                                                std::chrono::milliseconds timeout) {
  std::optional<Json> found;
  eventually(
      [&] {
        found = getWorkload(workload);
        return found && check(*found);
      },
      timeout, 50ms);
  if (found && !check(*found)) return std::nullopt;
  return found;
}

bool OperatorTest::waitForPodsReady(const std::string& workload, int replicas, std::chrono::milliseconds timeout) {
  return auditor().waitUntil(
      [&](const LeaderAuditor::State& s) {
        auto it = s.workloads.find(workload);
        if (it == s.workloads.end() || static_cast<int>(it->second.pods.size()) != replicas) return false;
        for (const auto& [name, p] : it->second.pods) {
          if (!p.ready || p.terminating) return false;
        }
        return true;
      },
      timeout);
}

std::optional<LeaderAuditor::PodView> OperatorTest::waitForSteadyLeader(const std::string& workload,
                                                                        std::chrono::milliseconds timeout) {
  std::optional<LeaderAuditor::PodView> leader;
  const bool steady = eventually(
      [&] {
        leader = auditor().currentLeader(workload);
        if (!leader || !leader->ready || leader->terminating || !leader->token) return false;
        auto lease = getLease(workload + "-leader");
        if (!lease) return false;
        const Json& spec = (*lease)["spec"];
        if (spec.value("holderIdentity", "") != leader->name) return false;
        if (std::to_string(spec.value("leaseTransitions", -1)) != *leader->token) return false;
        auto w = getWorkload(workload);
        if (!w) return false;
        const Json status = w->value("status", Json::object());
        return status.value("leader", "") == leader->name &&
               std::to_string(status.value("fencingToken", -1)) == *leader->token;
      },
      timeout, 50ms);
  if (!steady) return std::nullopt;
  return leader;
}

}  // namespace singleton::testing
