// The operator's side of the hand-off (docs/handoff.md): the move's compare-and-swap names who must stop first
// (handoff-from, with its UID), and the operator completes that hand-off itself when it knows the previous holder has
// stopped: its pod (that UID) is gone, finished, or terminating with every container terminated, or the lease
// duration has passed since the move's CAS answer arrived. With spec.handoff WaitForStop, the successor is labelled
// leader only once the hand-off is complete (planLabels, decisions.cc); its agent starts COMMAND on the same condition.
#include <algorithm>

#include "election/handoff.h"
#include "operator/workload/decisions.h"
#include "operator/workload/findings.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload_writer.h"
#include "util/log.h"

namespace singleton::op {
namespace {

const log::Logger kLog("controller");

util::Millis leaseWait(int lease_seconds, int workload_seconds) {
  return util::Millis(1000LL * std::max(lease_seconds, workload_seconds));
}

}  // namespace

void Reconciler::noteHandoffStart(const Writer& writer, long long token, int old_seconds) {
  // The CAS answer has arrived: lease-expired is measured from now, over the longer of the two durations (the
  // previous holder's agent checked its timings against the old one).
  if (election::parseHandoff(writer.lease()->raw).complete) return;
  const Workload& w = writer.workload();
  memory_.noteHandoffStart(w.key(), {token, clock_.now(), leaseWait(old_seconds, w.lease_duration_seconds)});
}

util::Status Reconciler::completeHandoff(Writer& writer, Findings& findings) {
  const Workload& w = writer.workload();
  if (!writer.lease()) return {};
  const election::HandoffView view = election::parseHandoff(writer.lease()->raw);
  if (view.complete) {
    memory_.forgetHandoff(w.key());
    return {};
  }
  findings.handoff_pending = true;

  std::optional<election::AckedBy> by;
  const Json* pod = writer.view().pod(view.from);
  if (pod && metaString(*pod, "uid") == view.from_uid) {
    by = stopEvidence(*pod, view.from_uid);
  } else {
    // The cache does not show that incarnation; it may just be behind the Lease's cache. Only the API may say the pod
    // is gone (a UID never comes back).
    auto fresh = writer.readPod(view.from);
    if (!fresh.ok()) {
      if (fresh.error().code != util::ErrorCode::kNotFound) return std::move(fresh).takeError();
      by = election::AckedBy::kPodGone;
    } else {
      by = stopEvidence(*fresh, view.from_uid);
    }
  }

  if (!by) {
    const util::MonoTime now = clock_.now();
    // Not moved by this term (an operator restart or takeover): measured from this first sight, which is after the
    // move's CAS took effect, so never shorter than from its answer.
    const ReconcilerMemory::HandoffStart start = memory_.handoffStart(
        w.key(), {view.token, now, leaseWait(view.lease_duration_seconds, w.lease_duration_seconds)});
    // Safety (docs/handoff.md, case 4): the previous holder's agent last confirmed with a GET sent before the move's
    // CAS took effect, and stops by itself within L - L/10 of it on its own clock. The CAS answer (or our first sight)
    // came after the CAS took effect, so L after it on our monotonic clock, that agent has stopped.
    const auto elapsed = now - start.since;
    if (elapsed < start.wait) {
      findings.requeueAfter(std::chrono::ceil<util::Millis>(start.wait - elapsed));
      return {};
    }
    by = election::AckedBy::kLeaseExpired;
  }

  if (auto s = writer.ackHandoff(view, *by); !s.ok()) return s;
  findings.handoff_pending = false;
  memory_.forgetHandoff(w.key());
  const std::string message = handoffCompleteMessage(view, *by);
  kLog.info(message, {.object = {w.ns, w.name},
                      .values = {{"from", view.from}, {"token", view.token}, {"by", election::ackedByName(*by)}}});
  writer.event(controller::EventType::kNormal, "HandoffComplete", message);
  return {};
}

}  // namespace singleton::op
