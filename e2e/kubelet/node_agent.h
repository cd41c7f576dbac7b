// Plays the kubelet's part for a set of Nodes: registers them, keeps them Ready (a node status heartbeat and the
// node's Lease in kube-node-lease, the two signals the node-lifecycle controller reads), removes the not-ready and
// unreachable taints once they are Ready, and obeys the heartbeat annotation (README.md) read from a watch.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "kube/client.h"
#include "util/backoff.h"
#include "util/clock.h"
#include "watch/cache.h"
#include "watch/reflector.h"

namespace singleton::sim {

class NodeAgent {
 public:
  struct Config {
    std::vector<std::string> names;
    util::Millis heartbeat{2'000};
  };
  // Called (on the heartbeat thread) after the first good heartbeat of a resumed node, so its pods can be brought
  // up to date again.
  using ResumeListener = std::function<void(const std::string& node)>;

  NodeAgent(kube::Client& client, Config config, const util::Clock& clock = util::systemClock());

  void setResumeListener(ResumeListener listener) { on_resume_ = std::move(listener); }
  // Watches the nodes and heartbeats until `stop`. Never throws; API errors are retried with backoff.
  void run(std::stop_token stop);

  // Every node has been registered once and the node watch has its first snapshot, so stopped() is known.
  bool ready() const;
  bool isOurs(const std::string& name) const { return states_.contains(name); }
  // The node's heartbeat is stopped by annotation: it plays a lost node, so nothing of it (status, Lease, its
  // pods) is written until the annotation goes away.
  bool stopped(const std::string& name) const;
  const std::vector<std::string>& names() const { return config_.names; }

 private:
  struct NodeState {
    explicit NodeState(util::BackoffPolicy policy) : backoff(policy) {}
    bool registered = false;
    std::string uid;
    std::optional<kube::Lease> lease;  // as last written, for the next compare-and-swap
    util::MonoTime due{};              // next heartbeat
    bool stopped = false;
    bool resume_pending = false;  // resumed by annotation; tell the listener after the next good heartbeat
    util::Backoff backoff;
  };

  void onNodeEvent(const watch::Event& event);
  void heartbeatLoop(std::stop_token stop);
  // One node's registration (if needed), status heartbeat and Lease renewal.
  util::Status heartbeat(const std::string& name, NodeState& state);
  util::Status registerNode(const std::string& name, NodeState& state);
  util::Status renewLease(const std::string& name, NodeState& state);
  void removeNotReadyTaints(const std::string& name);

  kube::Client& client_;
  Config config_;
  const util::Clock& clock_;
  watch::Cache cache_;
  ResumeListener on_resume_;

  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  bool wake_requested_ = false;
  bool registered_all_ = false;
  // Keys fixed at construction; the values are guarded by mutex_ (the heartbeat thread takes copies of what it
  // needs and writes back results).
  std::map<std::string, NodeState> states_;
};

}  // namespace singleton::sim
