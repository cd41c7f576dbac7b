#include "pod_agent.h"

#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "kube/object.h"
#include "util/log.h"

namespace singleton::sim {
namespace {

const log::Logger kLog("pod");

using util::ErrorCode;

// A status write that meets a Conflict is re-planned on the pod as read afresh this many times before the key
// goes back to the queue with backoff.
constexpr int kWriteAttempts = 4;

std::string nodeNameOf(const Json& pod) { return stringField(objectField(pod, "spec"), "nodeName"); }

}  // namespace

PodAgent::PodAgent(kube::Client& client, Config config, NodeStopped node_stopped, const util::Clock& clock)
    : client_(client),
      config_(std::move(config)),
      node_stopped_(std::move(node_stopped)),
      clock_(clock),
      // Retries back off from 50 ms to 10 s, as the kubelet's own queue did (less eager than the operator's 5 ms).
      queue_(clock, {},
             controller::WorkQueueOptions{.base_delay = util::Millis(50), .max_delay = util::Millis(10'000)}) {
  cache_.addListener([this](const watch::Event& event) { onPodEvent(event); });
  if (config_.processes) {
    runtime_ = std::make_unique<ProcessRuntime>(client_, *config_.processes,
                                                [this](const std::string& key) { queue_.add(key); });
  }
}

PodAgent::~PodAgent() = default;

void PodAgent::run(std::stop_token stop) {
  watch::ReflectorOptions options;
  // Only bound pods; those of other nodes are dropped by the listener, but their IPs are noted.
  options.field_selector = "spec.nodeName!=";
  options.transform = stripManagedFields;
  watch::Reflector reflector(client_, kube::kPods, options, cache_, clock_);
  {
    std::vector<std::jthread> workers;
    for (int i = 0; i < config_.workers; ++i) workers.emplace_back([this, stop] { work(stop); });
    std::jthread processes;
    if (runtime_) processes = std::jthread([this, stop] { runtime_->run(stop); });
    reflector.run(stop);
  }  // the workers see `stop` too and are joined here
}

void PodAgent::onPodEvent(const watch::Event& event) {
  const Json& pod = event.object;
  const std::string uid = kube::uidOf(pod);
  const std::string ip = podIp(pod);
  const std::string key = watch::objectKey(pod);
  if (event.type == watch::EventType::kDeleted) {
    if (runtime_) runtime_->forget(uid);
    ips_.release(uid, ip);
    std::lock_guard lock(mutex_);
    first_seen_.erase(uid);
    seen_at_.erase(key);
    return;
  }
  if (!ip.empty()) ips_.markUsed(ip);
  if (!config_.nodes.contains(nodeNameOf(pod))) return;
  {
    std::lock_guard lock(mutex_);
    seen_at_.try_emplace(key, clock_.now());
  }
  queue_.add(key);
}

void PodAgent::resyncNode(const std::string& node) {
  int count = 0;
  for (const Json& pod : cache_.list()) {
    if (nodeNameOf(pod) != node) continue;
    queue_.add(watch::objectKey(pod));
    ++count;
  }
  kLog.info("resyncing the node's pods", {.values = {{"node", node}, {"pods", count}}});
}

void PodAgent::work(std::stop_token stop) {
  while (std::optional<std::string> key = queue_.get(stop)) {
    Outcome outcome = Outcome::kRetry;
    try {
      outcome = process(*key);
    } catch (const std::exception& e) {
      // Nothing here should throw; if something does, the pod is retried rather than the process lost.
      kLog.error("unexpected failure", {.err = e.what(), .object = log::objectRef(*key)});
    }
    if (outcome == Outcome::kRetry) {
      ++stats_.errors;
      queue_.addRateLimited(*key);
    } else {
      queue_.forget(*key);
    }
    queue_.done(*key);
  }
}

util::Millis PodAgent::readyDelayLeft(const Json& pod) {
  if (config_.ready_delay <= util::Millis(0)) return util::Millis(0);
  const util::MonoTime now = clock_.now();
  std::lock_guard lock(mutex_);
  // A pod already started before we saw it (we restarted) has waited long enough.
  auto [it, inserted] = first_seen_.try_emplace(kube::uidOf(pod), podStarted(pod) ? now - config_.ready_delay : now);
  const auto left = std::chrono::duration_cast<util::Millis>(it->second + config_.ready_delay - now);
  return std::max(left, util::Millis(0));
}

PodFacts PodAgent::factsFor(const Json& pod, util::Millis delay_left) {
  PodFacts facts;
  facts.now = clock_.wallNow();
  facts.host_ip = config_.host_ip;
  facts.ready_delay_elapsed = delay_left <= util::Millis(0);
  if (podIp(pod).empty() && !hostNetwork(pod)) facts.pod_ip = ips_.assign(kube::uidOf(pod));
  return facts;
}

bool PodAgent::runsProcesses(const Json& pod) const {
  return runtime_ && (runtime_->known(kube::uidOf(pod)) || isProcessPod(pod));
}

PodPlan PodAgent::planFor(const Json& pod, util::Millis delay_left) {
  if (!runsProcesses(pod)) return planPod(pod, factsFor(pod, delay_left));
  const std::string uid = kube::uidOf(pod);
  const Json* deletion = field(objectField(pod, "metadata"), "deletionTimestamp");
  if (deletion != nullptr && !deletion->is_null()) {
    PodPlan plan;
    if (runtime_->stopped(uid)) {
      plan.action = PodPlan::Action::kDelete;
      plan.what = "deleted (processes ended)";
    }
    return plan;
  }
  const std::optional<PodRun> run = runtime_->status(uid);
  if (!run) return {};
  return planProcessPod(pod, factsFor(pod, util::Millis(0)), *run);
}

PodAgent::Outcome PodAgent::processPod(const std::string& key, Json pod, std::optional<util::MonoTime> seen_at) {
  const std::string phase = stringField(objectField(pod, "status"), "phase");
  const Json* deletion = field(objectField(pod, "metadata"), "deletionTimestamp");
  const bool deleting = deletion != nullptr && !deletion->is_null();
  // A terminal pod's containers have all ended for good: nothing to start, nothing to write.
  if (!deleting && (phase == "Failed" || phase == "Succeeded")) return Outcome::kDone;
  std::string ip = podIp(pod);
  if (ip.empty()) ip = hostNetwork(pod) ? config_.host_ip : ips_.assign(kube::uidOf(pod));
  runtime_->sync(pod, ip);
  if (deleting) {
    // The runtime queues the key again once the processes are gone.
    if (!runtime_->stopped(kube::uidOf(pod))) return Outcome::kDone;
    return finishDeletion(key, pod);
  }
  return writeStatus(key, std::move(pod), seen_at);
}

PodAgent::Outcome PodAgent::process(const std::string& key) {
  std::optional<util::MonoTime> seen_at;
  {
    std::lock_guard lock(mutex_);
    if (auto it = seen_at_.find(key); it != seen_at_.end()) {
      seen_at = it->second;
      seen_at_.erase(it);
    }
  }
  std::optional<Json> pod = cache_.get(key);
  if (!pod) return Outcome::kDone;
  const std::string node = nodeNameOf(*pod);
  // A stopped node plays a lost one: its kubelet writes nothing until it is back (then resyncNode).
  if (!config_.nodes.contains(node) || node_stopped_(node)) return Outcome::kDone;

  if (runsProcesses(*pod)) return processPod(key, std::move(*pod), seen_at);
  const util::Millis delay_left = readyDelayLeft(*pod);
  const PodPlan plan = planFor(*pod, delay_left);
  Outcome outcome = Outcome::kDone;
  switch (plan.action) {
    case PodPlan::Action::kNothing:
      ++stats_.skipped;
      break;
    case PodPlan::Action::kDelete:
      outcome = finishDeletion(key, *pod);
      break;
    case PodPlan::Action::kWriteStatus:
      outcome = writeStatus(key, std::move(*pod), seen_at);
      break;
  }
  if (delay_left > util::Millis(0)) queue_.addAfter(key, delay_left);
  return outcome;
}

PodAgent::Outcome PodAgent::writeStatus(const std::string& key, Json pod, std::optional<util::MonoTime> seen_at) {
  for (int attempt = 1; attempt <= kWriteAttempts; ++attempt) {
    const PodPlan plan = planFor(pod, runsProcesses(pod) ? util::Millis(0) : readyDelayLeft(pod));
    if (plan.action == PodPlan::Action::kDelete) return finishDeletion(key, pod);
    if (plan.action != PodPlan::Action::kWriteStatus) return Outcome::kDone;
    if (plan.status.value("podIP", "").empty()) {
      kLog.error("no free pod IP in 10.244.0.0/16", {.object = log::objectRef(key)});
      return Outcome::kRetry;
    }
    const std::string ns = kube::namespaceOf(pod);
    const std::string name = kube::nameOf(pod);
    // The resourceVersion makes the patch a compare-and-swap, so we never overwrite a condition another writer
    // (the node-lifecycle controller) set after the version we planned on.
    const Json patch = {{"metadata", {{"resourceVersion", kube::resourceVersionOf(pod)}}}, {"status", plan.status}};
    auto written = client_.mergePatch(kube::kPods, ns, name, patch, "status");
    if (written.ok()) {
      ++stats_.status_writes;
      if (seen_at) {
        const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - *seen_at);
        stats_.latency_us_total += latency.count();
        long long max = stats_.latency_us_max.load();
        while (latency.count() > max && !stats_.latency_us_max.compare_exchange_weak(max, latency.count())) {
        }
        kLog.debug("status written",
                   {.object = log::objectRef(key),
                    .values = {{"status", plan.what}, {"latency_ms", static_cast<double>(latency.count()) / 1000.0}}});
      } else {
        kLog.debug("status written", {.object = log::objectRef(key), .values = {{"status", plan.what}}});
      }
      return Outcome::kDone;
    }
    const util::Error& error = written.error();
    if (error.code == ErrorCode::kNotFound) return Outcome::kDone;
    if (error.code != ErrorCode::kConflict) {
      kLog.warn("status write failed; retrying", {.err = error.describe(), .object = log::objectRef(key)});
      return Outcome::kRetry;
    }
    // Someone wrote first: decide again on the pod as it is now rather than wait for the watch to catch up.
    ++stats_.conflicts;
    auto fresh = client_.get(kube::kPods, ns, name);
    if (!fresh.ok()) {
      if (fresh.error().code == ErrorCode::kNotFound) return Outcome::kDone;
      kLog.warn("re-reading after a conflict failed; retrying",
                {.err = fresh.error().describe(), .object = log::objectRef(key)});
      return Outcome::kRetry;
    }
    pod = std::move(*fresh);
    stripManagedFields(pod);
    const std::string node = nodeNameOf(pod);
    if (!config_.nodes.contains(node) || node_stopped_(node)) return Outcome::kDone;
  }
  kLog.warn("status write kept conflicting; retrying later", {.object = log::objectRef(key)});
  return Outcome::kRetry;
}

PodAgent::Outcome PodAgent::finishDeletion(const std::string& key, const Json& pod) {
  kube::DeleteOptions options;
  options.grace_period_seconds = 0;
  // Only this incarnation: a pod created again under the same name (a StatefulSet's) is not ours to delete.
  options.precondition_uid = kube::uidOf(pod);
  const util::Status removed = client_.remove(kube::kPods, kube::namespaceOf(pod), kube::nameOf(pod), options);
  if (removed.ok()) {
    ++stats_.deletes;
    kLog.debug("deletion finished", {.object = log::objectRef(key)});
    return Outcome::kDone;
  }
  const ErrorCode code = removed.error().code;
  // Gone already, or another incarnation (the uid precondition failed): nothing left to do.
  if (code == ErrorCode::kNotFound || code == ErrorCode::kConflict) return Outcome::kDone;
  kLog.warn("finishing deletion failed; retrying", {.err = removed.error().describe(), .object = log::objectRef(key)});
  return Outcome::kRetry;
}

}  // namespace singleton::sim
