// The metric families the SingletonWorkload reconciler exports (docs/operations.md lists them; tests and benchmarks
// read them by these names).
#pragma once

#include <string>

namespace singleton::op {

// A family's name and its HELP text, registered together.
struct MetricFamily {
  std::string name;
  std::string help;
};

inline const MetricFamily kFailoverDuration{
    "singleton_failover_duration_seconds",
    "Seconds from the first sign that a workload's leader is unhealthy (or a switchover/rollout decision) to its "
    "successor being labelled leader."};
inline const MetricFamily kFailovers{"singleton_failovers_total",
                                     "Leadership moves from one pod to another, by reason."};
inline const MetricFamily kPromotions{
    "singleton_promotions_total",
    "Pods labelled leader, by how the other pods' labels were checked first: cache (complete up to this replica's "
    "leadership and its own label writes) or api (each pod read again)."};
inline const MetricFamily kFencingToken{"singleton_workload_fencing_token",
                                        "The fencing token (leaseTransitions) of each workload's Lease."};
// The controller's own (controller.cc).
inline const MetricFamily kReconciles{"singleton_reconcile_total",
                                      "Reconciles of SingletonWorkloads by result (success, error, requeue)."};
inline const MetricFamily kReconcileDuration{"singleton_reconcile_duration_seconds",
                                             "How long one reconcile of a SingletonWorkload took."};
inline const MetricFamily kQueueDepth{"workqueue_depth", "Workload keys waiting in the controller's work queue."};

}  // namespace singleton::op
