#include "node_agent.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "kube/object.h"
#include "node_status.h"
#include "util/log.h"
#include "util/time_format.h"

namespace singleton::sim {
namespace {

const log::Logger kLog("node");

using util::ErrorCode;

// Failed heartbeats are retried this soon at first, then less often, but never less often than --heartbeat.
const util::BackoffPolicy kRetryPolicy{util::Millis(100), util::Millis(5'000), 2.0, 0.2};

bool readyTrue(const Json& node) {
  const Json* ready = kube::conditionOf(node, "Ready");
  return ready != nullptr && stringField(*ready, "status") == "True";
}

}  // namespace

NodeAgent::NodeAgent(kube::Client& client, Config config, const util::Clock& clock)
    : client_(client), config_(std::move(config)), clock_(clock) {
  for (const std::string& name : config_.names) states_.try_emplace(name, kRetryPolicy);
  cache_.addListener([this](const watch::Event& event) { onNodeEvent(event); });
}

bool NodeAgent::ready() const {
  std::lock_guard lock(mutex_);
  return registered_all_ && cache_.hasSynced();
}

bool NodeAgent::stopped(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const auto it = states_.find(name);
  return it != states_.end() && it->second.stopped;
}

void NodeAgent::run(std::stop_token stop) {
  watch::ReflectorOptions options;
  // Only the nodes we registered carry the label; others (another simulated kubelet's) are none of our business.
  options.label_selector = std::string(kManagedLabel) + "=true";
  options.transform = stripManagedFields;
  watch::Reflector reflector(client_, kube::kNodes, options, cache_, clock_);
  std::jthread watcher([&reflector](std::stop_token token) { reflector.run(token); });
  std::stop_callback forward(stop, [&watcher] { watcher.request_stop(); });
  heartbeatLoop(stop);
}

void NodeAgent::onNodeEvent(const watch::Event& event) {
  const std::string name = kube::nameOf(event.object);
  const auto it = states_.find(name);
  if (it == states_.end()) return;
  // A deleted node is registered again at once (the heartbeat finds it gone); anything else may need a taint
  // removed, which the heartbeat thread does.
  const bool now_stopped = event.type != watch::EventType::kDeleted && heartbeatStopped(event.object);
  {
    std::lock_guard lock(mutex_);
    NodeState& state = it->second;
    if (now_stopped != state.stopped) {
      kLog.info(now_stopped ? "heartbeat stopped by annotation" : "heartbeat resumed by annotation",
                {.object = {.name = name}, .values = {{"annotation", kHeartbeatAnnotation}}});
    }
    if (state.stopped && !now_stopped) {
      state.due = clock_.now();
      state.resume_pending = true;
    }
    if (event.type == watch::EventType::kDeleted) state.due = clock_.now();
    state.stopped = now_stopped;
    wake_requested_ = true;
  }
  wake_.notify_all();
}

void NodeAgent::heartbeatLoop(std::stop_token stop) {
  // The first snapshot tells which nodes are stopped by annotation (a lost node must not send even one heartbeat
  // after we restart), so nothing is written before it.
  while (!cache_.hasSynced()) {
    if (!clock_.sleepFor(util::Millis(5), stop)) return;
  }
  while (!stop.stop_requested()) {
    // The nodes due now, chosen under the lock; the API calls run without it.
    std::vector<std::string> due;
    {
      std::lock_guard lock(mutex_);
      wake_requested_ = false;
      const util::MonoTime now = clock_.now();
      for (const auto& [name, state] : states_) {
        if (!state.stopped && state.due <= now) due.push_back(name);
      }
    }
    for (const std::string& name : due) {
      NodeState& state = states_.at(name);
      const util::Status status = heartbeat(name, state);
      bool resumed = false;
      {
        std::lock_guard lock(mutex_);
        if (status.ok()) {
          state.backoff.reset();
          state.due = clock_.now() + config_.heartbeat;
          resumed = std::exchange(state.resume_pending, false);
        } else {
          state.due = clock_.now() + std::min(state.backoff.next(), config_.heartbeat);
        }
      }
      if (!status.ok())
        kLog.warn("heartbeat failed; retrying", {.err = status.error().describe(), .object = {.name = name}});
      // Only now that the node reads Ready again: the node-lifecycle controller marks a not-ready node's pods
      // not ready on every pod update, so resyncing them earlier would make it flip them back.
      if (resumed && on_resume_) on_resume_(name);
    }
    {
      std::lock_guard lock(mutex_);
      // A stopped node exists (it carries the annotation) and is not to be written: it counts as registered.
      bool all_registered = true;
      for (const auto& [name, state] : states_) all_registered = all_registered && (state.registered || state.stopped);
      if (all_registered && !registered_all_) {
        registered_all_ = true;
        kLog.info(
            "registered the nodes",
            {.values = {{"nodes", states_.size()}, {"first", config_.names.front()}, {"last", config_.names.back()}}});
      }
    }
    for (const std::string& name : config_.names) {
      if (!stopped(name)) removeNotReadyTaints(name);
    }

    std::unique_lock lock(mutex_);
    util::MonoTime next = clock_.now() + std::chrono::hours(1);
    for (const auto& [name, state] : states_) {
      if (!state.stopped) next = std::min(next, state.due);
    }
    clock_.waitUntil(lock, wake_, next, stop, [this] { return wake_requested_; });
  }
}

util::Status NodeAgent::heartbeat(const std::string& name, NodeState& state) {
  if (!state.registered) {
    if (auto s = registerNode(name, state); !s.ok()) return s;
  }
  const Json current = cache_.get(name).value_or(Json());
  const Json patch = {{"status", nodeStatus(name, current, clock_.wallNow())}};
  auto written = client_.mergePatch(kube::kNodes, "", name, patch, "status");
  if (!written.ok()) {
    if (written.error().code == ErrorCode::kNotFound) {
      kLog.warn("deleted by someone; registering it again", {.object = {.name = name}});
      state.registered = false;
      state.lease.reset();
    }
    return std::move(written).takeError();
  }
  return renewLease(name, state);
}

util::Status NodeAgent::registerNode(const std::string& name, NodeState& state) {
  auto node = client_.get(kube::kNodes, "", name);
  if (!node.ok() && node.error().code == ErrorCode::kNotFound) {
    node = client_.create(kube::kNodes, "", nodeObject(name, clock_.wallNow()));
    if (!node.ok() && node.error().code == ErrorCode::kAlreadyExists) node = client_.get(kube::kNodes, "", name);
    if (node.ok()) kLog.info("created", {.object = {.name = name}});
  } else if (node.ok() && stringField(objectField(objectField(*node, "metadata"), "labels"), kManagedLabel) != "true") {
    // A node someone else created under our name: label it so our watch sees it.
    node = client_.mergePatch(kube::kNodes, "", name, {{"metadata", {{"labels", {{kManagedLabel, "true"}}}}}});
    if (node.ok()) kLog.info("adopted an existing node", {.object = {.name = name}});
  }
  if (!node.ok()) return std::move(node).takeError();
  state.uid = kube::uidOf(*node);
  state.registered = true;
  return {};
}

util::Status NodeAgent::renewLease(const std::string& name, NodeState& state) {
  const util::WallTime now = clock_.wallNow();
  // Two rounds: a Conflict or NotFound on the remembered Lease is answered by reading the current one once.
  for (int round = 0; round < 2; ++round) {
    if (!state.lease) {
      auto current = client_.getLease(kNodeLeaseNamespace, name);
      if (!current.ok() && current.error().code == ErrorCode::kNotFound) {
        current = client_.createLease(nodeLease(name, state.uid, now));
        if (current.ok()) {
          state.lease = std::move(*current);
          return {};
        }
      }
      if (!current.ok()) return std::move(current).takeError();
      state.lease = std::move(*current);
    }
    kube::Lease lease = *state.lease;
    lease.spec.holder_identity = name;
    lease.spec.lease_duration_seconds = kNodeLeaseDurationSeconds;
    lease.spec.renew_time = now;
    auto updated = client_.updateLease(lease);
    if (updated.ok()) {
      state.lease = std::move(*updated);
      return {};
    }
    state.lease.reset();
    const ErrorCode code = updated.error().code;
    if (code != ErrorCode::kConflict && code != ErrorCode::kNotFound) return std::move(updated).takeError();
  }
  return util::makeError(ErrorCode::kConflict, "lease " + name + ": conflicting writers");
}

void NodeAgent::removeNotReadyTaints(const std::string& name) {
  const std::optional<Json> node = cache_.get(name);
  // Only once the node reads Ready: before that the controller would put the taint back.
  if (!node || !readyTrue(*node)) return;
  std::optional<Json> taints = taintsWithoutNotReady(*node);
  if (!taints) return;
  // The resourceVersion makes this a compare-and-swap: taints are shared with the node-lifecycle controller, and a
  // Conflict just means the next event brings a newer node to decide on.
  const Json patch = {{"metadata", {{"resourceVersion", kube::resourceVersionOf(*node)}}},
                      {"spec", {{"taints", std::move(*taints)}}}};
  auto written = client_.mergePatch(kube::kNodes, "", name, patch);
  if (written.ok()) {
    kLog.info("removed the not-ready/unreachable taints", {.object = {.name = name}});
  } else if (written.error().code != ErrorCode::kConflict) {
    kLog.warn("removing taints failed", {.err = written.error().describe(), .object = {.name = name}});
  }
}

}  // namespace singleton::sim
