// Steps 2 and 7 of docs/design.md: the pods W-0 ... W-(replicas-1) exist; pods beyond replicas go (highest ordinal
// first, the leader last: the election step has moved leadership off it first); a template change replaces the
// standbys one at a time, each replacement Ready before the next goes, and then the old leader, after the election
// step has handed over to an updated standby (one failover per rollout).
#include "operator/workload/decisions.h"
#include "operator/workload/findings.h"
#include "operator/workload/reconciler.h"
#include "operator/workload/workload_writer.h"

namespace singleton::op {

util::Status Reconciler::ensurePods(Writer& writer, Findings& findings) {
  const Workload& w = writer.workload();
  std::vector<std::string> created;
  util::Status status;
  for (const int ordinal : missingOrdinals(writer.view())) {
    auto made = writer.createPod(ordinal);
    if (made.ok()) {
      if (*made) created.push_back(w.podName(ordinal));
      continue;
    }
    const util::Error& error = made.error();
    if (!isSpecProblem(error.code)) {
      status = std::move(made).takeError();
      break;
    }
    findings.specProblem("PodCreateFailed", "creating pod " + w.podName(ordinal) + ": " + error.message, error);
  }
  // One Event for the pods of one pass (a new workload's replicas): Events are API writes too.
  if (!created.empty()) {
    findings.created_pods = true;
    std::string names;
    for (const std::string& name : created) names += (names.empty() ? "" : ", ") + name;
    writer.event(controller::EventType::kNormal, "PodCreated",
                 (created.size() == 1 ? "created pod " : "created pods ") + names);
  }
  return status;
}

util::Status Reconciler::scaleDown(Writer& writer) {
  const std::string why = "scaled down to " + std::to_string(writer.workload().replicas) + " replicas";
  for (const std::string& name : scaleDownOrder(writer.view())) {
    if (auto s = writer.deletePod(name, why); !s.ok()) return s;
  }
  return {};
}

util::Status Reconciler::rollOut(Writer& writer) {
  const auto step = nextRolloutStep(writer.view());
  if (!step) return {};
  return writer.deletePod(step->pod, step->why);
}

}  // namespace singleton::op
