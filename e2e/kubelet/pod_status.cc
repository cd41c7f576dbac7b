#include "pod_status.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "kube/object.h"
#include "util/time_format.h"

namespace singleton::sim {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

enum class Target { kRunning, kFailed, kSucceeded };

struct Readiness {
  bool ready = true;
  std::string reason;  // for False
  std::string message;
};

// A condition with the current one's lastTransitionTime kept when its status does not change, as the kubelet does.
Json condition(const Json& current_conditions, const char* type, bool status, const std::string& reason,
               const std::string& message, const std::string& now) {
  const char* value = status ? "True" : "False";
  std::string since = now;
  if (const Json* old = findByType(current_conditions, type); old != nullptr && stringField(*old, "status") == value) {
    const std::string kept = stringField(*old, "lastTransitionTime");
    if (!kept.empty()) since = kept;
  }
  Json out = {{"type", type}, {"status", value}, {"lastProbeTime", nullptr}, {"lastTransitionTime", since}};
  if (!reason.empty()) out["reason"] = reason;
  if (!message.empty()) out["message"] = message;
  return out;
}

// The current status of container `name`, or an empty object.
const Json& currentContainer(const Json& statuses, const std::string& name) {
  if (statuses.is_array()) {
    for (const Json& status : statuses) {
      if (stringField(status, "name") == name) return status;
    }
  }
  return emptyObject();
}

// When the container started: kept from its current running or terminated state, else now.
std::string startedAt(const Json& current, const std::string& now) {
  const Json& state = objectField(current, "state");
  for (const char* kind : {"running", "terminated"}) {
    std::string at = stringField(objectField(state, kind), "startedAt");
    if (!at.empty()) return at;
  }
  return now;
}

Json containerStatuses(const Json& pod, const char* spec_list, const char* status_list, Target target, bool ready,
                       bool init, const std::string& now) {
  const std::string uid = kube::uidOf(pod);
  const Json& current = arrayField(objectField(pod, "status"), status_list);
  Json out = Json::array();
  for (const Json& container : arrayField(objectField(pod, "spec"), spec_list)) {
    const std::string name = stringField(container, "name");
    if (name.empty()) continue;
    const std::string image = stringField(container, "image");
    const Json& old = currentContainer(current, name);
    const std::string started = startedAt(old, now);
    Json status = {{"name", name},
                   {"image", image},
                   {"imageID", "sim://" + image},
                   {"containerID", "sim://" + uid + "/" + name},
                   {"restartCount", 0}};
    if (init || target != Target::kRunning) {
      // Init containers have finished before the pod runs; a failed or succeeded pod's containers have exited.
      const bool failed = target == Target::kFailed && !init;
      Json terminated = {{"exitCode", failed ? 1 : 0},
                         {"reason", failed ? "Error" : "Completed"},
                         {"startedAt", started},
                         {"finishedAt", now},
                         {"containerID", "sim://" + uid + "/" + name}};
      // A finished container keeps the time it finished.
      const std::string finished = stringField(objectField(objectField(old, "state"), "terminated"), "finishedAt");
      if (!finished.empty()) terminated["finishedAt"] = finished;
      if (failed) terminated["message"] = std::string(kPhaseAnnotation) + ": Failed";
      status["state"] = {{"terminated", std::move(terminated)}};
      status["ready"] = init;
      status["started"] = false;
    } else {
      status["state"] = {{"running", {{"startedAt", started}}}};
      status["ready"] = ready;
      status["started"] = true;
    }
    out.push_back(std::move(status));
  }
  return out;
}

std::vector<std::string> containerNames(const Json& pod) {
  std::vector<std::string> names;
  for (const Json& container : arrayField(objectField(pod, "spec"), "containers")) {
    std::string name = stringField(container, "name");
    if (!name.empty()) names.push_back(std::move(name));
  }
  return names;
}

// The state key ("running", "terminated", "waiting") of a container status.
std::string stateKind(const Json& status) {
  const Json& state = objectField(status, "state");
  for (const char* kind : {"running", "terminated", "waiting"}) {
    if (field(state, kind) != nullptr) return kind;
  }
  return "";
}

bool sameContainers(const Json& current, const Json& desired) {
  if (!current.is_array() || current.size() != desired.size()) return false;
  for (const Json& want : desired) {
    const Json& have = currentContainer(current, stringField(want, "name"));
    if (!have.is_object() || have.empty()) return false;
    if (field(have, "ready") == nullptr || *field(have, "ready") != want["ready"]) return false;
    if (field(have, "started") == nullptr || *field(have, "started") != want["started"]) return false;
    if (stringField(have, "containerID") != stringField(want, "containerID")) return false;
    if (stateKind(have) != stateKind(want)) return false;
    const Json* have_restarts = field(have, "restartCount");
    const int restarts = have_restarts != nullptr && have_restarts->is_number_integer() ? have_restarts->get<int>() : 0;
    if (restarts != want.value("restartCount", 0)) return false;
    const Json& have_state = objectField(have, "state");
    const Json& want_state = objectField(want, "state");
    if (stringField(objectField(have_state, "waiting"), "reason") !=
        stringField(objectField(want_state, "waiting"), "reason")) {
      return false;
    }
    if (objectField(have_state, "terminated").value("exitCode", 0) !=
        objectField(want_state, "terminated").value("exitCode", 0)) {
      return false;
    }
  }
  return true;
}

// The desired status is already there, ignoring timestamps: writing it again would change nothing that matters.
bool matches(const Json& current, const Json& desired) {
  if (stringField(current, "phase") != stringField(desired, "phase")) return false;
  if (stringField(current, "podIP") != stringField(desired, "podIP")) return false;
  if (stringField(current, "hostIP") != stringField(desired, "hostIP")) return false;
  if (stringField(current, "startTime").empty()) return false;
  const Json& have_conditions = arrayField(current, "conditions");
  for (const Json& want : arrayField(desired, "conditions")) {
    const Json* have = findByType(have_conditions, stringField(want, "type"));
    if (have == nullptr || stringField(*have, "status") != stringField(want, "status") ||
        stringField(*have, "reason") != stringField(want, "reason")) {
      return false;
    }
  }
  return sameContainers(arrayField(current, "containerStatuses"), arrayField(desired, "containerStatuses")) &&
         sameContainers(arrayField(current, "initContainerStatuses"), arrayField(desired, "initContainerStatuses"));
}

Readiness readiness(const Json& pod, Target target, const PodFacts& facts) {
  if (target == Target::kFailed) return {false, kSimulatedFailure, std::string(kPhaseAnnotation) + " is Failed"};
  if (target == Target::kSucceeded) return {false, "PodCompleted", ""};
  if (lower(kube::annotationOf(pod, kReadyAnnotation).value_or("")) == "false") {
    return {false, kSimulatedFailure, std::string(kReadyAnnotation) + " is \"false\""};
  }
  if (!facts.ready_delay_elapsed) {
    std::string names;
    for (const std::string& name : containerNames(pod)) names += (names.empty() ? "" : " ") + name;
    return {false, "ContainersNotReady", "containers with unready status: [" + names + "]"};
  }
  return {};
}

Json terminatedJson(const ContainerRun::Terminated& t) {
  Json out = {{"exitCode", t.exit_code},
              {"reason", t.reason},
              {"startedAt", util::formatTime(t.started_at)},
              {"finishedAt", util::formatTime(t.finished_at)}};
  if (t.signal != 0) out["signal"] = t.signal;
  if (!t.message.empty()) out["message"] = t.message;
  if (!t.container_id.empty()) out["containerID"] = t.container_id;
  return out;
}

Json processContainerStatus(const Json& spec, const ContainerRun& run) {
  const std::string image = stringField(spec, "image");
  Json status = {{"name", run.name},
                 {"image", image},
                 {"imageID", "process://" + image},
                 {"restartCount", run.restart_count},
                 {"ready", run.ready},
                 {"started", run.started}};
  if (!run.container_id.empty()) status["containerID"] = run.container_id;
  switch (run.state) {
    case ContainerRun::State::kRunning:
      status["state"] = {{"running", {{"startedAt", util::formatTime(run.started_at)}}}};
      break;
    case ContainerRun::State::kTerminated:
      status["state"] = {{"terminated", run.current ? terminatedJson(*run.current) : Json::object()}};
      break;
    case ContainerRun::State::kWaiting: {
      Json waiting = {{"reason", run.waiting_reason}};
      if (!run.waiting_message.empty()) waiting["message"] = run.waiting_message;
      status["state"] = {{"waiting", std::move(waiting)}};
      break;
    }
  }
  status["lastState"] = run.last ? Json{{"terminated", terminatedJson(*run.last)}} : Json::object();
  return status;
}

// What every status we write has besides the containers: phase, the four conditions (their transition times kept
// while unchanged), the IPs and the start time.
Json statusSkeleton(const Json& pod, const Json& current, const std::string& phase, const Readiness& ready,
                    const PodFacts& facts, const std::string& now) {
  const Json& conditions = arrayField(current, "conditions");
  Json status = Json::object();
  status["phase"] = phase;
  status["conditions"] = Json::array({
      condition(conditions, "Initialized", true, "", "", now),
      condition(conditions, "Ready", ready.ready, ready.reason, ready.message, now),
      condition(conditions, "ContainersReady", ready.ready, ready.reason, ready.message, now),
      condition(conditions, "PodScheduled", true, "", "", now),
  });
  status["hostIP"] = facts.host_ip;
  std::string ip = podIp(pod);
  if (ip.empty()) ip = hostNetwork(pod) ? facts.host_ip : facts.pod_ip;
  status["podIP"] = ip;
  status["podIPs"] = Json::array({{{"ip", ip}}});
  const std::string start_time = stringField(current, "startTime");
  status["startTime"] = start_time.empty() ? now : start_time;
  return status;
}

}  // namespace

PodPlan planProcessPod(const Json& pod, const PodFacts& facts, const PodRun& run) {
  PodPlan plan;
  const Json& current = objectField(pod, "status");
  const std::string phase = stringField(current, "phase");
  if (phase == "Failed" || phase == "Succeeded") return plan;
  const std::string now = util::formatTime(facts.now);

  Json statuses = Json::array();
  bool all_ready = !run.containers.empty();
  bool all_final = !run.containers.empty();
  bool all_succeeded = true;
  bool any_started = false;
  std::string unready;
  const Json& specs = arrayField(objectField(pod, "spec"), "containers");
  for (const ContainerRun& container : run.containers) {
    const Json* spec = nullptr;
    for (const Json& candidate : specs) {
      if (stringField(candidate, "name") == container.name) spec = &candidate;
    }
    statuses.push_back(processContainerStatus(spec != nullptr ? *spec : emptyObject(), container));
    if (!container.ready) {
      all_ready = false;
      unready += (unready.empty() ? "" : " ") + container.name;
    }
    all_final = all_final && container.final;
    all_succeeded = all_succeeded && container.final && container.current && container.current->exit_code == 0;
    any_started = any_started || !container.container_id.empty() || container.last.has_value();
  }
  std::string new_phase = any_started ? "Running" : "Pending";
  if (all_final) new_phase = all_succeeded ? "Succeeded" : "Failed";

  Readiness ready;
  if (new_phase == "Succeeded" || new_phase == "Failed") {
    ready = {false, "PodCompleted", ""};
  } else if (lower(kube::annotationOf(pod, kReadyAnnotation).value_or("")) == "false") {
    ready = {false, kSimulatedFailure, std::string(kReadyAnnotation) + " is \"false\""};
  } else if (!all_ready) {
    ready = {false, "ContainersNotReady", "containers with unready status: [" + unready + "]"};
  }

  Json status = statusSkeleton(pod, current, new_phase, ready, facts, now);
  status["containerStatuses"] = std::move(statuses);
  if (!arrayField(objectField(pod, "spec"), "initContainers").empty()) {
    // Init containers are not run for process pods: reported as completed, as in the simulation.
    status["initContainerStatuses"] =
        containerStatuses(pod, "initContainers", "initContainerStatuses", Target::kRunning, true, /*init=*/true, now);
  }
  if (matches(current, status)) return plan;
  plan.action = PodPlan::Action::kWriteStatus;
  plan.status = std::move(status);
  plan.what = new_phase == "Running" ? (ready.ready ? "processes running, ready" : "processes running, not ready")
                                     : "processes " + new_phase;
  return plan;
}

bool podStarted(const Json& pod) {
  const std::string phase = stringField(objectField(pod, "status"), "phase");
  return phase == "Running" || phase == "Failed" || phase == "Succeeded";
}

std::string podIp(const Json& pod) { return stringField(objectField(pod, "status"), "podIP"); }

bool hostNetwork(const Json& pod) {
  const Json* value = field(objectField(pod, "spec"), "hostNetwork");
  return value != nullptr && value->is_boolean() && value->get<bool>();
}

PodPlan planPod(const Json& pod, const PodFacts& facts) {
  PodPlan plan;
  const Json& metadata = objectField(pod, "metadata");
  if (field(metadata, "deletionTimestamp") != nullptr && !field(metadata, "deletionTimestamp")->is_null()) {
    plan.action = PodPlan::Action::kDelete;
    plan.what = "deleted";
    return plan;
  }
  const Json& current = objectField(pod, "status");
  const std::string phase = stringField(current, "phase");
  // Terminal phases are final, as for a real kubelet: the pod's containers will not run again.
  if (phase == "Failed" || phase == "Succeeded") return plan;

  const std::string requested = lower(kube::annotationOf(pod, kPhaseAnnotation).value_or(""));
  const Target target = requested == "failed"      ? Target::kFailed
                        : requested == "succeeded" ? Target::kSucceeded
                                                   : Target::kRunning;
  const Readiness ready = readiness(pod, target, facts);
  const std::string now = util::formatTime(facts.now);

  const char* new_phase = target == Target::kFailed ? "Failed" : target == Target::kSucceeded ? "Succeeded" : "Running";
  Json status = statusSkeleton(pod, current, new_phase, ready, facts, now);
  status["containerStatuses"] =
      containerStatuses(pod, "containers", "containerStatuses", target, ready.ready, /*init=*/false, now);
  if (!arrayField(objectField(pod, "spec"), "initContainers").empty()) {
    status["initContainerStatuses"] =
        containerStatuses(pod, "initContainers", "initContainerStatuses", target, ready.ready, /*init=*/true, now);
  }
  if (matches(current, status)) return plan;

  plan.action = PodPlan::Action::kWriteStatus;
  plan.status = std::move(status);
  if (target == Target::kFailed) {
    plan.what = "failed";
  } else if (target == Target::kSucceeded) {
    plan.what = "succeeded";
  } else if (phase != "Running") {
    plan.what = ready.ready ? "running and ready" : "running, not ready";
  } else {
    plan.what = ready.ready ? "ready" : "not ready";
  }
  return plan;
}

}  // namespace singleton::sim
