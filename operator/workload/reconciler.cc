#include "operator/workload/reconciler.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>

#include "operator/workload/reconcile_context.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

// A replica that no longer leads looks again this much later (its workers are being stopped meanwhile).
constexpr util::Millis kNotLeadingRecheck{1'000};

}  // namespace

long long operatorTermOf(const kube::Lease& lease) {
  const auto text = annotationOf(lease.raw, kAnnotationOperatorTerm);
  if (!text) return 0;
  long long term = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), term);
  if (ec != std::errc() || end != text->data() + text->size()) return 0;
  return term;
}

Reconciler::Reconciler(kube::Client& client, const Informers& informers, controller::EventRecorder& events,
                       controller::Registry& metrics, const util::Clock& clock)
    : client_(client), informers_(informers), events_(events), metrics_(metrics), clock_(clock), recent_(clock) {
  // Registered up front so that /metrics shows the family before the first failover.
  metrics_.histogram(kMetricFailoverDuration, kHelpFailoverDuration, controller::latencyBuckets());
  for (const char* check : {"cache", "api"}) metrics_.counter(kMetricPromotions, kHelpPromotions, {{"check", check}});
}

controller::ReconcileResult Reconciler::reconcile(const std::string& key, const controller::WriteGate& gate) {
  const auto slash = key.find('/');
  if (slash == std::string::npos) return {controller::ReconcileResult::Action::kForget, {}, "malformed key " + key};
  const std::string ns = key.substr(0, slash);
  const std::string name = key.substr(slash + 1);

  // Step 1: the workload is gone; garbage collection removes its pods, Lease and Service.
  const auto object = recent_.resolve("workloads/" + key, informers_.workloads.get(key));
  if (!object) {
    forgetWorkload(ns, name);
    return {};
  }
  auto workload = Workload::fromJson(*object);
  if (!workload.ok()) {
    kLog.warn("ignoring a malformed SingletonWorkload", {.err = workload.error().describe(), .object = {ns, name}});
    return {};
  }
  if (workload->deleting) return {};

  Context ctx(gate, std::move(*workload));
  ctx.workload_version = metaString(*object, "resourceVersion");
  util::Status status = [&]() -> util::Status {
    if (auto s = observe(ctx); !s.ok()) return s;
    // Self-fencing: a Lease written under a higher operator term means a newer operator leads; this replica is
    // stale (paused, partitioned) and must not write anything, whatever its own gate says.
    if (ctx.lease && operatorTermOf(*ctx.lease) > gate.term().value()) {
      util::Error error = util::makeError(util::ErrorCode::kCancelled, "the Lease records operator term " +
                                                                           std::to_string(operatorTermOf(*ctx.lease)) +
                                                                           ", ours is " + gate.term().str());
      error.reason = kReasonStaleTerm;
      return error;
    }
    return run(ctx);
  }();
  flushEvents(ctx);

  if (ctx.lease) {
    metrics_.gauge(kMetricFencingToken, kHelpFencingToken, {{"namespace", ns}, {"name", name}})
        .set(static_cast<double>(ctx.token()));
  }
  if (!status.ok()) {
    const util::Error& error = status.error();
    const log::Fields fields{.err = error.describe(), .object = {ns, name}};
    switch (error.code) {
      case util::ErrorCode::kConflict:
      case util::ErrorCode::kAlreadyExists:
        kLog.debug("lost a race; reconciling again", fields);
        return {controller::ReconcileResult::Action::kRequeue, {}, error.describe()};
      case util::ErrorCode::kCancelled:
        if (error.reason == kReasonStaleTerm) {
          kLog.warn("a newer operator term owns this workload; making no writes", fields);
          return {controller::ReconcileResult::Action::kRequeueAfter, kStaleTermRecheck, error.describe()};
        }
        kLog.info("stopped: this replica does not lead", fields);
        return {controller::ReconcileResult::Action::kRequeueAfter, kNotLeadingRecheck, error.describe()};
      default:
        kLog.warn("reconcile failed", fields);
        // A 429 (or 503) with Retry-After: the apiserver said when; the backoff alone would retry within ms.
        return {controller::ReconcileResult::Action::kRetry, error.retry_after.value_or(util::Millis::zero()),
                error.describe()};
    }
  }
  if (ctx.deferred_error) {
    kLog.warn("reconcile incomplete", {.err = ctx.deferred_error->describe(), .object = {ns, name}});
    return {controller::ReconcileResult::Action::kRetry, {}, ctx.deferred_error->describe()};
  }
  if (ctx.status_deferred) ctx.requeueAfter(kStatusAfterCreate);
  if (ctx.requeue_after) {
    return {
        controller::ReconcileResult::Action::kRequeueAfter, *ctx.requeue_after,
        ctx.handoff_pending ? "waiting for the previous leader to stop" : "status deferred until the new pods start"};
  }
  return {};
}

util::Status Reconciler::run(Context& ctx) {
  // The failover path comes first: the Lease names a healthy leader (moving it if it must), then the labels follow
  // the Lease (demote before promote). Creating missing pods (design step 2) comes after it, so that a failover
  // costs just the Lease write and the pod patches (latency budget) and a deleted leader is seen as deleted, not
  // as its replacement. Then the slower convergence (scale-down, rollout, Service) and the status. Events are sent
  // last, by reconcile(), for the same reason.
  if (auto s = elect(ctx); !s.ok()) return s;
  if (auto s = labelPods(ctx); !s.ok()) return s;
  if (auto s = ensurePods(ctx); !s.ok()) return s;
  if (auto s = scaleDown(ctx); !s.ok()) return s;
  if (auto s = rollOut(ctx); !s.ok()) return s;
  if (auto s = reconcileService(ctx); !s.ok()) return s;
  return updateStatus(ctx);
}

util::Status Reconciler::observe(Context& ctx) {
  const Workload& w = ctx.workload;
  const std::string lease_key = "leases/" + w.ns + "/" + w.leaseName();
  if (auto object = recent_.resolve(lease_key, informers_.leases.get(w.ns, w.leaseName()))) {
    auto lease = kube::leaseFromJson(*object);
    // Unreadable: deciding without it could lose the token, so nothing is written until someone repairs it.
    if (!lease.ok()) return std::move(lease).takeError();
    ctx.lease = std::move(*lease);
  }
  ctx.service = recent_.resolve("services/" + w.ns + "/" + w.name, informers_.services.get(w.ns, w.name));

  // Before the pods are read: the cache only moves forward, so they are at least this fresh.
  if (informers_.pods_resource_version) {
    ctx.pods_cache_revision = kube::revisionOf(informers_.pods_resource_version()).value_or(0);
  }
  {
    std::lock_guard lock(mutex_);
    const auto it = label_writes_.find(w.key());
    if (it != label_writes_.end()) ctx.labels_written_at = it->second;
    ctx.labels_unconfirmed = unconfirmed_.contains(w.key());
    // The Lease's token outlives the Lease in our memory (a deleted Lease is re-created above it).
    TokenMemory& memory = tokens_seen_[w.key()];
    memory.forgotten.reset();
    if (ctx.lease) memory.token = std::max(memory.token, ctx.token());
  }

  std::set<std::string> names;
  for (const std::string& pod_key : informers_.pod_index.podKeys(w.key()))
    names.insert(pod_key.substr(w.ns.size() + 1));
  // The pods we expect, and the holder: they may be known only from our own recent writes, not yet from the cache.
  for (int i = 0; i < w.replicas; ++i) names.insert(w.podName(i));
  if (!ctx.holder().empty()) names.insert(ctx.holder());
  for (const std::string& name : names) {
    auto pod = recent_.resolve("pods/" + w.ns + "/" + name, informers_.pods.get(w.ns, name));
    if (pod && labelOf(*pod, kLabelWorkload) == w.name) ctx.pods.emplace(name, std::move(*pod));
  }
  return {};
}

void Reconciler::forgetWorkload(const std::string& ns, const std::string& name) {
  metrics_.remove(kMetricFencingToken, {{"namespace", ns}, {"name", name}});
  recent_.forgetPrefix("workloads/" + ns + "/" + name);
  recent_.forgetPrefix("leases/" + ns + "/" + name + "-leader");
  recent_.forgetPrefix("services/" + ns + "/" + name);
  std::lock_guard lock(mutex_);
  const std::string key = ns + "/" + name;
  failover_started_.erase(key);
  handoff_started_.erase(key);
  label_writes_.erase(key);
  unconfirmed_.erase(key);
  // The highest token stays for kTokenMemory: a workload re-created under the same name continues above it.
  const util::MonoTime now = clock_.now();
  if (const auto it = tokens_seen_.find(key); it != tokens_seen_.end() && !it->second.forgotten) {
    it->second.forgotten = now;
  }
  std::erase_if(tokens_seen_, [&](const auto& entry) {
    return entry.second.forgotten && now - *entry.second.forgotten >= kTokenMemory;
  });
}

void Reconciler::noteLabelWrite(const Context& ctx, const Json& pod) {
  // An unreadable version counts as the highest: the cache can then never be shown to cover it.
  const std::uint64_t revision =
      kube::revisionOf(metaString(pod, "resourceVersion")).value_or(std::numeric_limits<std::uint64_t>::max());
  std::lock_guard lock(mutex_);
  std::uint64_t& last = label_writes_[ctx.workload.key()];
  last = std::max(last, revision);
}

bool Reconciler::podCacheCoversLabels(const Context& ctx) const {
  // Every leader label was written by an operator leader: by an earlier one before this replica's own Lease write
  // (leadingSince), or by this replica. etcd orders all writes by one revision, and the cache applies changes in that
  // order, so a cache past both revisions shows all of them; this reconcile's own writes are in ctx.pods from the
  // API's answers, and no other reconcile of the workload runs meanwhile.
  // A label write of ours whose outcome is unknown may be applied at a revision we do not know: no cache position
  // covers it until a read from the API has shown the pods (noteLabelsConfirmed).
  if (ctx.labels_unconfirmed) return false;
  const std::uint64_t since = ctx.gate.leadingSince();
  return since != 0 && ctx.pods_cache_revision >= since && ctx.pods_cache_revision >= ctx.labels_written_at;
}

void Reconciler::noteFailoverStart(const std::string& key, util::MonoTime since, long long token) {
  std::lock_guard lock(mutex_);
  failover_started_.try_emplace(key, FailoverStart{since, token});
}

void Reconciler::noteLeaderLabelled(const std::string& key, long long token) {
  FailoverStart start;
  {
    std::lock_guard lock(mutex_);
    const auto it = failover_started_.find(key);
    if (it == failover_started_.end()) return;
    start = it->second;
    failover_started_.erase(it);
  }
  // The same token: the leader recovered before anyone took over, so there is no failover to time.
  if (token <= start.token) return;
  const auto elapsed = std::chrono::duration<double>(clock_.now() - start.since).count();
  metrics_.histogram(kMetricFailoverDuration, kHelpFailoverDuration, controller::latencyBuckets())
      .observe(std::max(0.0, elapsed));
}

util::MonoTime Reconciler::unhealthyStart(const Json* pod) const {
  const util::MonoTime now = clock_.now();
  if (!pod) return now;
  const auto at = unhealthySince(*pod);
  if (!at) return now;
  // Remote wall time, turned into an age on our wall clock and then into our monotonic time. Skew can only make
  // the age wrong, never negative; an hour caps the damage of a wildly wrong clock.
  const auto age = clock_.wallNow() - *at;
  if (age <= util::WallTime::duration::zero()) return now;
  return now - std::min(std::chrono::duration_cast<util::MonoTime::duration>(age),
                        std::chrono::duration_cast<util::MonoTime::duration>(std::chrono::hours(1)));
}

void Reconciler::endTerm() {
  recent_.forgetPrefix("");
  std::lock_guard lock(mutex_);
  failover_started_.clear();
  // The next term measures a pending hand-off from its own first sight of it.
  handoff_started_.clear();
  label_writes_.clear();
}

}  // namespace singleton::op
