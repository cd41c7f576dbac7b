// The Writer: every API call one reconcile makes for one workload. Each write checks the write gate first (this
// replica still leads), is recorded in RecentWrites (the next reconcile sees it even before the watch delivers it),
// and updates the Writer's current view of the workload's objects with what the API answered, so that later steps
// decide on the result. It also owns the label fence (workload_writer_fence.cc): the operator-term stamps on pods,
// refused and unknown-outcome label writes, and which pods an API answer has confirmed. Events wait in it until
// the reconcile ends. One Writer per reconcile; its state is its own.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "controller/events.h"
#include "controller/recent_writes.h"
#include "controller/write_gate.h"
#include "election/handoff.h"
#include "kube/client.h"
#include "operator/workload/observation.h"
#include "operator/workload/reconcile_memory.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::op {

// Error.reason of the self-fencing refusal.
inline const std::string kReasonStaleTerm = "StaleOperatorTerm";
// Error.reason of a fenced pod write the apiserver refused (its `test` failed): the pod is not as this term left it.
inline const std::string kReasonFenced = "FencedWriteRefused";

// The operator term a workload Lease records (0 when absent or unreadable).
long long operatorTermOf(const kube::Lease& lease);

class Writer {
 public:
  struct Deps {
    kube::Client& client;
    controller::RecentWrites& recent;
    ReconcilerMemory& memory;
    const util::Clock& clock;
  };
  Writer(const Deps& deps, const controller::WriteGate& gate, const Observation& observation, WorkloadObjects objects);
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // The workload's objects as this reconcile's writes left them.
  WorkloadView view() const { return {observation_.workload, objects_.pods, objects_.lease}; }
  const Workload& workload() const { return observation_.workload; }
  const std::optional<kube::Lease>& lease() const { return objects_.lease; }
  const std::optional<Json>& service() const { return objects_.service; }
  long long term() const { return gate_.term().value(); }
  // Ok while this replica leads; a kCancelled error once it does not.
  util::Status allowWrite() const;

  // The Lease (create or compare-and-swap update), with our label, owner, duration and operator term.
  util::Status writeLease(kube::Lease lease);
  // Completes the Lease's pending hand-off `handoff` (a compare-and-swap on the version that carries it).
  util::Status ackHandoff(const election::HandoffView& handoff, election::AckedBy by);

  // The pod as the API shows it now (NotFound as an error), not recorded anywhere.
  util::Result<Json> readPod(const std::string& name);
  // True when the pod was created, false when one of its name exists already; other errors as they came.
  util::Result<bool> createPod(int ordinal);
  util::Status deletePod(const std::string& name, const std::string& why);
  // Fenced label writes (the stamp test; see workload_writer_fence.cc). A demotion of a pod that is gone is ok.
  util::Status demotePod(const std::string& name);
  // Labels the incarnation `uid` of `name` leader with `token`.
  util::Status promotePod(const std::string& name, const std::string& uid, long long token);

  // The label fence: every pod in view carries this term's stamp when it returns ok (compare-and-swap on each that
  // did not); a pod stamped by a newer term fails it with kReasonStaleTerm.
  util::Status fenceLabels();
  // The pod cache behind the view shows every leader label an operator wrote on the workload's pods.
  bool podCacheCoversLabels() const;
  // Reads again from the API every pod in view that no answer of this reconcile has shown, fences them, and notes
  // the labels confirmed (promote's path when the cache is not known complete).
  util::Status confirmPodsFromApi();

  util::Status removeSwitchoverAnnotation(const std::string& value);
  util::Status deleteService();
  // Errors come back as the API gave them (the step decides which are spec problems).
  util::Status createService(const Json& service);
  util::Status updateService(const Json& service);
  util::Status patchStatus(const Json& status_patch);

  // Events wait until the reconcile ends (they are slow, best-effort writes; the failover is not).
  void event(controller::EventType type, const std::string& reason, const std::string& message);
  void flushEvents(controller::EventRecorder& recorder);

 private:
  util::Status patchPod(const std::string& name, const Json& patch_ops);
  // The workload as a write of ours returned it (the next reconcile sees it before the watch does).
  void rememberWorkload(Json workload_object);
  void rememberPod(const std::string& base_version, Json pod);
  // A leader label added or removed by us at `pod`'s resourceVersion.
  void noteLabelWrite(const Json& pod);
  // Fence (workload_writer_fence.cc).
  util::Status stampPod(const std::string& name);
  // A fenced write to `name` was refused: read the pod again and say why (a newer term: kReasonStaleTerm; else a
  // Conflict with kReasonFenced, to decide again at once). Never a blind retry.
  util::Status refused(const std::string& name, const util::Error& error);
  // A label write whose outcome is unknown: until a read shows the pods, the cache is not trusted for labels.
  void noteUnknownOutcome(const std::string& name, const util::Error& error);
  util::Error staleTerm(const std::string& pod, long long stamp) const;
  const Json* pod(const std::string& name) const;

  kube::Client& client_;
  controller::RecentWrites& recent_;
  ReconcilerMemory& memory_;
  const util::Clock& clock_;
  const controller::WriteGate& gate_;
  const Observation& observation_;
  WorkloadObjects objects_;
  std::string workload_version_;  // metadata.resourceVersion as last read or written
  // Pods whose entry in view is an answer of the API to this reconcile (a read, a stamp, a demotion): fresh, and
  // not changed since by an earlier operator term (the label fence).
  std::set<std::string> confirmed_;
  struct PendingEvent {
    controller::EventType type;
    std::string reason;
    std::string message;
  };
  std::vector<PendingEvent> events_;
};

}  // namespace singleton::op
