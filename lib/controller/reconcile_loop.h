// The generic half of a controller (controller-runtime's reconcileHandler): workers take keys from a WorkQueue and
// hand each to a Reconciler; the result decides the requeue, in one place:
//   error (kRetry, or an exception) -> rate-limited retry;  kRequeue -> soon, on the same per-key
//   backoff (a conflict that persists must not spin);  kRequeueAfter -> forget, then add
//   after the delay;  kForget -> forget.
// Every outcome counts into a metric (success, error, requeue), and every reconcile's duration into a histogram.
#pragma once

#include <stop_token>
#include <string>

#include "controller/metrics.h"
#include "controller/reconciler.h"
#include "controller/work_queue.h"
#include "util/clock.h"

namespace singleton::controller {

struct ReconcileLoopOptions {
  int workers = 2;  // at least one runs
  // The metrics: a counter by label `result` (success, error, requeue) and a histogram of durations in seconds.
  std::string reconciles_metric = "reconcile_total";
  std::string reconciles_help = "Reconciles by result (success, error, requeue).";
  std::string duration_metric = "reconcile_duration_seconds";
  std::string duration_help = "How long one reconcile took.";
};

class ReconcileLoop {
 public:
  // Registers the metrics at once (at zero), so they are exposed before the first reconcile.
  ReconcileLoop(WorkQueue& queue, Registry& metrics, ReconcileLoopOptions options,
                const util::Clock& clock = util::systemClock());
  ReconcileLoop(const ReconcileLoop&) = delete;
  ReconcileLoop& operator=(const ReconcileLoop&) = delete;

  // Reconciles one key and requeues it as its result says. The caller holds the key (get() ... done()).
  void process(const std::string& key, Reconciler& reconciler);
  // Runs options.workers workers until `stop`, each taking keys from the queue; returns when they have finished
  // their current key. Requests a worker sends are cancelled by `stop` (kube::CancelScope), so a worker blocked on
  // a stalled apiserver does not hold up the return.
  void run(Reconciler& reconciler, std::stop_token stop);

 private:
  WorkQueue& queue_;
  Registry& metrics_;
  ReconcileLoopOptions options_;
  const util::Clock& clock_;
};

}  // namespace singleton::controller
