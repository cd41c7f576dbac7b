// singleton-sim-kubelet's process pods on a real control plane: a pod whose container names a host executable runs
// as a real process with its env (downward API), a service-account token from the TokenRequest API that the apiserver
// accepts (in-cluster files in a private mount namespace), stdout in its log file, Ready from an exec readiness probe,
// SIGTERM on deletion (the pod goes only once the process has exited), SIGKILL after the grace, restartPolicy, and
// no process outliving the kubelet.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "kube/config.h"
#include "support/cluster_fixture.h"
#include "support/process.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

constexpr const char* kNamespace = "sim-process-test";
constexpr const char* kNode = "proctest-0";
constexpr const char* kServiceAccount = "runner";
constexpr const char* kSaDir = "/var/run/secrets/kubernetes.io/serviceaccount";

const kube::Resource kServiceAccounts{"", "v1", "serviceaccounts", true};
const kube::Resource kRoles{"rbac.authorization.k8s.io", "v1", "roles", true};
const kube::Resource kRoleBindings{"rbac.authorization.k8s.io", "v1", "rolebindings", true};

std::string simKubeletBinary() { return std::string(SINGLETON_BINARY_DIR) + "/e2e/kubelet/singleton-sim-kubelet"; }

bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return check();
}

std::string conditionStatus(const Json& object, const std::string& type) {
  if (!object.is_object() || !object.contains("status")) return "";
  for (const Json& c : object["status"].value("conditions", Json::array())) {
    if (c.value("type", "") == type) return c.value("status", "");
  }
  return "";
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A TCP port on 127.0.0.1 that was free a moment ago.
int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

bool processAlive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

std::unique_ptr<kube::Client> makeClient() {
  auto config = kube::loadKubeconfig({cluster().kubeconfigPath().string(), ""});
  EXPECT_TRUE(config.ok()) << config.error().describe();
  if (!config.ok()) return nullptr;
  auto transport = kube::makeTransport(*config);
  EXPECT_TRUE(transport.ok()) << transport.error().describe();
  if (!transport.ok()) return nullptr;
  return std::make_unique<kube::Client>(*transport);
}

class SimKubeletProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    client_ = makeClient().release();
    ASSERT_NE(client_, nullptr);
    log_dir_ = new fs::path(fs::temp_directory_path() / ("sim-process-test-" + std::to_string(::getpid())));
    fs::create_directories(*log_dir_);
    auto ns = client_->create(kube::kNamespaces, "", {{"metadata", {{"name", kNamespace}}}});
    ASSERT_TRUE(ns.ok() || ns.error().code == util::ErrorCode::kAlreadyExists) << ns.error().describe();
    // The pods' service account may read pods in the namespace, nothing else: what the token check calls.
    auto sa = client_->create(kServiceAccounts, kNamespace, {{"metadata", {{"name", kServiceAccount}}}});
    ASSERT_TRUE(sa.ok() || sa.error().code == util::ErrorCode::kAlreadyExists) << sa.error().describe();
    auto role = client_->create(
        kRoles, kNamespace,
        {{"metadata", {{"name", "pod-reader"}}},
         {"rules", Json::array({{{"apiGroups", {""}}, {"resources", {"pods"}}, {"verbs", {"get", "list"}}}})}});
    ASSERT_TRUE(role.ok() || role.error().code == util::ErrorCode::kAlreadyExists) << role.error().describe();
    auto binding = client_->create(
        kRoleBindings, kNamespace,
        {{"metadata", {{"name", "runner-reads-pods"}}},
         {"roleRef", {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "Role"}, {"name", "pod-reader"}}},
         {"subjects",
          Json::array({{{"kind", "ServiceAccount"}, {"name", kServiceAccount}, {"namespace", kNamespace}}})}});
    ASSERT_TRUE(binding.ok() || binding.error().code == util::ErrorCode::kAlreadyExists) << binding.error().describe();
    kubelet_ = new Process({simKubeletBinary(), "--kubeconfig", cluster().kubeconfigPath().string(), "--node-prefix",
                            "proctest-", "--pod-log-dir", log_dir_->string(), "--restart-backoff", "1s",
                            "--token-refresh", "2s"});
  }
  static void TearDownTestSuite() {
    if (client_ != nullptr) {
      (void)client_->remove(kube::kNamespaces, "", kNamespace);
      eventually(
          [] {
            auto pods = client_->list(kube::kPods, kNamespace);
            return pods.ok() && (*pods)["items"].empty();
          },
          60s);
    }
    if (kubelet_ != nullptr) {
      kubelet_->signal(SIGTERM);
      kubelet_->wait(20s);
      if (::testing::Test::HasFailure()) std::cerr << "sim kubelet stderr:\n" << kubelet_->stderrText();
    }
    delete kubelet_;
    kubelet_ = nullptr;
    if (client_ != nullptr) (void)client_->remove(kube::kNodes, "", kNode);
    delete client_;
    client_ = nullptr;
    if (log_dir_ != nullptr && !::testing::Test::HasFailure()) {
      std::error_code error;
      fs::remove_all(*log_dir_, error);
    }
    delete log_dir_;
    log_dir_ = nullptr;
  }

  static Json pod(const std::string& name) {
    auto object = client_->get(kube::kPods, kNamespace, name);
    return object.ok() ? *object : Json();
  }
  static bool gone(const std::string& name) {
    auto object = client_->get(kube::kPods, kNamespace, name);
    return !object.ok() && object.error().code == util::ErrorCode::kNotFound;
  }

  // A pod bound to our node whose one container "app" runs `/bin/sh -c script`; `extra` is merged into the
  // container, `spec_extra` into the pod spec.
  static Json createPod(const std::string& name, const std::string& script, const Json& extra = Json::object(),
                        const Json& spec_extra = Json::object()) {
    Json container = {
        {"name", "app"},
        {"image", "host"},
        {"command", {"/bin/sh", "-c", script}},
        {"env", Json::array({{{"name", "POD_NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}},
                             {{"name", "POD_NAMESPACE"},
                              {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.namespace"}}}}}}})}};
    container.merge_patch(extra);
    Json spec = {{"containers", Json::array({container})},
                 {"nodeName", kNode},
                 {"serviceAccountName", kServiceAccount},
                 {"terminationGracePeriodSeconds", 30}};
    spec.merge_patch(spec_extra);
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

  static fs::path logFile(const Json& created, const std::string& container = "app") {
    return *log_dir_ /
           (std::string(kNamespace) + "_" + created["metadata"].value("name", "") + "_" +
            created["metadata"].value("uid", "")) /
           (container + ".log");
  }

  static Json containerStatus(const Json& p) {
    if (!p.is_object() || !p.contains("status")) return Json::object();
    for (const Json& s : p["status"].value("containerStatuses", Json::array())) {
      if (s.value("name", "") == "app") return s;
    }
    return Json::object();
  }
  static bool running(const Json& p) {
    const Json s = containerStatus(p);
    return p.is_object() && p["status"].value("phase", "") == "Running" && s.contains("state") &&
           s["state"].contains("running");
  }
  static pid_t pidOf(const Json& p) {
    const std::string id = containerStatus(p).value("containerID", "");
    return id.rfind("process://", 0) == 0 ? static_cast<pid_t>(std::stol(id.substr(10))) : -1;
  }

  static void dumpOnFailure(const std::string& name, const fs::path& log) {
    if (::testing::Test::HasFailure()) {
      std::cerr << "pod " << name << ":\n" << pod(name).dump(2) << "\nlog " << log << ":\n" << readFile(log) << "\n";
    }
  }

  static inline kube::Client* client_ = nullptr;
  static inline Process* kubelet_ = nullptr;
  static inline fs::path* log_dir_ = nullptr;
};

TEST_F(SimKubeletProcessTest, RunsWithDownwardEnvServiceAccountTokenAndLogs) {
  const std::string script = std::string(R"sh(
echo "POD_NAME=$POD_NAME"
echo "NAMESPACE_FILE=$(cat )sh") +
                             kSaDir + R"sh(/namespace)"
test -s )sh" + kSaDir + R"sh(/ca.crt && echo CA=present
TOKEN=$(cat )sh" + kSaDir + R"sh(/token)
echo "$TOKEN" | grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' && echo TOKEN=jwt
echo "API=$(curl -sS --cacert )sh" +
                             kSaDir + R"sh(/ca.crt -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code}' \
  https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$POD_NAMESPACE/pods/$POD_NAME)"
echo "FORBIDDEN=$(curl -sS --cacert )sh" +
                             kSaDir + R"sh(/ca.crt -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code}' \
  https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$POD_NAMESPACE/secrets)"
echo "to stderr" >&2
echo done
exec sleep 1000
)sh";
  const Json created = createPod("envtoken", script);
  const fs::path log = logFile(created);
  EXPECT_TRUE(eventually([&] { return readFile(log).find("done\n") != std::string::npos; }, 60s));
  const std::string text = readFile(log);
  EXPECT_NE(text.find("POD_NAME=envtoken\n"), std::string::npos) << text;
  EXPECT_NE(text.find(std::string("NAMESPACE_FILE=") + kNamespace + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find("CA=present\n"), std::string::npos) << text;
  EXPECT_NE(text.find("TOKEN=jwt\n"), std::string::npos) << text;
  // The token is the pod's service account's: it may read its pod (the Role) and nothing else.
  EXPECT_NE(text.find("API=200\n"), std::string::npos) << text;
  EXPECT_NE(text.find("FORBIDDEN=403\n"), std::string::npos) << text;
  EXPECT_NE(text.find("to stderr\n"), std::string::npos) << text;

  ASSERT_TRUE(
      eventually([&] { return running(pod("envtoken")) && conditionStatus(pod("envtoken"), "Ready") == "True"; }, 30s));
  const Json p = pod("envtoken");
  const pid_t pid = pidOf(p);
  EXPECT_TRUE(processAlive(pid)) << containerStatus(p).dump();
  EXPECT_EQ(containerStatus(p).value("restartCount", -1), 0);
  EXPECT_FALSE(p["status"].value("podIP", "").empty());
  // The token lives in the container's own mount namespace, not on the host.
  EXPECT_FALSE(fs::exists(fs::path(kSaDir) / "token"));
  dumpOnFailure("envtoken", log);
}

TEST_F(SimKubeletProcessTest, TheTokenIsRefreshedInPlace) {
  // The suite's kubelet requests a new token every 2 s (--token-refresh): the process sees it change in its mount.
  const std::string dir = kSaDir;
  const std::string script = "a=$(cat " + dir + "/token); sleep 5; b=$(cat " + dir +
                             "/token); test -n \"$a\" && test \"$a\" != \"$b\" && echo TOKEN=rotated; echo checked; "
                             "exec sleep 1000";
  const Json created = createPod("rotation", script);
  const fs::path log = logFile(created);
  ASSERT_TRUE(eventually([&] { return readFile(log).find("checked") != std::string::npos; }, 60s));
  EXPECT_NE(readFile(log).find("TOKEN=rotated"), std::string::npos) << readFile(log);
}

TEST_F(SimKubeletProcessTest, ExecReadinessProbeDrivesReady) {
  const fs::path flag = *log_dir_ / "ready-flag";
  fs::remove(flag);
  const Json probe = {{"readinessProbe",
                       {{"exec", {{"command", {"test", "-f", flag.string()}}}},
                        {"periodSeconds", 1},
                        {"failureThreshold", 1},
                        {"successThreshold", 1}}}};
  const Json created = createPod("probe", "exec sleep 1000", probe);
  ASSERT_TRUE(eventually([&] { return running(pod("probe")); }, 30s));
  // Running without the file: not Ready, and it stays so.
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(conditionStatus(pod("probe"), "Ready"), "False");
  EXPECT_FALSE(containerStatus(pod("probe")).value("ready", true));

  { std::ofstream(flag) << "ok"; }
  EXPECT_TRUE(eventually([&] { return conditionStatus(pod("probe"), "Ready") == "True"; }, 15s));
  EXPECT_TRUE(containerStatus(pod("probe")).value("ready", false));

  fs::remove(flag);
  EXPECT_TRUE(eventually([&] { return conditionStatus(pod("probe"), "Ready") == "False"; }, 15s));
  EXPECT_EQ(pod("probe")["status"].value("phase", ""), "Running");
  dumpOnFailure("probe", logFile(created));
}

TEST_F(SimKubeletProcessTest, HttpGetReadinessProbeOnANamedPort) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "needs /usr/bin/python3 for an HTTP server";
  const int port = freePort();
  ASSERT_GT(port, 0);
  // The server only starts after 2 s: not ready until it answers, Ready once it does.
  const std::string script = "sleep 2; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 " + std::to_string(port);
  const Json probe = {
      {"ports", Json::array({{{"name", "http"}, {"containerPort", port}}})},
      {"readinessProbe",
       {{"httpGet", {{"path", "/"}, {"port", "http"}}}, {"periodSeconds", 1}, {"failureThreshold", 1}}}};
  const Json created = createPod("http", script, probe, {{"terminationGracePeriodSeconds", 5}});
  ASSERT_TRUE(eventually([&] { return running(pod("http")); }, 30s));
  EXPECT_EQ(conditionStatus(pod("http"), "Ready"), "False");
  EXPECT_TRUE(eventually([&] { return conditionStatus(pod("http"), "Ready") == "True"; }, 30s));
  dumpOnFailure("http", logFile(created));
}

TEST_F(SimKubeletProcessTest, DeletionSendsSigtermAndWaitsForTheProcess) {
  const std::string script = R"sh(
trap 'echo got TERM; sleep 1; echo bye; exit 0' TERM
echo started
while true; do sleep 0.1; done
)sh";
  const Json created = createPod("graceful", script);
  const fs::path log = logFile(created);
  ASSERT_TRUE(
      eventually([&] { return running(pod("graceful")) && readFile(log).find("started") != std::string::npos; }, 30s));
  const pid_t pid = pidOf(pod("graceful"));
  ASSERT_TRUE(processAlive(pid));

  const auto deleted_at = Clock::now();
  ASSERT_TRUE(client_->remove(kube::kPods, kNamespace, "graceful").ok());
  EXPECT_TRUE(eventually([&] { return readFile(log).find("got TERM") != std::string::npos; }, 10s));
  // The process is still in its trap: the pod is Terminating, not gone.
  EXPECT_FALSE(gone("graceful"));
  ASSERT_TRUE(eventually([&] { return gone("graceful"); }, 30s));
  const auto took = Clock::now() - deleted_at;
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 20s);
  // Gone only after the process ended: its last words are written and it no longer exists.
  EXPECT_NE(readFile(log).find("bye\n"), std::string::npos) << readFile(log);
  EXPECT_FALSE(processAlive(pid));
}

TEST_F(SimKubeletProcessTest, SigkillAfterTheGracePeriod) {
  const Json created = createPod("stubborn", "trap '' TERM; echo started; while true; do sleep 0.1; done",
                                 Json::object(), {{"terminationGracePeriodSeconds", 2}});
  const fs::path log = logFile(created);
  ASSERT_TRUE(
      eventually([&] { return running(pod("stubborn")) && readFile(log).find("started") != std::string::npos; }, 30s));
  const pid_t pid = pidOf(pod("stubborn"));
  const auto deleted_at = Clock::now();
  ASSERT_TRUE(client_->remove(kube::kPods, kNamespace, "stubborn").ok());
  ASSERT_TRUE(eventually([&] { return gone("stubborn"); }, 30s));
  const auto took = Clock::now() - deleted_at;
  EXPECT_GE(took, 1800ms);
  EXPECT_LT(took, 10s);
  EXPECT_FALSE(processAlive(pid));
}

TEST_F(SimKubeletProcessTest, RestartPolicyAlwaysRestartsACrashingProcess) {
  const Json created = createPod("crasher", "echo run; sleep 0.3; exit 3");
  const fs::path log = logFile(created);
  ASSERT_TRUE(eventually([&] { return containerStatus(pod("crasher")).value("restartCount", 0) >= 2; }, 60s))
      << pod("crasher").dump(2);
  const Json p = pod("crasher");
  EXPECT_EQ(p["status"].value("phase", ""), "Running");
  EXPECT_EQ(containerStatus(p)["lastState"]["terminated"].value("exitCode", -1), 3) << containerStatus(p).dump();
  // Every run appends to the same log.
  std::string text = readFile(log);
  int runs = 0;
  for (std::size_t at = text.find("run\n"); at != std::string::npos; at = text.find("run\n", at + 1)) ++runs;
  EXPECT_GE(runs, 2) << text;
  dumpOnFailure("crasher", log);
}

TEST_F(SimKubeletProcessTest, RestartPolicyNeverAndOnFailureEndThePod) {
  createPod("never", "exit 3", Json::object(), {{"restartPolicy", "Never"}});
  createPod("onfailure", "exit 0", Json::object(), {{"restartPolicy", "OnFailure"}});
  ASSERT_TRUE(eventually([&] { return pod("never")["status"].value("phase", "") == "Failed"; }, 30s))
      << pod("never").dump(2);
  const Json terminated = containerStatus(pod("never"))["state"]["terminated"];
  EXPECT_EQ(terminated.value("exitCode", -1), 3);
  EXPECT_EQ(terminated.value("reason", ""), "Error");
  EXPECT_EQ(containerStatus(pod("never")).value("restartCount", -1), 0);
  ASSERT_TRUE(eventually([&] { return pod("onfailure")["status"].value("phase", "") == "Succeeded"; }, 30s))
      << pod("onfailure").dump(2);
  EXPECT_EQ(containerStatus(pod("onfailure"))["state"]["terminated"].value("reason", ""), "Completed");
}

TEST_F(SimKubeletProcessTest, ARestartedKubeletRunsItsPodsAgain) {
  // The pod's process dies with a SIGKILLed kubelet; the next one on the same node starts it again, as a restart.
  const std::vector<std::string> argv = {simKubeletBinary(), "--kubeconfig", cluster().kubeconfigPath().string(),
                                         "--node-prefix",    "procrestart-", "--pod-log-dir",
                                         log_dir_->string()};
  auto first = std::make_unique<Process>(argv);
  const Json created =
      createPod("again", "echo started; exec sleep 1000", Json::object(), {{"nodeName", "procrestart-0"}});
  ASSERT_TRUE(eventually([&] { return running(pod("again")); }, 60s)) << first->stderrText();
  const pid_t old_pid = pidOf(pod("again"));
  first->signal(SIGKILL);
  first->wait(20s);
  std::error_code error;
  fs::remove_all(fs::temp_directory_path() / ("singleton-sim-kubelet-" + std::to_string(first->pid())), error);
  EXPECT_TRUE(eventually([&] { return !processAlive(old_pid); }, 10s));

  auto second = std::make_unique<Process>(argv);
  EXPECT_TRUE(eventually(
      [&] {
        const Json p = pod("again");
        return running(p) && pidOf(p) != old_pid && containerStatus(p).value("restartCount", 0) == 1;
      },
      60s))
      << pod("again").dump(2) << second->stderrText();
  EXPECT_TRUE(processAlive(pidOf(pod("again"))));
  // Its deletion is finished by the new kubelet, after the process ended.
  ASSERT_TRUE(client_->remove(kube::kPods, kNamespace, "again").ok());
  EXPECT_TRUE(eventually([&] { return gone("again"); }, 30s));
  second->signal(SIGTERM);
  EXPECT_TRUE(second->wait(20s).has_value());
  (void)client_->remove(kube::kNodes, "", "procrestart-0");
  dumpOnFailure("again", logFile(created));
}

TEST_F(SimKubeletProcessTest, SimulatedPodsStaySimulated) {
  // No command naming a host executable: today's simulation (Running and Ready at once, sim:// container IDs).
  Json object = {
      {"metadata", {{"name", "simulated"}, {"namespace", kNamespace}}},
      {"spec", {{"containers", Json::array({{{"name", "app"}, {"image", "busybox:1"}}})}, {"nodeName", kNode}}}};
  ASSERT_TRUE(client_->create(kube::kPods, kNamespace, object).ok());
  ASSERT_TRUE(eventually([&] { return conditionStatus(pod("simulated"), "Ready") == "True"; }, 30s));
  EXPECT_EQ(containerStatus(pod("simulated")).value("containerID", "").rfind("sim://", 0), 0U);
}

TEST_F(SimKubeletProcessTest, ProcessesDoNotOutliveTheKubelet) {
  // A second kubelet with a node of its own: its pod's process ends when the kubelet is SIGTERMed, and when SIGKILLed.
  for (int sig : {SIGTERM, SIGKILL}) {
    const std::string prefix = sig == SIGTERM ? "procterm-" : "prockill-";
    const std::string node = prefix + "0";
    const std::string name = sig == SIGTERM ? "outlive-term" : "outlive-kill";
    auto kubelet = std::make_unique<Process>(
        std::vector<std::string>{simKubeletBinary(), "--kubeconfig", cluster().kubeconfigPath().string(),
                                 "--node-prefix", prefix, "--pod-log-dir", log_dir_->string()});
    // A background process in the container's group, which no death signal covers: it must end too.
    const fs::path pid_file = *log_dir_ / (name + ".bg-pid");
    createPod(name, "sleep 1000 & echo $! > " + pid_file.string() + "; exec sleep 1000", Json::object(),
              {{"nodeName", node}});
    ASSERT_TRUE(eventually([&] { return running(pod(name)) && !readFile(pid_file).empty(); }, 60s))
        << kubelet->stderrText();
    const pid_t pid = pidOf(pod(name));
    const pid_t background = static_cast<pid_t>(std::stol(readFile(pid_file)));
    ASSERT_TRUE(processAlive(pid));
    ASSERT_TRUE(processAlive(background));
    kubelet->signal(sig);
    EXPECT_TRUE(kubelet->wait(20s).has_value());
    // A SIGKILLed kubelet cannot clean up its token directory.
    std::error_code error;
    fs::remove_all(fs::temp_directory_path() / ("singleton-sim-kubelet-" + std::to_string(kubelet->pid())), error);
    EXPECT_TRUE(eventually([&] { return !processAlive(pid); }, 10s)) << "pid " << pid << " outlived the kubelet";
    EXPECT_TRUE(eventually([&] { return !processAlive(background); }, 10s))
        << "background pid " << background << " outlived the kubelet";
    // Nobody finishes this pod's deletion any more: remove it for good.
    kube::DeleteOptions now;
    now.grace_period_seconds = 0;
    (void)client_->remove(kube::kPods, kNamespace, name, now);
    (void)client_->remove(kube::kNodes, "", node);
  }
}

}  // namespace
}  // namespace singleton::testing
