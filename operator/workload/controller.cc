// The controller: four informers (Reflector + Cache) whose listeners enqueue workload keys, a work queue, and
// workers (controller::ReconcileLoop, where the reconcile outcome decides the requeue) that run the reconciler while
// this replica leads.
#include "operator/workload/controller.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <thread>
#include <vector>

#include "controller/events.h"
#include "controller/reconcile_loop.h"
#include "controller/work_queue.h"
#include "kube/client.h"
#include "operator/workload/informers.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload.h"
#include "operator/workload/workload_metrics.h"
#include "util/log.h"
#include "watch/reflector.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

// How often runWorkers looks at the informers while it waits for their first lists (real time: the informers run
// on the network, not on the injected clock).
constexpr std::chrono::milliseconds kSyncPoll{20};

constexpr util::Millis kWatchBackoffInitial{100};

watch::ReflectorOptions reflectorOptions(const ControllerOptions& controller, std::string label_selector,
                                         std::function<void(Json&)> transform) {
  watch::ReflectorOptions options;
  options.ns = controller.watch_namespace;
  options.backoff =
      util::BackoffPolicy{kWatchBackoffInitial, std::max(kWatchBackoffInitial, controller.watch_backoff_max), 2.0, 0.2};
  options.label_selector = std::move(label_selector);
  options.transform = std::move(transform);
  return options;
}

// The workload reconciler under one term's write gate, as the reconcile loop sees it.
class GatedReconciler final : public controller::Reconciler {
 public:
  GatedReconciler(op::Reconciler& reconciler, const controller::WriteGate& gate)
      : reconciler_(reconciler), gate_(gate) {}
  controller::ReconcileResult reconcile(const std::string& key) override { return reconciler_.reconcile(key, gate_); }

 private:
  op::Reconciler& reconciler_;  // (unqualified, Reconciler would name the base class)
  const controller::WriteGate& gate_;
};

}  // namespace

struct Controller::Impl {
  Impl(std::shared_ptr<kube::Transport> transport, ControllerOptions opts, controller::Registry& registry,
       const util::Clock& clk)
      : options(std::move(opts)),
        metrics(registry),
        clock(clk),
        client(std::move(transport)),
        queue(clock, [depth = &metrics.gauge(kQueueDepth.name, kQueueDepth.help)](
                         std::size_t keys) { depth->set(static_cast<double>(keys)); }),
        loop(queue, metrics,
             {.workers = options.workers,
              .reconciles_metric = kReconciles.name,
              .reconciles_help = kReconciles.help,
              .duration_metric = kReconcileDuration.name,
              .duration_help = kReconcileDuration.help},
             clock),
        recorder(client, clock, controller::EventRecorderOptions{.instance = options.identity}),
        reconciler(client, informers, recorder, metrics, clock),
        workload_reflector(client, kWorkloads, reflectorOptions(options, "", stripObject), informers.workloads, clock),
        pod_reflector(client, kube::kPods, reflectorOptions(options, kLabelWorkload, stripPod), informers.pods, clock),
        lease_reflector(client, kube::kLeases, reflectorOptions(options, kLabelWorkload, stripObject), informers.leases,
                        clock),
        service_reflector(client, kube::kServices, reflectorOptions(options, kLabelWorkload, stripService),
                          informers.services, clock) {
    informers.pods_resource_version = [this] { return pod_reflector.lastResourceVersion(); };
    // Listeners enqueue keys only; the reconcile reads the caches. They run on the reflectors' threads.
    informers.workloads.addListener([this](const watch::Event& event) {
      if (std::string key = watch::objectKey(event.object); !key.empty()) queue.add(key);
    });
    const auto enqueue_owner = [this](const watch::Event& event) {
      if (std::string key = workloadKeyOf(event.object); !key.empty()) queue.add(key);
    };
    informers.pods.addListener(enqueue_owner);
    informers.leases.addListener(enqueue_owner);
    informers.services.addListener(enqueue_owner);
  }

  ControllerOptions options;
  controller::Registry& metrics;
  const util::Clock& clock;
  kube::Client client;
  Informers informers;
  controller::WorkQueue queue;
  controller::ReconcileLoop loop;
  controller::ApiEventRecorder recorder;
  Reconciler reconciler;
  watch::Reflector workload_reflector;
  watch::Reflector pod_reflector;
  watch::Reflector lease_reflector;
  watch::Reflector service_reflector;
};

Controller::Controller(std::shared_ptr<kube::Transport> transport, ControllerOptions options,
                       controller::Registry& metrics, const util::Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(transport), std::move(options), metrics, clock)) {}

Controller::~Controller() { impl_->queue.shutDown(); }

void Controller::runInformers(std::stop_token stop) {
  std::vector<std::jthread> threads;
  for (watch::Reflector* reflector : {&impl_->pod_reflector, &impl_->lease_reflector, &impl_->service_reflector}) {
    threads.emplace_back([reflector, stop] { reflector->run(stop); });
  }
  impl_->workload_reflector.run(stop);
  // The jthreads join here, once their reflectors have seen `stop`.
}

bool Controller::synced() const { return impl_->informers.synced(); }

bool Controller::waitSynced(std::stop_token stop) const {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  while (!synced()) {
    cv.wait_for(lock, stop, kSyncPoll, [] { return false; });
    if (stop.stop_requested()) return false;
  }
  return true;
}

std::optional<long long> Controller::highestOperatorTerm() const {
  std::optional<long long> highest;
  const auto note = [&highest](const Json& object) {
    const auto text = annotationOf(object, kAnnotationOperatorTerm);
    if (!text) return;
    long long term = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), term);
    if (ec == std::errc() && end == text->data() + text->size()) highest = std::max(highest.value_or(term), term);
  };
  // Pods too: a term stamps a workload's pods before its first label change there, which need not come with a
  // Lease write, and the label fence refuses every term below a pod's stamp.
  for (const Json& lease : impl_->informers.leases.list()) note(lease);
  for (const Json& pod : impl_->informers.pods.list()) note(pod);
  return highest;
}

void Controller::runWorkers(const controller::WriteGate& gate, std::stop_token stop) {
  if (!waitSynced(stop)) return;
  // A new leader re-checks every workload: the previous one may have stopped half-way.
  const std::vector<Json> workloads = impl_->informers.workloads.list();
  for (const Json& workload : workloads) impl_->queue.add(watch::objectKey(workload));
  kLog.info("workers starting",
            {.values = {
                 {"workers", impl_->options.workers}, {"workloads", workloads.size()}, {"term", gate.term().value()}}});

  // Requests still waiting for an answer when the term ends fail at once (kCancelled) instead of at their timeout:
  // the gate is already shut, their answers would change nothing, and the elector joins us.
  GatedReconciler gated(impl_->reconciler, gate);
  impl_->loop.run(gated, stop);
  // Per-term state: the next term enqueues every workload anew and must not inherit this one's backoffs, nor trust
  // what this term wrote (its recent writes, the revisions its cache must reach).
  impl_->queue.reset();
  impl_->reconciler.endTerm();
  kLog.info("workers stopped");
}

}  // namespace singleton::op
