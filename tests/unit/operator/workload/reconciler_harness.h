// The reconciler on a FakeCluster, with caches fed directly from the fake (no watches) and a simulated kubelet.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "controller/events.h"
#include "kube/client.h"
#include "kube/resource.h"
#include "operator/workload/informers.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload.h"
#include "support/fake_cluster.h"

namespace singleton::op::testing {

using singleton::testing::FakeCluster;
inline constexpr const char* kNs = "prod";

class FakeGate final : public controller::WriteGate {
 public:
  bool mayWrite() const override { return may_write.load(); }
  fencing::FencingToken term() const override { return fencing::FencingToken(term_value.load()); }
  std::uint64_t leadingSince() const override { return leading_since.load(); }
  std::atomic<bool> may_write{true};
  std::atomic<long long> term_value{1};
  std::atomic<std::uint64_t> leading_since{0};
};

inline Json podTemplate(const std::string& image = "app:1") {
  return {{"metadata", {{"labels", {{"app", "demo"}}}}},
          {"spec", {{"containers", Json::array({{{"name", "main"}, {"image", image}}})}}}};
}

class Harness {
 public:
  Harness()
      : cluster(std::make_shared<FakeCluster>(clock)),
        client(cluster),
        recorder(client, clock, controller::EventRecorderOptions{.instance = "operator-0"}),
        reconciler(client, informers, recorder, metrics, clock) {}

  Json addWorkload(const std::string& name, int replicas, const Json& extra_spec = Json::object()) {
    Json spec = {{"replicas", replicas}, {"template", podTemplate()}};
    spec.update(extra_spec);
    return cluster->put(kWorkloads, {{"apiVersion", "singleton.dev/v1alpha1"},
                                     {"kind", "SingletonWorkload"},
                                     {"metadata", {{"name", name}, {"namespace", kNs}}},
                                     {"spec", spec}});
  }
  void changeWorkload(const std::string& name, const std::function<void(Json&)>& change) {
    ASSERT_TRUE(cluster->modify(kWorkloads, kNs, name, [&](Json& w) {
      const Json spec_before = w["spec"];
      change(w);
      if (w["spec"] != spec_before) w["metadata"]["generation"] = w["metadata"].value("generation", 1) + 1;
    }));
  }

  // The caches as a fresh list would fill them (transforms included).
  void sync() {
    if (!hold_pods_revision) pods_revision = cluster->resourceVersion();
    feed(informers.workloads, cluster->list(kWorkloads), stripObject);
    feed(informers.pods, cluster->list(kube::kPods), stripPod);
    feed(informers.leases, cluster->list(kube::kLeases), stripObject);
    feed(informers.services, cluster->list(kube::kServices), stripService);
  }
  // The pod cache reports its position (the revision of its last sync, or the held one), as a reflector does.
  void trackPodCacheRevision() {
    informers.pods_resource_version = [this] { return pods_revision; };
  }
  // A steady workload whose leader <name>-0 has stopped being Ready, on a replica that leads since `leading_since`
  // and whose pod cache reports its position: the start of every promotion-check test.
  void unreadyLeaderWithTrackedCache(const std::string& name, int replicas, std::uint64_t leading_since) {
    trackPodCacheRevision();
    gate.leading_since = leading_since;
    steadyWorkload(name, replicas);
    setReady(name + "-0", false);
  }
  controller::ReconcileResult reconcile(const std::string& name) {
    sync();
    return reconcileStale(name);
  }
  // Without refreshing the caches first: they show what they showed.
  controller::ReconcileResult reconcileStale(const std::string& name) {
    return reconciler.reconcile(std::string(kNs) + "/" + name, gate);
  }

  // Reconciles (and, with `kubelet`, makes every pod Ready) until a reconcile makes no write. Returns the number of
  // rounds, or -1 if it never settles.
  int converge(const std::string& name, bool kubelet = true, int max_rounds = 40) {
    for (int round = 0; round < max_rounds; ++round) {
      if (kubelet) startPods();
      const int before = cluster->writeCount();
      const controller::ReconcileResult result = reconcile(name);
      if (cluster->writeCount() == before && result.action == controller::ReconcileResult::Action::kForget)
        return round;
    }
    return -1;
  }

  // The simulated kubelet: pods that exist become Running and Ready; terminating ones go away.
  void startPods() {
    for (const Json& pod : cluster->list(kube::kPods, kNs)) {
      const std::string name = pod["metadata"]["name"];
      if (pod["metadata"].contains("deletionTimestamp")) {
        cluster->erase(kube::kPods, kNs, name);
      } else if (!isReady(pod) && !pod.contains("status")) {
        setReady(name, true);
      }
    }
  }
  void setReady(const std::string& pod, bool ready, const std::string& phase = "Running") {
    ASSERT_TRUE(cluster->modify(kube::kPods, kNs, pod, [&](Json& p) {
      p["status"] = {{"phase", phase},
                     {"conditions", Json::array({{{"type", "Ready"},
                                                  {"status", ready ? "True" : "False"},
                                                  {"lastTransitionTime", "2026-01-01T00:00:00Z"}}})}};
    }));
  }
  void setPhase(const std::string& pod, const std::string& phase) { setReady(pod, false, phase); }
  void markTerminating(const std::string& pod) {
    ASSERT_TRUE(cluster->modify(kube::kPods, kNs, pod, [&](Json& p) {
      p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z";
      p["metadata"]["deletionGracePeriodSeconds"] = 30;
    }));
  }

  std::optional<Json> pod(const std::string& name) const { return cluster->get(kube::kPods, kNs, name); }
  std::string role(const std::string& name) const {
    const auto p = pod(name);
    return p ? labelOf(*p, kLabelRole) : "<gone>";
  }
  std::optional<std::string> token(const std::string& name) const {
    const auto p = pod(name);
    return p ? annotationOf(*p, kAnnotationFencingToken) : std::nullopt;
  }
  std::vector<std::string> leaders() const {
    std::vector<std::string> out;
    for (const Json& p : cluster->list(kube::kPods, kNs)) {
      if (labelOf(p, kLabelRole) == kRoleLeader) out.push_back(p["metadata"]["name"]);
    }
    return out;
  }
  std::optional<Json> lease(const std::string& workload) const {
    return cluster->get(kube::kLeases, kNs, workload + "-leader");
  }
  std::string holder(const std::string& workload) const {
    const auto l = lease(workload);
    return l ? (*l)["spec"].value("holderIdentity", "") : "<no lease>";
  }
  long long transitions(const std::string& workload) const {
    const auto l = lease(workload);
    return l ? (*l)["spec"].value("leaseTransitions", -1LL) : -1;
  }
  Json status(const std::string& workload) const {
    const auto w = cluster->get(kWorkloads, kNs, workload);
    return w ? w->value("status", Json::object()) : Json::object();
  }
  std::string condition(const std::string& workload, const std::string& type, const char* field = "status") const {
    for (const Json& c : status(workload).value("conditions", Json::array())) {
      if (c["type"] == type) return c.value(field, "");
    }
    return "<none>";
  }
  std::vector<Json> events(const std::string& reason = "") const {
    std::vector<Json> out;
    for (const Json& e : cluster->list(kube::kEvents, kNs)) {
      if (reason.empty() || e["reason"] == reason) out.push_back(e);
    }
    return out;
  }
  // Writes to pods, Leases and workloads: what the reconciler does, without the (best-effort) events.
  int stateWrites() const { return cluster->writeCount() - cluster->writeCount("/events"); }
  double counter(const std::string& name, const controller::Labels& labels) {
    return metrics.counter(name, "", labels).value();
  }

  // A workload with `replicas` Ready pods and w-0 leading (token 0).
  void steadyWorkload(const std::string& name, int replicas, const Json& extra_spec = Json::object()) {
    addWorkload(name, replicas, extra_spec);
    ASSERT_GE(converge(name), 0);
    ASSERT_EQ(holder(name), name + "-0");
    ASSERT_EQ(transitions(name), 0);
  }

  util::FakeClock clock;
  std::shared_ptr<FakeCluster> cluster;
  kube::Client client;
  Informers informers;
  controller::Registry metrics;
  controller::ApiEventRecorder recorder;
  Reconciler reconciler;
  FakeGate gate;
  std::string pods_revision;
  bool hold_pods_revision = false;  // the cache's contents move on, its reported position stays

 private:
  static void feed(watch::Cache& cache, std::vector<Json> objects, void (*transform)(Json&)) {
    for (Json& object : objects) transform(object);
    cache.onReplace(std::move(objects), "1");
  }
};

}  // namespace singleton::op::testing
