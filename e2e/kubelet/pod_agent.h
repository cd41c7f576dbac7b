// Plays the kubelet's part for the pods bound to our nodes: a watch (Reflector + Cache) of all bound pods feeds a
// de-duplicating work queue at once, and a small pool of workers brings each pod to the state planPod() asks for,
// with one status write (or one delete) per change. Pods already as they should be cost no write.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>

#include "controller/work_queue.h"
#include "ip_pool.h"
#include "kube/client.h"
#include "pod_status.h"
#include "process_runtime.h"
#include "util/clock.h"
#include "watch/cache.h"

namespace singleton::sim {

struct PodAgentStats {
  std::atomic<long long> status_writes{0};
  std::atomic<long long> deletes{0};
  std::atomic<long long> conflicts{0};
  std::atomic<long long> errors{0};
  std::atomic<long long> skipped{0};  // events that needed no write
  // From the watch event that made a status write necessary to the write's answer.
  std::atomic<long long> latency_us_total{0};
  std::atomic<long long> latency_us_max{0};
};

class PodAgent {
 public:
  struct Config {
    std::set<std::string> nodes;
    util::Millis ready_delay{0};
    int workers = 4;
    std::string host_ip = "127.0.0.1";
    // Pods whose containers name a host executable run as processes (README.md); nullopt: every pod is simulated.
    std::optional<ProcessRuntime::Config> processes;
  };
  using NodeStopped = std::function<bool(const std::string& node)>;

  PodAgent(kube::Client& client, Config config, NodeStopped node_stopped,
           const util::Clock& clock = util::systemClock());
  ~PodAgent();  // the process runtime (if any) kills what still runs

  // Watches and works until `stop`. Never throws; API errors are retried with backoff.
  void run(std::stop_token stop);
  // Brings every pod on `node` up to date again (its heartbeat resumed). Thread-safe.
  void resyncNode(const std::string& node);
  bool synced() const { return cache_.hasSynced(); }
  const PodAgentStats& stats() const { return stats_; }

 private:
  // What a worker did with a key; kRetry puts it back with backoff.
  enum class Outcome { kDone, kRetry };

  void onPodEvent(const watch::Event& event);
  void work(std::stop_token stop);
  Outcome process(const std::string& key);
  Outcome writeStatus(const std::string& key, Json pod, std::optional<util::MonoTime> seen_at);
  Outcome finishDeletion(const std::string& key, const Json& pod);
  // How much longer --ready-delay holds the pod's readiness back (zero when it may be Ready).
  util::Millis readyDelayLeft(const Json& pod);
  PodFacts factsFor(const Json& pod, util::Millis delay_left);
  // Whether the pod's containers run as processes (known to the runtime, or named a host executable).
  bool runsProcesses(const Json& pod) const;
  // planPod, or planProcessPod for a process pod (a deleted one: kDelete once its processes are gone).
  PodPlan planFor(const Json& pod, util::Millis delay_left);
  // A process pod: tell the runtime what the pod wants, then write its status or finish its deletion.
  Outcome processPod(const std::string& key, Json pod, std::optional<util::MonoTime> seen_at);

  kube::Client& client_;
  Config config_;
  NodeStopped node_stopped_;
  const util::Clock& clock_;
  watch::Cache cache_;
  // Per-pod keys: de-duplicated (a burst of events costs one write), one worker per pod at a time, a key added
  // while its pod is being written handed out again afterwards.
  controller::WorkQueue queue_;
  IpPool ips_;
  PodAgentStats stats_;
  std::unique_ptr<ProcessRuntime> runtime_;

  std::mutex mutex_;
  // When we first saw each pod (by uid) on our node, for --ready-delay.
  std::map<std::string, util::MonoTime> first_seen_;
  // When the event that queued each key arrived, for the latency figures.
  std::map<std::string, util::MonoTime> seen_at_;
};

}  // namespace singleton::sim
