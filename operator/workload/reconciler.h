// The SingletonWorkload reconciler: docs/design.md, "Reconcile(key)". Level-based: it reads the caches (plus its own
// recent writes), never the event that woke it, and writes through kube::Client. Split along its seams:
//   reconciler.cc              the flow: observation, the steps in order, the result, failover timing
//   reconcile_election.cc      steps 3-6: Lease moves and pod labels (elect, labelPods, promote)
//   reconcile_handoff.cc       completing the hand-off on the operator's own evidence
//   reconcile_pods.cc          steps 2 and 7: missing pods, scale-down, rolling update
//   reconcile_status.cc        the Service and step 8, the status
//   decisions.{h,cc}, decisions_status.cc   the pure decisions the steps ask (no API, clock or memory)
//   workload_writer.{h,cc}     the Writer: every API call, behind the write gate, and the current view of the objects
//   workload_writer_fence.cc   the label fence (operator-term stamps on pods), refused and unknown-outcome writes
//   observation.h, findings.h  what a reconcile read, and what it found (the result's inputs)
//   reconcile_memory.{h,cc}    what the reconciler remembers between reconciles
#pragma once

#include <string>

#include "controller/events.h"
#include "controller/metrics.h"
#include "controller/recent_writes.h"
#include "controller/reconciler.h"
#include "controller/write_gate.h"
#include "kube/client.h"
#include "operator/workload/informers.h"
#include "operator/workload/reconcile_memory.h"
#include "operator/workload/workload.h"
#include "util/clock.h"

namespace singleton::op {

class Writer;
struct Findings;
struct Observation;
struct WorkloadObjects;

class Reconciler {
 public:
  Reconciler(kube::Client& client, const Informers& informers, controller::EventRecorder& events,
             controller::Registry& metrics, const util::Clock& clock = util::systemClock());
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Never throws for API errors; they come back as kRetry/kRequeue.
  controller::ReconcileResult reconcile(const std::string& key, const controller::WriteGate& gate);
  // Forgets what this term wrote (recent writes, label-write revisions, failover and hand-off start times), when its
  // workers have stopped. The next term trusts its pod cache only past its own Lease write, which is newer than all
  // of it. Kept: the writes of unknown outcome (they may still land) and the highest tokens seen (tokens never go
  // back).
  void endTerm();

  // How long a replica whose term is below a workload Lease's waits before looking again (it should have lost its
  // own election by then).
  static constexpr util::Millis kStaleTermRecheck{30'000};
  // A pass that created pods leaves the status to the next one, which comes with the pods' first changes or after
  // this long, whichever is first.
  static constexpr util::Millis kStatusAfterCreate{1'000};
  // How long the highest token of a deleted workload is remembered (a re-created one continues above it).
  static constexpr util::Millis kTokenMemory = ReconcilerMemory::kTokenMemory;

 private:
  // Reads the caches (and our recent writes) into `observation`; the objects are returned.
  util::Result<WorkloadObjects> observe(Observation& observation);
  // The steps in order; each returns an error to abort the reconcile.
  util::Status run(Writer& writer, Findings& findings);
  void forgetWorkload(const std::string& ns, const std::string& name);

  // Steps (reconcile_*.cc): each reads the Writer's current view, asks decisions.h, and writes through the Writer.
  util::Status elect(Writer& writer, Findings& findings);
  util::Status labelPods(Writer& writer, Findings& findings);
  util::Status ensurePods(Writer& writer, Findings& findings);
  util::Status scaleDown(Writer& writer);
  util::Status rollOut(Writer& writer);
  util::Status reconcileService(Writer& writer, Findings& findings);
  util::Status updateStatus(Writer& writer, Findings& findings);
  // Completes the Lease's pending hand-off when the operator knows the previous holder stopped (pod gone, containers
  // terminated, lease duration passed); sets findings.handoff_pending, and findings.requeue_after for the expiry.
  util::Status completeHandoff(Writer& writer, Findings& findings);

  // Election helpers (reconcile_election.cc).
  util::Status keepLeaseTidy(Writer& writer);
  util::Status handOver(Writer& writer, const std::string& successor, const std::string& trigger,
                        const std::string& why);
  util::Status releaseLease(Writer& writer, Findings& findings, const std::string& why);
  util::Status promote(Writer& writer, const std::string& name, long long token);
  // The switchover request: the successor it asks for, else "" (a request that is done with is removed).
  std::string handleSwitchover(Writer& writer, bool holder_healthy);
  // The move's CAS answer arrived now: lease-expired is measured from here, over the longer of the Lease's
  // durations before (`old_seconds`) and after the move.
  void noteHandoffStart(const Writer& writer, long long token, int old_seconds);

  // Failover timing: when the current failover of a workload started (first unhealthy observation, or what the API
  // recorded), until the successor is labelled with a token above the one at the start.
  void noteLeaderLabelled(const std::string& key, long long token);
  // When the pod stopped being a good leader, on our monotonic clock (what the API recorded, else now).
  util::MonoTime unhealthyStart(const Json* pod) const;

  kube::Client& client_;
  const Informers& informers_;
  controller::EventRecorder& events_;
  controller::Registry& metrics_;
  const util::Clock& clock_;
  controller::RecentWrites recent_;
  ReconcilerMemory memory_;
};

}  // namespace singleton::op
