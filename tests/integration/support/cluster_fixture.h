// A real local Kubernetes control plane for integration tests, driven by e2e/cluster/cluster.sh.
//
// One cluster per test binary:
//
//   // at namespace scope in one test file (works with gtest_main too):
//   static auto* const kClusterEnv =
//       ::testing::AddGlobalTestEnvironment(new singleton::testing::ClusterEnvironment);
//
//   TEST(Lease, Create) {
//     auto& c = singleton::testing::cluster();
//     auto r = c.kubectl({"get", "--raw", "/readyz"});
//     EXPECT_EQ(r.exitCode, 0) << r.err;
//   }
//
// The cluster runs in a fresh temporary directory (under $TMPDIR or /tmp) and is torn down with the fixture. A
// watchdog started by cluster.sh also tears it down if the test process dies without doing so. Set
// SINGLETON_KEEP_CLUSTER=1 to keep the directory (logs, etcd data) after the processes are stopped.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace singleton::testing {

struct CommandResult {
  int exitCode = -1;  // the exit status, or 128 + signal number if the command was killed by a signal
  std::string out;    // everything the command wrote to stdout
  std::string err;    // everything the command wrote to stderr
  bool ok() const { return exitCode == 0; }
};

// Runs argv[0] (looked up in PATH) with stdin from /dev/null and returns its exit code and output.
// Throws std::runtime_error if the command cannot be started.
CommandResult runCommand(const std::vector<std::string>& argv);

class LocalCluster {
 public:
  struct Options {
    std::string nodeMonitorGracePeriod = "10s";  // kube-controller-manager --node-monitor-grace-period
  };

  // Brings a cluster up (about 5-10 s). Throws std::runtime_error if it cannot; its message holds cluster.sh's
  // output, ending with the failing component's log tail.
  static std::unique_ptr<LocalCluster> start();
  static std::unique_ptr<LocalCluster> start(const Options& options);

  ~LocalCluster();  // stop()
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path kubeconfigPath() const { return env("KUBECONFIG"); }
  std::string apiserverUrl() const { return env("APISERVER_URL"); }  // https://127.0.0.1:PORT
  int apiserverPort() const { return std::stoi(env("APISERVER_PORT")); }
  std::filesystem::path caFile() const { return env("CA_FILE"); }  // the apiserver's self-signed cert
  std::string adminToken() const { return env("ADMIN_TOKEN"); }    // bearer token in system:masters
  std::filesystem::path binDir() const { return env("BIN_DIR"); }  // kube-* and leader-election-example
  std::filesystem::path logDir() const { return env("LOG_DIR"); }  // one <component>.log each
  // Any value from DIR/env (e.g. "ETCD_URL", "APISERVER_PID"); empty if absent.
  std::string env(const std::string& key) const;

  // `kubectl --kubeconfig=<kubeconfigPath()> args...`
  CommandResult kubectl(const std::vector<std::string>& args) const;

  // Stops kube-apiserver and starts it again on the same port with the same flags; returns once /readyz is ok.
  // `kill`: SIGKILL at once (a crash) instead of TERM.
  void restartApiserver(bool kill = false);
  void stopApiserver(bool kill = false);
  void startApiserver();
  // etcd alone, the same way: its data is kept, so the cluster's objects survive.
  void restartEtcd(bool kill = false);
  void stopEtcd(bool kill = false);
  void startEtcd();
  // Sends `sig` (SIGSTOP freezes, SIGCONT resumes) to a running component: "kube-apiserver" or "etcd". Throws if it
  // does not run.
  void signalComponent(const std::string& component, int sig) const;

  // Stops every process and removes dir() (kept with SINGLETON_KEEP_CLUSTER=1). Idempotent; never throws.
  void stop() noexcept;

 private:
  explicit LocalCluster(std::filesystem::path dir);
  CommandResult script(const std::vector<std::string>& args) const;  // cluster.sh args...
  void scriptOrThrow(const std::vector<std::string>& args);
  void loadEnv();

  std::filesystem::path dir_;
  std::map<std::string, std::string> env_;
  bool stopped_ = false;
};

// Starts the shared cluster before the first test and stops it after the last one. If the cluster cannot start,
// SetUp reports a fatal failure and GoogleTest runs no tests.
class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
};

// The shared cluster. Started on first use if ClusterEnvironment did not start it already (then stopped at exit);
// throws std::runtime_error if it could not be started.
LocalCluster& cluster();

}  // namespace singleton::testing
