// The SingletonWorkload reconciler: docs/design.md, "Reconcile(key)". Level-based: it reads the caches (plus its own
// recent writes), never the event that woke it, and writes through kube::Client. Split by concern:
//   reconciler.cc          the flow, observation, results, metrics
//   reconcile_election.cc  steps 3-6: the healthy-leader check, successor choice, Lease CAS, pod labels
//   reconcile_pods.cc      steps 2 and 7: missing pods, scale-down, rolling update
//   reconcile_status.cc    the Service and step 8: status and its conditions
//   reconcile_writes.cc    every API write, each behind the write gate
//   reconcile_handoff.cc   who must stop first, and completing the hand-off on the operator's own evidence
//   reconcile_fence.cc     the label fence (operator-term stamps on pods), refused and unknown writes, token floor
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "controller/events.h"
#include "controller/metrics.h"
#include "controller/recent_writes.h"
#include "controller/reconciler.h"
#include "controller/write_gate.h"
#include "kube/client.h"
#include "operator/workload/informers.h"
#include "operator/workload/workload.h"
#include "util/clock.h"

namespace singleton::op {

struct Context;

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
  static constexpr util::Millis kTokenMemory{3'600'000};

 private:
  util::Status run(Context& ctx);
  util::Status observe(Context& ctx);
  void forgetWorkload(const std::string& ns, const std::string& name);

  // Steps (each returns an error to abort the reconcile).
  util::Status ensurePods(Context& ctx);
  util::Status elect(Context& ctx);
  util::Status labelPods(Context& ctx);
  util::Status scaleDown(Context& ctx);
  util::Status rollOut(Context& ctx);
  util::Status reconcileService(Context& ctx);
  util::Status updateStatus(Context& ctx);

  // Election helpers.
  util::Status keepLeaseTidy(Context& ctx);
  util::Status handOver(Context& ctx, const std::string& successor, const std::string& trigger, const std::string& why);
  util::Status releaseLease(Context& ctx, const std::string& why);
  util::Status promote(Context& ctx, const std::string& name, long long token);
  void handleSwitchover(Context& ctx, bool holder_healthy, std::string& successor);

  // The hand-off (reconcile_handoff.cc, docs/handoff.md).
  // Writes handoff-from/-uid into `lease` (the move to `successor_uid`): the pod that must stop first, or "".
  void recordHandoff(const Context& ctx, kube::Lease& lease, const std::string& successor_uid) const;
  // The move's CAS answer arrived now: lease-expired is measured from here (`wait` = the longer of the Lease's
  // durations before and after the move).
  void noteHandoffStart(const std::string& key, long long token, util::Millis wait);
  // Completes the Lease's pending hand-off when the operator knows the previous holder stopped (pod gone, containers
  // terminated, lease duration passed); sets ctx.handoff_pending, and ctx.requeue_after for the expiry.
  util::Status completeHandoff(Context& ctx);

  // Writes (reconcile_writes.cc). Every one checks the gate first.
  util::Status allowWrite(const Context& ctx) const;
  util::Status writeLease(Context& ctx, kube::Lease lease);
  // Sets `created_one` when the pod was created (not on AlreadyExists or a refused spec).
  util::Status createPod(Context& ctx, int ordinal, bool& created_one);
  util::Status deletePod(Context& ctx, const std::string& name, const std::string& why);
  util::Status demotePod(Context& ctx, const std::string& name);
  // A fenced label write: `patch_ops` start with a `test` that the pod carries this term's stamp.
  util::Status patchPod(Context& ctx, const std::string& name, const Json& patch_ops);
  util::Status removeSwitchoverAnnotation(Context& ctx, const std::string& value);
  util::Status patchStatus(Context& ctx, const Json& status_patch);
  // Events wait in the context until the reconcile ends (they are slow, best-effort writes; the failover is not).
  void event(Context& ctx, controller::EventType type, const std::string& reason, const std::string& message);
  void flushEvents(Context& ctx);
  void rememberPod(Context& ctx, const std::string& base_version, Json pod);
  // A leader label added or removed by us at `pod`'s resourceVersion.
  void noteLabelWrite(const Context& ctx, const Json& pod);
  // The pod cache (ctx.pods) shows every leader label an operator wrote on the workload's pods.
  bool podCacheCoversLabels(const Context& ctx) const;

  // The label fence (reconcile_fence.cc, docs/design.md "Operator self-fencing").
  // Every pod in ctx.pods carries this term's stamp when it returns ok (compare-and-swap on each that did not);
  // a pod stamped by a newer term fails it with kReasonStaleTerm.
  util::Status fenceLabels(Context& ctx);
  util::Status stampPod(Context& ctx, const std::string& name);
  // A fenced write to `name` was refused: read the pod again and say why (a newer term: kReasonStaleTerm; else a
  // Conflict with kReasonFenced, to decide again at once). Never a blind retry.
  util::Status refused(Context& ctx, const std::string& name, const util::Error& error);
  // A label write whose outcome is unknown: until a read shows the pods, the cache is not trusted for labels.
  void noteUnknownOutcome(const Context& ctx, const std::string& name, const util::Error& error);
  // Every pod of the workload was read from the API (promote's API path): the state is known again, at least as of
  // `revision`.
  void noteLabelsConfirmed(const Context& ctx, std::uint64_t revision);
  // The highest fencing token this replica can see for the workload: its Lease now and as last seen, the
  // workload's status, the pods' annotations. -1 when none.
  long long highestTokenSeen(const Context& ctx) const;

  // Failover timing: when the current failover of a workload started (first unhealthy observation, or what the API
  // recorded), until the successor is labelled.
  // `token` is the Lease's at the start; the failover is over when a pod is labelled with a higher one.
  void noteFailoverStart(const std::string& key, util::MonoTime since, long long token);
  void noteLeaderLabelled(const std::string& key, long long token);
  // When the pod stopped being a good leader, on our monotonic clock (what the API recorded, else now).
  util::MonoTime unhealthyStart(const Json* pod) const;

  kube::Client& client_;
  const Informers& informers_;
  controller::EventRecorder& events_;
  controller::Registry& metrics_;
  const util::Clock& clock_;
  controller::RecentWrites recent_;

  mutable std::mutex mutex_;
  struct FailoverStart {
    util::MonoTime since;
    long long token = 0;
  };
  std::map<std::string, FailoverStart> failover_started_;  // by workload key
  std::map<std::string, std::uint64_t> label_writes_;      // by workload key: revision of our last label write
  std::set<std::string> unconfirmed_;                      // workload keys with a label write of unknown outcome
  // By workload key, this term only: since when the pending hand-off of `token` is known to this term (its own CAS
  // answer, else its first sight of the incomplete hand-off), and how long it waits for lease-expired.
  struct HandoffStart {
    long long token = 0;
    util::MonoTime since;
    util::Millis wait{0};
  };
  std::map<std::string, HandoffStart> handoff_started_;
  // By workload key: the highest Lease token seen, kept for a while after the workload is gone (a re-created
  // workload of the same name continues above it). `forgotten` is when the workload went away.
  struct TokenMemory {
    long long token = -1;
    std::optional<util::MonoTime> forgotten;
  };
  std::map<std::string, TokenMemory> tokens_seen_;
};

}  // namespace singleton::op
