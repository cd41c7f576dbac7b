// What one reconcile found on its way, accumulated by the steps (reconcile_*.cc) and read by Reconciler::reconcile
// to choose the result, and by the status step. Only outcomes: the objects live in the Writer.
#pragma once

#include <optional>
#include <string>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::op {

struct Findings {
  std::string leader;            // the pod labelled leader when the labels step finished; "" = none
  std::string released_holder;   // the holder this reconcile took the Lease from, leaving nobody leading
  bool created_pods = false;     // this pass created pods: their first changes are moments away
  bool status_deferred = false;  // so the status was left for the next pass
  // The Lease's hand-off is still incomplete after this reconcile tried to complete it.
  bool handoff_pending = false;
  // Look again after this long (the earliest instant a decision changes by itself, e.g. a lease expiry).
  std::optional<util::Millis> requeue_after;
  std::string problem_reason;  // a spec problem for the Ready condition (e.g. PodCreateFailed)
  std::string problem_message;
  std::optional<util::Error> deferred_error;  // finish the reconcile (status), then retry with backoff

  void requeueAfter(util::Millis after) {
    if (!requeue_after || after < *requeue_after) requeue_after = after;
  }
  void problem(std::string reason, std::string message) {
    if (!problem_reason.empty()) return;  // the first problem is the one to fix first
    problem_reason = std::move(reason);
    problem_message = std::move(message);
  }
  // The apiserver refused what we asked for: report it on the status, finish the reconcile, retry with backoff.
  void specProblem(std::string reason, std::string message, const util::Error& error) {
    problem(std::move(reason), std::move(message));
    deferred_error = error;
  }
};

}  // namespace singleton::op
