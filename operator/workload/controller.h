// The SingletonWorkload controller: informers on workloads, their pods, Leases and Services; a work queue; the
// reconciler (docs/design.md). The process shell (manager) runs the informers on every replica — a standby's caches
// are warm when it takes over — and the workers only while this replica leads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "controller/metrics.h"
#include "controller/write_gate.h"
#include "kube/transport.h"
#include "util/clock.h"

namespace singleton::op {

struct ControllerOptions {
  std::string watch_namespace;  // "" = all namespaces
  int workers = 2;
  std::string identity;  // this operator replica, for Events' reportingInstance and logs
  // The longest wait between an informer's attempts to list or watch again after a failure (from 100 ms, doubling,
  // ±20 % jitter). Bounds how long after an apiserver comes back the caches resume. The manager passes
  // --retry-period.
  util::Millis watch_backoff_max{10'000};
};

class Controller {
 public:
  Controller(std::shared_ptr<kube::Transport> transport, ControllerOptions options, controller::Registry& metrics,
             const util::Clock& clock = util::systemClock());
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Runs the informers until `stop`. Call once, on its own thread.
  void runInformers(std::stop_token stop);
  // Every informer has delivered its first list.
  bool synced() const;
  // Waits until synced(); false when `stop` came first.
  bool waitSynced(std::stop_token stop) const;
  // The highest operator term (annotation singleton.dev/operator-term) recorded on the workload Leases and pods in the
  // cache: a new operator term must be above it, or self-fencing and the label fence would refuse its writes.
  // nullopt when none records one.
  std::optional<long long> highestOperatorTerm() const;
  // Runs `options.workers` workers until `stop` (one leadership term); returns after in-flight reconciles have
  // finished. Requests the workers send are cancelled by `stop` (kube::CancelScope), so a worker blocked on a stalled
  // apiserver does not hold up the hand-over. Every key is enqueued at start (a new leader re-checks every workload);
  // at the end the term's pending requeues and backoffs are dropped. May be called again after it returned.
  void runWorkers(const controller::WriteGate& gate, std::stop_token stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace singleton::op
