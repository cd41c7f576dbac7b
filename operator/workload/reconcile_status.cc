// The leader Service, and step 8: the status, written only when it differs from what the workload shows (steady
// state makes no writes). What they should be is decided in decisions_status.cc; this writes it.
#include "operator/workload/decisions.h"
#include "operator/workload/findings.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload_writer.h"
#include "util/time_format.h"

namespace singleton::op {

util::Status Reconciler::reconcileService(Writer& writer, Findings& findings) {
  const Workload& w = writer.workload();
  const std::optional<Json>& service = writer.service();
  if (!w.service) {
    // Removing spec.service deletes the Service we made (only ours).
    if (!service || !isControlledBy(*service, w.uid)) return {};
    return writer.deleteService();
  }

  if (!service) {
    auto created = writer.createService(desiredService(w));
    if (created.ok()) return {};
    const util::Error& error = created.error();
    if (error.code == util::ErrorCode::kAlreadyExists) {
      // Not in our cache, so not labelled for us: someone else's Service of that name.
      findings.problem("ServiceConflict", "a Service named " + w.name + " exists and does not belong to this workload");
      return {};
    }
    if (error.code != util::ErrorCode::kInvalid && error.code != util::ErrorCode::kBadRequest) return created;
    findings.specProblem("ServiceInvalid", "creating Service " + w.name + ": " + error.message, error);
    return {};
  }

  if (!isControlledBy(*service, w.uid)) {
    findings.problem("ServiceConflict", "Service " + w.name + " is not controlled by this workload");
    return {};
  }
  const std::optional<Json> updated = serviceUpdate(*service, w);
  if (!updated) return {};
  auto written = writer.updateService(*updated);
  if (written.ok()) return {};
  const util::Error& error = written.error();
  if (error.code != util::ErrorCode::kInvalid && error.code != util::ErrorCode::kBadRequest) return written;
  findings.specProblem("ServiceInvalid", "updating Service " + w.name + ": " + error.message, error);
  return {};
}

util::Status Reconciler::updateStatus(Writer& writer, Findings& findings) {
  const Workload& w = writer.workload();
  const StatusPlan plan = desiredStatus(writer.view(), findings, w.effectiveHandoff() == HandoffMode::kWaitForStop,
                                        util::formatTime(clock_.wallNow()));
  // Pods just created change again within moments: their first changes bring the status (decisions_status.cc).
  if (deferStatus(findings, plan.status, w.status)) {
    findings.status_deferred = true;
    return {};
  }
  // Events on transitions, read from the status as the workload shows it.
  if (plan.leader_lost) {
    writer.event(controller::EventType::kWarning, "NoReadyReplica",
                 "no Ready pod can lead; the workload has no leader");
  }
  if (plan.rollout_done) {
    writer.event(controller::EventType::kNormal, "RolloutComplete", "every pod runs template " + w.template_hash);
  }
  const std::optional<Json> patch = statusPatch(plan.status, w.status);
  if (!patch) return {};
  return writer.patchStatus(*patch);
}

}  // namespace singleton::op
