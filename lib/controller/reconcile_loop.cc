#include "controller/reconcile_loop.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "kube/client.h"
#include "util/log.h"

namespace singleton::controller {
namespace {

const log::Logger kLog("controller");

}  // namespace

ReconcileLoop::ReconcileLoop(WorkQueue& queue, Registry& metrics, ReconcileLoopOptions options,
                             const util::Clock& clock)
    : queue_(queue), metrics_(metrics), options_(std::move(options)), clock_(clock) {
  for (const auto result : {"success", "error", "requeue"}) {
    metrics_.counter(options_.reconciles_metric, options_.reconciles_help, {{"result", result}});
  }
  metrics_.histogram(options_.duration_metric, options_.duration_help, latencyBuckets());
}

void ReconcileLoop::process(const std::string& key, Reconciler& reconciler) {
  const util::MonoTime started = clock_.now();
  ReconcileResult result;
  try {
    result = reconciler.reconcile(key);
  } catch (const std::exception& e) {
    // A bug (an unexpected JSON shape, say) must not take the worker down; retry like any error.
    result = {ReconcileResult::Action::kRetry, {}, std::string("exception: ") + e.what()};
    kLog.error("reconcile threw", {.err = result.detail, .values = {{"key", key}}});
  }
  metrics_.histogram(options_.duration_metric, options_.duration_help, latencyBuckets())
      .observe(std::chrono::duration<double>(clock_.now() - started).count());

  const char* outcome = "success";
  switch (result.action) {
    case ReconcileResult::Action::kForget:
      queue_.forget(key);
      break;
    case ReconcileResult::Action::kRequeue:
      outcome = "requeue";
      // Rate-limited like an error (controller-runtime returns a Conflict as an error): the first retry comes within
      // milliseconds, a conflict that persists (a stuck writer, a fault injector) backs off instead of spinning.
      queue_.addRateLimited(key);
      break;
    case ReconcileResult::Action::kRequeueAfter:
      outcome = "requeue";
      queue_.forget(key);
      queue_.addAfter(key, result.after);
      break;
    case ReconcileResult::Action::kRetry:
      outcome = "error";
      queue_.addRateLimited(key, result.after);  // `after`: the server's Retry-After, if it gave one
      break;
  }
  metrics_.counter(options_.reconciles_metric, options_.reconciles_help, {{"result", outcome}}).inc();
}

void ReconcileLoop::run(Reconciler& reconciler, std::stop_token stop) {
  std::vector<std::jthread> workers;
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers.emplace_back([this, &reconciler, stop] {
      // Requests still waiting for an answer when `stop` comes fail at once (kCancelled) instead of at their
      // timeout: their answers would change nothing, and the caller is waiting for us.
      const kube::CancelScope cancel_with_stop(stop);
      while (auto key = queue_.get(stop)) {
        process(*key, reconciler);
        queue_.done(*key);
      }
    });
  }
  for (std::jthread& worker : workers) worker.join();
}

}  // namespace singleton::controller
