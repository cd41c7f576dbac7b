#include "operator/workload/reconciler.h"

#include <algorithm>
#include <set>

#include "operator/workload/findings.h"
#include "operator/workload/observation.h"
#include "operator/workload/workload_metrics.h"
#include "operator/workload/workload_writer.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

// A replica that no longer leads looks again this much later (its workers are being stopped meanwhile).
constexpr util::Millis kNotLeadingRecheck{1'000};

}  // namespace

Reconciler::Reconciler(kube::Client& client, const Informers& informers, controller::EventRecorder& events,
                       controller::Registry& metrics, const util::Clock& clock)
    : client_(client), informers_(informers), events_(events), metrics_(metrics), clock_(clock), recent_(clock) {
  // Registered up front so that /metrics shows the family before the first failover.
  metrics_.histogram(kFailoverDuration.name, kFailoverDuration.help, controller::latencyBuckets());
  for (const char* check : {"cache", "api"}) metrics_.counter(kPromotions.name, kPromotions.help, {{"check", check}});
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

  Observation observation{.workload = std::move(*workload), .workload_version = metaString(*object, "resourceVersion")};
  auto objects = observe(observation);
  Writer writer({client_, recent_, memory_, clock_}, gate, observation,
                objects.ok() ? std::move(*objects) : WorkloadObjects{});
  Findings findings;
  util::Status status = [&]() -> util::Status {
    if (!objects.ok()) return objects.error();
    // Self-fencing: a Lease written under a higher operator term means a newer operator leads; this replica is
    // stale (paused, partitioned) and must not write anything, whatever its own gate says.
    if (writer.lease() && operatorTermOf(*writer.lease()) > gate.term().value()) {
      util::Error error =
          util::makeError(util::ErrorCode::kCancelled, "the Lease records operator term " +
                                                           std::to_string(operatorTermOf(*writer.lease())) +
                                                           ", ours is " + gate.term().str());
      error.reason = kReasonStaleTerm;
      return error;
    }
    return run(writer, findings);
  }();
  writer.flushEvents(events_);

  if (writer.lease()) {
    metrics_.gauge(kFencingToken.name, kFencingToken.help, {{"namespace", ns}, {"name", name}})
        .set(static_cast<double>(writer.view().token()));
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
  if (findings.deferred_error) {
    kLog.warn("reconcile incomplete", {.err = findings.deferred_error->describe(), .object = {ns, name}});
    return {controller::ReconcileResult::Action::kRetry, {}, findings.deferred_error->describe()};
  }
  if (findings.status_deferred) findings.requeueAfter(kStatusAfterCreate);
  if (findings.requeue_after) {
    return {controller::ReconcileResult::Action::kRequeueAfter, *findings.requeue_after,
            findings.handoff_pending ? "waiting for the previous leader to stop"
                                     : "status deferred until the new pods start"};
  }
  return {};
}

util::Status Reconciler::run(Writer& writer, Findings& findings) {
  // The failover path comes first: the Lease names a healthy leader (moving it if it must), then the labels follow
  // the Lease (demote before promote). Creating missing pods (design step 2) comes after it, so that a failover
  // costs just the Lease write and the pod patches (latency budget) and a deleted leader is seen as deleted, not
  // as its replacement. Then the slower convergence (scale-down, rollout, Service) and the status. Events are sent
  // last, by reconcile(), for the same reason.
  if (auto s = elect(writer, findings); !s.ok()) return s;
  if (auto s = labelPods(writer, findings); !s.ok()) return s;
  if (auto s = ensurePods(writer, findings); !s.ok()) return s;
  if (auto s = scaleDown(writer); !s.ok()) return s;
  if (auto s = rollOut(writer); !s.ok()) return s;
  if (auto s = reconcileService(writer, findings); !s.ok()) return s;
  return updateStatus(writer, findings);
}

util::Result<WorkloadObjects> Reconciler::observe(Observation& observation) {
  const Workload& w = observation.workload;
  WorkloadObjects objects;
  const std::string lease_key = "leases/" + w.ns + "/" + w.leaseName();
  if (auto object = recent_.resolve(lease_key, informers_.leases.get(w.ns, w.leaseName()))) {
    auto lease = kube::leaseFromJson(*object);
    // Unreadable: deciding without it could lose the token, so nothing is written until someone repairs it.
    if (!lease.ok()) return std::move(lease).takeError();
    objects.lease = std::move(*lease);
  }
  objects.service = recent_.resolve("services/" + w.ns + "/" + w.name, informers_.services.get(w.ns, w.name));

  // Before the pods are read: the cache only moves forward, so they are at least this fresh.
  if (informers_.pods_resource_version) {
    observation.pods_cache_revision = kube::revisionOf(informers_.pods_resource_version()).value_or(0);
  }
  const ReconcilerMemory::LabelWrites label_writes = memory_.labelWrites(w.key());
  observation.labels_written_at = label_writes.written_at;
  observation.labels_unconfirmed = label_writes.unconfirmed;
  const WorkloadView view{w, objects.pods, objects.lease};
  memory_.noteTokenSeen(w.key(), objects.lease ? std::optional<long long>(view.token()) : std::nullopt);

  std::set<std::string> names;
  for (const std::string& pod_key : informers_.pod_index.podKeys(w.key()))
    names.insert(pod_key.substr(w.ns.size() + 1));
  // The pods we expect, and the holder: they may be known only from our own recent writes, not yet from the cache.
  for (int i = 0; i < w.replicas; ++i) names.insert(w.podName(i));
  if (!view.holder().empty()) names.insert(view.holder());
  for (const std::string& name : names) {
    auto pod = recent_.resolve("pods/" + w.ns + "/" + name, informers_.pods.get(w.ns, name));
    if (pod && labelOf(*pod, kLabelWorkload) == w.name) objects.pods.emplace(name, std::move(*pod));
  }
  return objects;
}

void Reconciler::forgetWorkload(const std::string& ns, const std::string& name) {
  metrics_.remove(kFencingToken.name, {{"namespace", ns}, {"name", name}});
  recent_.forgetPrefix("workloads/" + ns + "/" + name);
  recent_.forgetPrefix("leases/" + ns + "/" + name + "-leader");
  recent_.forgetPrefix("services/" + ns + "/" + name);
  // The highest token stays for kTokenMemory: a workload re-created under the same name continues above it.
  memory_.forgetWorkload(ns + "/" + name, clock_.now());
}

void Reconciler::noteLeaderLabelled(const std::string& key, long long token) {
  const auto start = memory_.takeFailoverStart(key);
  if (!start) return;
  // The same token: the leader recovered before anyone took over, so there is no failover to time.
  if (token <= start->token) return;
  const auto elapsed = std::chrono::duration<double>(clock_.now() - start->since).count();
  metrics_.histogram(kFailoverDuration.name, kFailoverDuration.help, controller::latencyBuckets())
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
  memory_.endTerm();
}

}  // namespace singleton::op
