// singleton-bench-operator: the measuring half of e2e/bench/bench-operator.sh. Talks to the cluster with the
// library's client and watches pods with the integration tests' LeaderAuditor, so every figure comes from event
// arrival times on one watch stream, and every run also checks that no two pods of a workload were ever labelled
// leader at once and that tokens only grew (the run fails otherwise).
//
// Commands (each with --kubeconfig F --namespace NS):
//   create    --count N [--replicas R] [--prefix P] [--nodes PFX:K]
//   coldstart --count N [--replicas R] [--prefix P] [--nodes PFX:K]
//   steady    --count N [--replicas R] [--prefix P]
//   failover  --workloads K --count N --mode delete|notready [--settle-ms MS] [--stall-pid PID --stall-seconds S]
//   idle      --seconds W [--operator-lease NS/NAME]
//   stamps    --seconds W      (the operator's fencing stamps and pod PATCHes while the script does something)
//   requests  --seconds W      (every non-watch API request the apiserver served meanwhile)
// create, coldstart and failover take --agent BIN --activity BIN --activity-dir DIR: replicas run singleton-agent
// around singleton-activity (real processes), and failover also times the new COMMAND's start and checks that no two
// active windows of a workload overlap.
//
// Results go to stdout as `key=value` lines (for the script); progress to stderr. Exit 1 on a failed run or a
// leader-auditor violation, 2 on bad usage.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "kube/config.h"
#include "support/activity_log.h"
#include "support/leader_auditor.h"
#include "watch/reflector.h"

namespace {

using namespace std::chrono_literals;
using namespace singleton;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using testing::LeaderAuditor;
using testing::readWindows;
using testing::steadyMicros;
using testing::Window;

const kube::Resource kWorkloads{"singleton.dev", "v1alpha1", "singletonworkloads", true};

struct Args {
  std::string command;
  std::string kubeconfig;
  std::string ns = "bench";
  std::string prefix = "w";
  int count = 0;
  int workloads = 10;
  int replicas = 3;
  std::string mode = "delete";
  std::string nodes;  // "PREFIX:K": set spec.nodeName to PREFIX<i % K> (no scheduler in the loop)
  int seconds = 60;
  int timeout = 600;
  int settle_ms = 0;  // failover: before each one, every workload steady and then this long without a failover
  std::string operator_lease = "singleton-system/singleton-operator";
  // failover: before each deletion, freeze this process (the kube-apiserver) with SIGSTOP for stall_seconds; the
  // request clock then starts at its SIGCONT, so request_* is the time from the apiserver's recovery.
  int stall_pid = 0;
  int stall_seconds = 15;
  // Agent workloads: each replica runs `agent -- activity activity_dir` as a real process (the simulated kubelet runs
  // containers that name a host executable), and failover also times the successor's COMMAND start from its log.
  std::string agent;
  std::string activity;
  std::string activity_dir;
};

[[noreturn]] void usage(const std::string& message) {
  std::cerr << "singleton-bench-operator: " << message << "\n"
            << "usage: singleton-bench-operator --kubeconfig F [--namespace NS] "
               "create|coldstart|steady|failover|idle|stamps|requests [flags] (see the source's header)\n";
  std::exit(2);
}

Args parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--kubeconfig")
      a.kubeconfig = value();
    else if (arg == "--namespace")
      a.ns = value();
    else if (arg == "--prefix")
      a.prefix = value();
    else if (arg == "--count")
      a.count = std::stoi(value());
    else if (arg == "--workloads")
      a.workloads = std::stoi(value());
    else if (arg == "--replicas")
      a.replicas = std::stoi(value());
    else if (arg == "--mode")
      a.mode = value();
    else if (arg == "--nodes")
      a.nodes = value();
    else if (arg == "--seconds")
      a.seconds = std::stoi(value());
    else if (arg == "--timeout")
      a.timeout = std::stoi(value());
    else if (arg == "--settle-ms")
      a.settle_ms = std::stoi(value());
    else if (arg == "--operator-lease")
      a.operator_lease = value();
    else if (arg == "--stall-pid")
      a.stall_pid = std::stoi(value());
    else if (arg == "--stall-seconds")
      a.stall_seconds = std::stoi(value());
    else if (arg == "--agent")
      a.agent = value();
    else if (arg == "--activity")
      a.activity = value();
    else if (arg == "--activity-dir")
      a.activity_dir = value();
    else if (arg.rfind("--", 0) == 0)
      usage("unknown flag " + arg);
    else if (a.command.empty())
      a.command = arg;
    else
      usage("unexpected argument " + arg);
  }
  if (a.command.empty()) usage("no command");
  if (!a.agent.empty() && (a.activity.empty() || a.activity_dir.empty()))
    usage("--agent needs --activity and --activity-dir");
  return a;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string workloadName(const Args& a, int i) { return a.prefix + "-" + std::to_string(i); }

Json workloadObject(const Args& a, int i) {
  Json spec = {
      {"terminationGracePeriodSeconds", 5},
      {"containers", Json::array({{{"name", "main"}, {"image", "busybox:1.36"}, {"command", {"sleep", "1000000"}}}})}};
  if (!a.agent.empty()) {
    spec["serviceAccountName"] = "singleton-agent";  // manifests/agent-rbac.yaml, applied by the script
    spec["containers"] =
        Json::array({{{"name", "main"}, {"image", "host"}, {"command", {a.agent, "--", a.activity, a.activity_dir}}}});
  }
  if (!a.nodes.empty()) {
    const auto colon = a.nodes.rfind(':');
    const int k = std::max(1, std::stoi(a.nodes.substr(colon + 1)));
    spec["nodeName"] = a.nodes.substr(0, colon) + std::to_string(i % k);
  }
  Json pod_template = {{"metadata", {{"labels", {{"bench", a.prefix}}}}}, {"spec", spec}};
  Json object = {{"apiVersion", "singleton.dev/v1alpha1"}, {"kind", "SingletonWorkload"}};
  object["metadata"] = {{"name", workloadName(a, i)}, {"namespace", a.ns}};
  object["spec"] = {{"replicas", a.replicas}, {"template", pod_template}};
  return object;
}

// Counts the operator's fencing stamps independently, from a pod watch: changes to a pod's singleton.dev/operator-term
// annotation (docs/design.md, "the label fence"). A pod created with a stamp is not counted: its creator wrote it in
// the create, with no extra request.
class StampWatch final : public watch::Handler {
 public:
  StampWatch(kube::Client& client, const std::string& ns) {
    watch::ReflectorOptions options;
    options.ns = ns;
    reflector_ = std::make_unique<watch::Reflector>(client, kube::kPods, options, *this);
    thread_ = std::jthread([this](std::stop_token stop) { reflector_->run(stop); });
    const auto deadline = Clock::now() + 60s;
    while (!reflector_->hasSynced() && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  }
  ~StampWatch() override { thread_.request_stop(); }
  StampWatch(const StampWatch&) = delete;
  StampWatch& operator=(const StampWatch&) = delete;

  void onReplace(std::vector<Json> objects, const std::string&) override {
    std::lock_guard g(mutex_);
    terms_.clear();
    for (const auto& pod : objects) terms_[nameOf(pod)] = termOf(pod);
  }
  void onEvent(const watch::Event& e) override {
    std::lock_guard g(mutex_);
    const std::string name = nameOf(e.object);
    if (e.type == watch::EventType::kDeleted) {
      terms_.erase(name);
      return;
    }
    const std::string term = termOf(e.object);
    const auto it = terms_.find(name);
    if (it != terms_.end() && it->second != term) ++stamps_;
    terms_[name] = term;
  }
  int stamps() const {
    std::lock_guard g(mutex_);
    return stamps_;
  }

 private:
  static std::string nameOf(const Json& pod) { return pod.value("metadata", Json::object()).value("name", ""); }
  static std::string termOf(const Json& pod) {
    const Json annotations = pod.value("metadata", Json::object()).value("annotations", Json::object());
    return annotations.value("singleton.dev/operator-term", "");
  }

  mutable std::mutex mutex_;
  std::map<std::string, std::string> terms_;
  int stamps_ = 0;
  std::unique_ptr<watch::Reflector> reflector_;
  std::jthread thread_;
};

// The workload a pod belongs to: the operator names pods <workload>-<ordinal>.
std::string workloadOfPod(const std::string& pod) { return pod.substr(0, pod.rfind('-')); }

class Bench {
 public:
  explicit Bench(Args args) : a_(std::move(args)) {
    auto config = kube::loadKubeconfig({a_.kubeconfig, ""});
    if (!config.ok()) usage(config.error().describe());
    auto transport = kube::makeTransport(*config, kube::TransportOptions{4});
    if (!transport.ok()) usage(transport.error().describe());
    transport_ = *transport;
    client_ =
        std::make_unique<kube::Client>(transport_, kube::ClientOptions{std::chrono::seconds(30), "singleton-bench"});
  }

  int run() {
    if (a_.command == "create") return create();
    if (a_.command == "coldstart") return coldstart();
    if (a_.command == "steady") return steady();
    if (a_.command == "failover") return failover();
    if (a_.command == "idle") return idle();
    if (a_.command == "stamps") return stamps();
    if (a_.command == "requests") return requests();
    usage("unknown command " + a_.command);
  }

 private:
  void ensureNamespace() {
    auto r = client_->create(kube::kNamespaces, "", {{"metadata", {{"name", a_.ns}}}});
    if (!r.ok() && r.error().code != util::ErrorCode::kAlreadyExists) {
      std::cerr << "namespace " << a_.ns << ": " << r.error().describe() << "\n";
      std::exit(1);
    }
  }

  // Creates workloads [0, count) with a few threads; retries transient errors. False if any could not be created.
  bool createAll(int count) {
    ensureNamespace();
    std::atomic<int> next{0}, failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        kube::Client client(transport_, kube::ClientOptions{std::chrono::seconds(30), "singleton-bench"});
        for (int i = next++; i < count; i = next++) {
          for (int attempt = 0;; ++attempt) {
            auto r = client.create(kWorkloads, a_.ns, workloadObject(a_, i));
            if (r.ok() || r.error().code == util::ErrorCode::kAlreadyExists) break;
            if (attempt == 5) {
              std::cerr << "create " << workloadName(a_, i) << ": " << r.error().describe() << "\n";
              ++failed;
              break;
            }
            std::this_thread::sleep_for(200ms * (attempt + 1));
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    return failed == 0;
  }

  std::unique_ptr<LeaderAuditor> startAuditor(bool record_events, LeaderAuditor::Options options = {}) {
    options.ns = a_.ns;
    options.record_events = record_events;
    auto auditor = std::make_unique<LeaderAuditor>(transport_, options);
    if (!auditor->start(60s)) {
      std::cerr << "the pod watch did not sync\n";
      std::exit(1);
    }
    return auditor;
  }

  int reportViolations(const LeaderAuditor& auditor) {
    const auto v = auditor.violations();
    std::cout << "violations=" << v.size() << "\n";
    for (const auto& line : v) std::cerr << "VIOLATION " << line << "\n";
    return v.empty() ? 0 : 1;
  }

  // A workload is steady: `replicas` pods, all Ready and not terminating, exactly one labelled leader with a token.
  static bool isSteady(const LeaderAuditor::State& s, const std::string& workload, int replicas) {
    auto it = s.workloads.find(workload);
    if (it == s.workloads.end() || static_cast<int>(it->second.pods.size()) != replicas) return false;
    for (const auto& [name, p] : it->second.pods) {
      if (!p.ready || p.terminating || p.phase != "Running") return false;
      if (p.leader() != (it->second.leaders.count(name) == 1)) return false;
    }
    if (it->second.leaders.size() != 1) return false;
    const auto& leader = it->second.pods.at(*it->second.leaders.begin());
    return leader.token.has_value();
  }

  int create() {
    const auto t0 = Clock::now();
    if (!createAll(a_.count)) return 1;
    std::printf("created=%d\ncreate_seconds=%.2f\n", a_.count, ms(Clock::now() - t0) / 1000);
    return 0;
  }

  int coldstart() {
    ensureNamespace();
    auto auditor = startAuditor(false);
    const auto requests_before = apiserverRequests(/*writes_only=*/false);
    const auto t0 = Clock::now();
    std::thread creator([&] {
      if (!createAll(a_.count)) std::cerr << "some workloads could not be created\n";
      std::fprintf(stderr, "created %d workloads in %.1f s\n", a_.count, ms(Clock::now() - t0) / 1000);
    });
    std::optional<Clock::time_point> last;
    std::optional<Clock::time_point> first;
    std::optional<Clock::time_point> all_ready;  // when every pod was first seen Ready (by a progress check)
    const auto deadline = t0 + std::chrono::seconds(a_.timeout);
    int led = 0, pods = 0, ready = 0;
    auto next_report = t0 + 5s;
    while (Clock::now() < deadline) {
      // Checked every 100 ms, not on every pod event: a scan of 1,000 workloads per event would spend seconds of
      // the machine's CPU on the benchmark itself. Leaderships carry their own arrival times, so the figures are
      // as precise either way.
      std::this_thread::sleep_for(100ms);
      auditor->waitUntil(
          [&](const LeaderAuditor::State& s) {
            led = pods = ready = 0;
            for (const auto& [name, w] : s.workloads) {
              pods += static_cast<int>(w.pods.size());
              for (const auto& [pod, p] : w.pods) ready += p.ready;
            }
            Clock::time_point latest{}, earliest = Clock::time_point::max();
            for (int i = 0; i < a_.count; ++i) {
              auto it = s.workloads.find(workloadName(a_, i));
              if (it == s.workloads.end() || it->second.leaderships.empty()) continue;
              ++led;
              latest = std::max(latest, it->second.leaderships.front().at);
              earliest = std::min(earliest, it->second.leaderships.front().at);
            }
            if (led > 0) first = earliest;
            if (!all_ready && ready == a_.count * a_.replicas) all_ready = Clock::now();
            if (led == a_.count) last = latest;
            return led == a_.count;
          },
          0ms);
      if (last) break;
      if (Clock::now() < next_report) continue;
      next_report += 5s;
      std::fprintf(stderr, "  %3d s: %d/%d workloads have a leader; %d pods, %d Ready\n",
                   static_cast<int>(ms(Clock::now() - t0) / 1000), led, a_.count, pods, ready);
    }
    creator.join();
    if (!last) {
      std::cerr << "only " << led << "/" << a_.count << " workloads got a leader within " << a_.timeout << " s\n";
      std::cout << "coldstart_led=" << led << "\n";
      return 1;
    }
    // Where the apiserver's time went: every request of the cold start (the operators', the kubelet's, ours).
    std::cerr << "apiserver requests during the cold start, per workload:";
    for (const auto& [key, value] : apiserverRequests(/*writes_only=*/false)) {
      const double d = value - (requests_before.count(key) ? requests_before.at(key) : 0.0);
      if (d >= a_.count / 10.0) std::fprintf(stderr, " %s %.1f;", key.c_str(), d / a_.count);
    }
    std::cerr << "\n";
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "coldstart_workloads=%d\ncoldstart_pods=%d\ncoldstart_first_leader_seconds=%.2f\n"
                  "coldstart_all_pods_ready_seconds=%.2f\ncoldstart_seconds=%.2f\ncoldstart_driver_cpu_seconds=%.1f\n",
                  a_.count, a_.count * a_.replicas, ms(*first - t0) / 1000,
                  all_ready ? ms(*all_ready - t0) / 1000 : -1.0, ms(*last - t0) / 1000, cpuSeconds());
    std::cout << buf;
    return reportViolations(*auditor);
  }

  // User + system CPU of this process so far: the benchmark's own share of the machine.
  static double cpuSeconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }

  int steady() {
    auto auditor = startAuditor(false);
    int ok = 0;
    const bool done = auditor->waitUntil(
        [&](const LeaderAuditor::State& s) {
          ok = 0;
          for (int i = 0; i < a_.count; ++i) ok += isSteady(s, workloadName(a_, i), a_.replicas);
          return ok == a_.count;
        },
        std::chrono::seconds(a_.timeout));
    std::cout << "steady=" << ok << "\n";
    if (!done) std::cerr << "only " << ok << "/" << a_.count << " workloads steady\n";
    return done ? reportViolations(*auditor) : 1;
  }

  static std::string percentiles(const std::string& name, std::vector<double> v) {
    std::ostringstream out;
    if (v.empty()) return name + "_n=0\n";
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) {
      // Nearest rank.
      const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
      return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
    };
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s_n=%zu\n%s_p50_ms=%.1f\n%s_p90_ms=%.1f\n%s_p99_ms=%.1f\n%s_max_ms=%.1f\n",
                  name.c_str(), v.size(), name.c_str(), pct(50), name.c_str(), pct(90), name.c_str(), pct(99),
                  name.c_str(), v.back());
    return buf;
  }

  // One failover at a time, round-robin over `workloads` workloads so the pod deleted last time has come back.
  int failover() {
    if (a_.mode != "delete" && a_.mode != "notready") usage("--mode is delete or notready");
    // Armed before each failover: the pod whose deletion or readiness loss starts the clock.
    struct Armed {
      std::string workload;
      std::string uid;
      std::size_t leaderships = 0;
      std::optional<Clock::time_point> lost;  // arrival of the first event showing the loss
      std::optional<Clock::time_point> next;  // arrival of the next leader's label
      std::string next_pod;
      std::int64_t next_token = -1;
      bool active = false;
    };
    std::mutex armed_mutex;
    Armed armed;
    LeaderAuditor::Options options;
    options.listener = [&](const LeaderAuditor::PodEvent& e, const LeaderAuditor::State& s) {
      std::lock_guard g(armed_mutex);
      if (!armed.active || e.workload != armed.workload) return;
      if (!armed.lost && e.pod.uid == armed.uid) {
        const bool lost = a_.mode == "delete" ? (e.type == "DELETED" || e.pod.terminating) : !e.pod.ready;
        if (lost) armed.lost = e.at;
      }
      const auto& w = s.workloads.at(e.workload);
      if (!armed.next && w.leaderships.size() > armed.leaderships) {
        armed.next = w.leaderships[armed.leaderships].at;
        armed.next_pod = w.leaderships[armed.leaderships].pod;
        armed.next_token = w.leaderships[armed.leaderships].token;
      }
    };
    auto auditor = startAuditor(false, options);
    StampWatch stamp_watch(*client_, a_.ns);
    const double pod_patches_before = podPatches();

    std::vector<double> from_watch, from_request;
    std::vector<double> active_from_request, active_from_loss;  // agent workloads: trigger -> new COMMAND started
    int failures = 0;
    for (int n = 0; n < a_.count; ++n) {
      const std::string workload = workloadName(a_, n % a_.workloads);
      if (a_.settle_ms > 0) {
        // Each failover on a quiet cluster: the last one's aftermath (the deleted pod recreated, status, events)
        // has landed everywhere.
        const bool all_steady = auditor->waitUntil(
            [&](const LeaderAuditor::State& s) {
              for (int i = 0; i < a_.workloads; ++i) {
                if (!isSteady(s, workloadName(a_, i), a_.replicas)) return false;
              }
              return true;
            },
            std::chrono::seconds(a_.timeout));
        if (!all_steady) {
          std::cerr << "failover " << n << ": the workloads did not settle\n";
          return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(a_.settle_ms));
      }
      if (!auditor->waitUntil([&](const LeaderAuditor::State& s) { return isSteady(s, workload, a_.replicas); },
                              std::chrono::seconds(a_.timeout))) {
        std::cerr << "workload " << workload << " not steady:\n" << auditor->describe(workload);
        return 1;
      }
      auto leader = auditor->currentLeader(workload);
      const auto before = auditor->leaderships(workload).size();
      {
        std::lock_guard g(armed_mutex);
        armed = Armed{workload, leader->uid, before, {}, {}, "", -1, true};
      }
      if (a_.stall_pid > 0) {
        // Past the operator's renew deadline at the default 15 s: its leader gives up, and after the SIGCONT a
        // replica must be elected again (on a warm cache) before it can fail the workload over.
        std::fprintf(stderr, "  stalling the kube-apiserver (pid %d) for %d s\n", a_.stall_pid, a_.stall_seconds);
        if (::kill(a_.stall_pid, SIGSTOP) != 0) usage("cannot SIGSTOP --stall-pid " + std::to_string(a_.stall_pid));
        std::this_thread::sleep_for(std::chrono::seconds(a_.stall_seconds));
        ::kill(a_.stall_pid, SIGCONT);
      }
      const auto requested = Clock::now();
      std::string error;
      if (a_.mode == "delete") {
        auto status = client_->remove(kube::kPods, a_.ns, leader->name);
        // Just after a stall the first answer may be a timeout of a request sent into it: try again.
        for (int retry = 0; retry < 10 && !status.ok() && a_.stall_pid > 0; ++retry) {
          std::this_thread::sleep_for(100ms);
          status = client_->remove(kube::kPods, a_.ns, leader->name);
          if (!status.ok() && status.error().code == util::ErrorCode::kNotFound) status = {};
        }
        if (!status.ok()) error = status.error().describe();
      } else {
        auto patched = client_->mergePatch(kube::kPods, a_.ns, leader->name,
                                           {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", "false"}}}}}});
        if (!patched.ok()) error = patched.error().describe();
      }
      if (!error.empty()) {
        std::cerr << "failover " << n << ": " << error << "\n";
        return 1;
      }
      const bool done = auditor->waitUntil(
          [&](const LeaderAuditor::State&) {
            std::lock_guard g(armed_mutex);
            return armed.lost && armed.next;
          },
          a_.stall_pid > 0 ? 60s : 30s);
      Armed result;
      {
        std::lock_guard g(armed_mutex);
        armed.active = false;
        result = armed;
      }
      if (!done) {
        std::cerr << "failover " << n << " of " << workload << " (" << leader->name << "): no new leader in 30 s\n"
                  << auditor->describe(workload);
        ++failures;
        if (failures > 3) return 1;
      } else {
        const double watched = ms(*result.next - *result.lost);
        from_watch.push_back(watched);
        from_request.push_back(ms(*result.next - requested));
        if (!a_.agent.empty()) {
          // The successor's COMMAND logs its start with the new token once its agent saw the hand-off complete.
          std::optional<long long> started;
          const auto deadline = Clock::now() + 30s;
          while (!started && Clock::now() < deadline) {
            for (const Window& w : readWindows(a_.activity_dir, result.next_pod)) {
              if (w.token == result.next_token) started = w.start;
            }
            if (!started) std::this_thread::sleep_for(2ms);
          }
          if (!started) {
            std::cerr << "failover " << n << ": " << result.next_pod << "'s COMMAND never started with token "
                      << result.next_token << "\n";
            ++failures;
          } else {
            active_from_request.push_back((*started - steadyMicros(requested)) / 1000.0);
            active_from_loss.push_back((*started - steadyMicros(*result.lost)) / 1000.0);
          }
        }
        if (result.next_token != std::stoll(leader->token.value_or("-1")) + 1) {
          std::cerr << "failover " << n << ": token " << result.next_token << " after " << *leader->token << "\n";
          ++failures;
        }
        if ((n + 1) % 20 == 0) {
          std::fprintf(stderr, "  %d/%d failovers (%s), last %s -> %s in %.1f ms\n", n + 1, a_.count, a_.mode.c_str(),
                       leader->name.c_str(), result.next_pod.c_str(), watched);
        }
      }
      if (a_.mode == "notready") {
        // Ready again: the old leader rejoins as a standby.
        (void)client_->mergePatch(kube::kPods, a_.ns, leader->name,
                                  {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", nullptr}}}}}});
      }
    }
    std::cout << "mode=" << a_.mode << "\nfailures=" << failures << "\n"
              << percentiles("watch", from_watch) << percentiles("request", from_request);
    // Give the watch a moment to show the last failover's writes.
    std::this_thread::sleep_for(1s);
    std::cout << "stamps=" << stamp_watch.stamps() << "\npod_patches=" << podPatches() - pod_patches_before << "\n";
    const int v = reportViolations(*auditor);
    if (!a_.agent.empty()) {
      std::cout << percentiles("active", active_from_request) << percentiles("active_from_loss", active_from_loss);
      if (!reportOverlaps()) return 1;
    }
    return failures == 0 ? v : 1;
  }

  // Counts the changes a watch delivers after its first list.
  class Counter final : public watch::Handler {
   public:
    void onReplace(std::vector<Json>, const std::string&) override { synced_ = true; }
    void onEvent(const watch::Event& e) override {
      std::lock_guard g(mutex_);
      ++count_;
      const Json& meta = e.object.value("metadata", Json::object());
      ++by_[e.object.value("kind", "?") + "/" + meta.value("name", "?")];
    }
    int count() const {
      std::lock_guard g(mutex_);
      return count_;
    }
    std::map<std::string, int> byObject() const {
      std::lock_guard g(mutex_);
      return by_;
    }
    std::atomic<bool> synced_{false};

   private:
    mutable std::mutex mutex_;
    int count_ = 0;
    std::map<std::string, int> by_;
  };

  struct Watched {
    std::string label;
    kube::Resource resource;
    watch::ReflectorOptions options;
    std::unique_ptr<Counter> counter = std::make_unique<Counter>();
    std::unique_ptr<watch::Reflector> reflector;
    std::jthread thread;
  };

  std::map<std::string, double> apiserverWrites() { return apiserverRequests(/*writes_only=*/true); }

  // apiserver_request_total summed by "VERB resource[/subresource]" (watches never; reads unless `writes_only`).
  std::map<std::string, double> apiserverRequests(bool writes_only) {
    auto text = client_->raw("GET", "/metrics");
    std::map<std::string, double> out;
    if (!text.ok()) {
      std::cerr << "apiserver /metrics: " << text.error().describe() << "\n";
      std::exit(1);
    }
    std::istringstream in(*text);
    std::string line;
    auto label = [](const std::string& l, const std::string& key) {
      const auto at = l.find(key + "=\"");
      if (at == std::string::npos) return std::string();
      const auto start = at + key.size() + 2;
      return l.substr(start, l.find('"', start) - start);
    };
    while (std::getline(in, line)) {
      if (line.rfind("apiserver_request_total{", 0) != 0) continue;
      const std::string verb = label(line, "verb");
      if (verb == "WATCH" || verb == "WATCHLIST" || verb == "CONNECT") continue;
      if (writes_only && (verb == "GET" || verb == "LIST")) continue;
      std::string resource = label(line, "resource");
      const std::string sub = label(line, "subresource");
      if (!sub.empty()) resource += "/" + sub;
      out[verb + " " + resource] += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return out;
  }

  // Active windows of different pods of one workload (this run's prefix) must never overlap: prints how many did and
  // the worst overlap, and the smallest gap between one window's end and the next one's start.
  bool reportOverlaps() {
    std::map<std::string, std::vector<Window>> by_workload;
    for (Window& w : readWindows(a_.activity_dir)) {
      if (w.pod.rfind(a_.prefix + "-", 0) == 0) by_workload[workloadOfPod(w.pod)].push_back(std::move(w));
    }
    int overlaps = 0;
    long long worst = 0;
    std::optional<long long> smallest_gap;
    std::size_t windows = 0;
    for (const auto& [workload, list] : by_workload) {
      windows += list.size();
      for (std::size_t i = 1; i < list.size(); ++i) {
        const long long gap = list[i].start - list[i - 1].last;
        if (gap <= 0) {
          ++overlaps;
          worst = std::max(worst, -gap);
          std::cerr << "OVERLAP " << list[i - 1].pod << " (token " << list[i - 1].token << ") still active "
                    << -gap / 1000.0 << " ms after " << list[i].pod << " (token " << list[i].token << ") started\n";
        }
        if (list[i].token <= list[i - 1].token) {
          ++overlaps;
          std::cerr << "TOKEN " << list[i].pod << " started with " << list[i].token << " after " << list[i - 1].token
                    << "\n";
        }
        smallest_gap = std::min(smallest_gap.value_or(gap), gap);
      }
    }
    std::printf("windows=%zu\noverlaps=%d\noverlap_max_ms=%.1f\nsmallest_gap_ms=%.1f\n", windows, overlaps,
                worst / 1000.0, smallest_gap.value_or(0) / 1000.0);
    return overlaps == 0;
  }

  // Every API request (watches aside) the apiserver served during --seconds, from its /metrics.
  // Prints the total, and per minute each "VERB resource" (request_per_min_<VERB>_<resource>=N) so two windows can be
  // compared kind by kind.
  int requests() {
    const auto before = apiserverRequests(/*writes_only=*/false);
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(a_.seconds));
    const auto after = apiserverRequests(/*writes_only=*/false);
    const double minutes = ms(Clock::now() - t0) / 60000.0;
    double total = 0;
    for (const auto& [key, value] : after) {
      const double d = value - (before.count(key) ? before.at(key) : 0.0);
      if (d <= 0) continue;
      total += d;
      std::string name = key;
      std::replace(name.begin(), name.end(), ' ', '_');
      std::replace(name.begin(), name.end(), '/', '_');
      std::printf("request_per_min_%s=%.1f\n", name.c_str(), d / minutes);
    }
    std::printf("requests=%.0f\nrequests_per_min=%.1f\n", total, total / minutes);
    return 0;
  }

  // PATCH requests to pods (not their status) the apiserver served, from its /metrics: the operator's label and stamp
  // writes, and the benchmark's own readiness annotations in --mode notready.
  double podPatches() {
    const auto writes = apiserverWrites();
    const auto it = writes.find("PATCH pods");
    return it == writes.end() ? 0.0 : it->second;
  }

  // Watches the namespace's pods for --seconds (the script takes the operator leader over meanwhile): the stamps
  // written and PATCH requests to pods.
  int stamps() {
    StampWatch stamp_watch(*client_, a_.ns);
    const double before = podPatches();
    std::this_thread::sleep_for(std::chrono::seconds(a_.seconds));
    std::cout << "stamps=" << stamp_watch.stamps() << "\npod_patches=" << podPatches() - before << "\n";
    return 0;
  }

  int idle() {
    const auto slash = a_.operator_lease.find('/');
    const std::string op_ns = a_.operator_lease.substr(0, slash);
    const std::string op_name = a_.operator_lease.substr(slash + 1);
    std::vector<Watched> watched;
    auto add = [&](std::string label, kube::Resource resource, std::string ns, std::string field = "") {
      Watched w;
      w.label = std::move(label);
      w.resource = std::move(resource);
      w.options.ns = std::move(ns);
      w.options.field_selector = std::move(field);
      watched.push_back(std::move(w));
    };
    // Everything the operator may write for the workloads, in their namespace.
    add("pods", kube::kPods, a_.ns);
    add("leases", kube::kLeases, a_.ns);
    add("services", kube::kServices, a_.ns);
    add("singletonworkloads", kWorkloads, a_.ns);
    add("events", kube::kEvents, a_.ns);
    // Known writers elsewhere: the operators' own election and the simulated kubelet's heartbeats.
    add("operator-lease", kube::kLeases, op_ns, "metadata.name=" + op_name);
    add("node-leases", kube::kLeases, "kube-node-lease");
    add("nodes", kube::kNodes, "");
    for (auto& w : watched) {
      w.reflector = std::make_unique<watch::Reflector>(*client_, w.resource, w.options, *w.counter);
      w.thread = std::jthread([r = w.reflector.get()](std::stop_token stop) { r->run(stop); });
    }
    for (auto& w : watched) {
      const auto deadline = Clock::now() + 60s;
      while (!w.counter->synced_ && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
    }
    const auto before = apiserverWrites();
    std::vector<int> counts_before;
    for (auto& w : watched) counts_before.push_back(w.counter->count());
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(a_.seconds));
    const auto after = apiserverWrites();
    const double minutes = ms(Clock::now() - t0) / 60000.0;
    std::map<std::string, int> changes;
    for (std::size_t i = 0; i < watched.size(); ++i) {
      changes[watched[i].label] = watched[i].counter->count() - counts_before[i];
    }
    for (auto& w : watched) w.thread.request_stop();

    double total = 0;
    std::cerr << "apiserver write requests during " << a_.seconds << " s:\n";
    for (const auto& [key, value] : after) {
      const double d = value - (before.count(key) ? before.at(key) : 0.0);
      if (d <= 0) continue;
      total += d;
      std::cerr << "  " << key << ": " << d << "\n";
    }
    std::cerr << "object changes seen by watches:";
    for (const auto& [label, n] : changes) std::cerr << " " << label << "=" << n;
    std::cerr << "\n";
    for (const auto& [object, n] : watched[0].counter->byObject())
      std::cerr << "  changed: " << object << " x" << n << "\n";
    // Known: every node-lease and operator-lease change is one lease PUT; node changes are the kubelet's status
    // patches (the operator may not write nodes at all).
    double nodes_writes = 0;
    for (const auto& [key, value] : after) {
      if (key.find(" nodes") != std::string::npos) nodes_writes += value - (before.count(key) ? before.at(key) : 0.0);
    }
    const double known = changes["node-leases"] + changes["operator-lease"] + nodes_writes;
    const double beyond = total - known;
    const int ns_changes =
        changes["pods"] + changes["leases"] + changes["services"] + changes["singletonworkloads"] + changes["events"];
    char buf[512];
    std::snprintf(
        buf, sizeof buf,
        "idle_window_seconds=%d\napi_writes_total=%.0f\noperator_lease_renewals=%d\nnode_heartbeat_writes=%.0f\n"
        "api_writes_beyond_per_min=%.1f\nnamespace_changes_per_min=%.1f\noperator_lease_renewals_per_min=%.1f\n",
        a_.seconds, total, changes["operator-lease"], changes["node-leases"] + nodes_writes, beyond / minutes,
        ns_changes / minutes, changes["operator-lease"] / minutes);
    std::cout << buf;
    return 0;
  }

  Args a_;
  std::shared_ptr<kube::Transport> transport_;
  std::unique_ptr<kube::Client> client_;
};

}  // namespace

int main(int argc, char** argv) {
  Args args = parseArgs(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  Bench bench(std::move(args));
  return bench.run();
}
