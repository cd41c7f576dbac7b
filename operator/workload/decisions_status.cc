// The Service and step 8's status decisions (decisions.h): status.handoff and the conditions Ready / LeaderElected /
// ExclusiveActivation / Progressing. Pure: reconcile_status.cc writes what they decide.
#include "operator/workload/decisions.h"

#include "util/time_format.h"

namespace singleton::op {
namespace {

// Ports as we compare them: the fields we set, with the apiserver's defaults filled in.
Json normalizedPorts(const Json& ports) {
  Json out = Json::array();
  if (!ports.is_array()) return out;
  for (const Json& port : ports) {
    if (!port.is_object()) continue;
    Json p = {{"port", port.value("port", 0)}, {"protocol", port.value("protocol", std::string("TCP"))}};
    if (port.contains("name") && port["name"].is_string() && !port["name"].get<std::string>().empty()) {
      p["name"] = port["name"];
    }
    p["targetPort"] = port.contains("targetPort") && !port["targetPort"].is_null() ? port["targetPort"] : p["port"];
    out.push_back(std::move(p));
  }
  return out;
}

Json desiredServiceSpec(const Workload& w) {
  return {{"type", w.service->value("type", std::string("ClusterIP"))},
          {"selector", {{kLabelWorkload, w.name}, {kLabelRole, kRoleLeader}}},
          {"ports", normalizedPorts(w.service->value("ports", Json::array()))}};
}

bool serviceMatches(const Json& service, const Json& desired_spec, const Workload& w) {
  const Json spec = service.value("spec", Json::object());
  return labelOf(service, kLabelWorkload) == w.name &&
         spec.value("type", std::string("ClusterIP")) == desired_spec["type"] &&
         spec.value("selector", Json::object()) == desired_spec["selector"] &&
         normalizedPorts(spec.value("ports", Json::array())) == desired_spec["ports"];
}

// The desired ports, keeping the node ports the apiserver allocated (a NodePort Service would get new ones).
Json portsKeepingNodePorts(const Json& desired_ports, const Json& existing_ports, const std::string& type) {
  Json out = desired_ports;
  if (type == "ClusterIP" || !existing_ports.is_array()) return out;
  for (Json& port : out) {
    for (const Json& old : existing_ports) {
      if (old.is_object() && old.value("port", 0) == port["port"] &&
          old.value("protocol", std::string("TCP")) == port["protocol"] && old.contains("nodePort")) {
        port["nodePort"] = old["nodePort"];
      }
    }
  }
  return out;
}

Json condition(const std::string& type, bool status, const std::string& reason, const std::string& message) {
  return {{"type", type}, {"status", status ? "True" : "False"}, {"reason", reason}, {"message", message}};
}

const Json* findCondition(const Json& status, const std::string& type) {
  const auto conditions = status.find("conditions");
  if (conditions == status.end() || !conditions->is_array()) return nullptr;
  for (const Json& c : *conditions) {
    if (c.is_object() && c.value("type", "") == type) return &c;
  }
  return nullptr;
}

std::string conditionField(const Json& status, const std::string& type, const char* field) {
  const Json* c = findCondition(status, type);
  return c ? c->value(field, std::string()) : std::string();
}

}  // namespace

Json desiredService(const Workload& w) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata",
           {{"name", w.name},
            {"namespace", w.ns},
            {"labels", {{kLabelWorkload, w.name}}},
            {"ownerReferences", Json::array({w.ownerReference()})}}},
          {"spec", desiredServiceSpec(w)}};
}

std::optional<Json> serviceUpdate(const Json& service, const Workload& w) {
  const Json desired_spec = desiredServiceSpec(w);
  if (serviceMatches(service, desired_spec, w)) return std::nullopt;
  Json updated = service;
  const std::string type = desired_spec["type"];
  updated["metadata"]["labels"][kLabelWorkload] = w.name;
  updated["spec"]["type"] = type;
  updated["spec"]["selector"] = desired_spec["selector"];
  updated["spec"]["ports"] = portsKeepingNodePorts(desired_spec["ports"], updated["spec"].value("ports", Json()), type);
  return updated;
}

StatusPlan desiredStatus(const WorkloadView& view, const Findings& findings, bool wait_for_stop,
                         const std::string& now) {
  const Workload& w = view.workload;
  int replicas = 0;
  int ready = 0;
  bool outdated = false;
  bool scaling = false;
  for (const auto& [name, pod] : view.pods) {
    if (!view.owns(pod)) continue;
    if (isTerminating(pod)) {
      scaling = true;
      continue;
    }
    ++replicas;
    if (isReady(pod)) ++ready;
    if (!view.wanted(name)) {
      scaling = true;
    } else if (!view.current(pod)) {
      outdated = true;
    }
  }
  if (replicas != w.replicas) scaling = true;

  const std::string& leader = findings.leader;
  Json status = Json::object();
  // Absent, not "", while nobody leads: the apiserver we test on (1.20, Debian build) refuses empty strings in
  // custom resources ("must be of type string: null").
  if (!leader.empty()) status["leader"] = leader;
  if (view.lease) status["fencingToken"] = view.token();
  status["replicas"] = replicas;
  status["readyReplicas"] = ready;
  status["readySummary"] = std::to_string(ready) + "/" + std::to_string(w.replicas);
  status["observedGeneration"] = w.generation;
  // Derived from the Lease (its acquireTime once the token has moved past the first election), so a status write
  // lost after a failover is still right on the next reconcile.
  if (view.lease && view.token() >= 1 && view.lease->spec.acquire_time) {
    status["lastFailoverTime"] = util::formatTime(*view.lease->spec.acquire_time);
  }

  // Which guarantee this workload has, and the hand-off in progress (the successor holds the Lease, unlabelled, until
  // the previous holder is known stopped).
  status["handoff"] = {{"mode", handoffModeName(w.effectiveHandoff())}};
  std::string pending_message;
  if (findings.handoff_pending && view.lease) {
    const election::HandoffView handoff = election::parseHandoff(view.lease->raw);
    status["handoff"]["pendingFrom"] = handoff.from;
    if (!handoff.holder.empty()) status["handoff"]["pendingTo"] = handoff.holder;
    pending_message = "waiting for " + handoff.from + " to stop before " +
                      (handoff.holder.empty() ? std::string("anyone") : handoff.holder) + " leads (fencing token " +
                      std::to_string(handoff.token) + ")";
  }
  const bool waiting = wait_for_stop && !pending_message.empty() && leader.empty();

  Json conditions = Json::array();
  const bool has_leader = !leader.empty();
  if (!findings.problem_reason.empty()) {
    conditions.push_back(condition("Ready", false, findings.problem_reason, findings.problem_message));
  } else if (waiting) {
    conditions.push_back(condition("Ready", false, "HandoffPending", pending_message));
  } else if (!has_leader) {
    conditions.push_back(condition("Ready", false, "NoReadyReplica", "no pod is Ready to lead"));
  } else {
    conditions.push_back(condition("Ready", true, "LeaderReady", "leader " + leader + " is Ready"));
  }
  if (has_leader) {
    conditions.push_back(
        condition("LeaderElected", true, "Elected",
                  leader + " holds Lease " + w.leaseName() + " with fencing token " + std::to_string(view.token())));
  } else if (waiting) {
    conditions.push_back(condition("LeaderElected", false, "HandoffPending", pending_message));
  } else {
    conditions.push_back(condition("LeaderElected", false, "NoReadyReplica", "no Ready pod can lead"));
  }
  conditions.push_back(
      wait_for_stop
          ? condition("ExclusiveActivation", true, "WaitForStop",
                      "a new leader is labelled (and its singleton-agent starts it) only once the previous leader "
                      "is known stopped")
          : condition("ExclusiveActivation", false, "Immediate",
                      "a new leader is labelled at once; the previous leader's process may still run until it "
                      "stops, so only the fencing token guards shared state (spec.handoff)"));
  if (outdated) {
    conditions.push_back(condition("Progressing", true, "RollingUpdate", "replacing pods to run the current template"));
  } else if (scaling) {
    conditions.push_back(condition("Progressing", true, "Scaling",
                                   std::to_string(replicas) + " pods, " + std::to_string(w.replicas) + " wanted"));
  } else {
    conditions.push_back(condition("Progressing", false, "UpToDate", "every pod runs the current template"));
  }
  for (Json& c : conditions) {
    c["observedGeneration"] = w.generation;
    const Json* old = findCondition(w.status, c["type"]);
    c["lastTransitionTime"] =
        old && old->value("status", "") == c["status"] ? old->value("lastTransitionTime", now) : now;
  }
  status["conditions"] = std::move(conditions);

  StatusPlan plan;
  plan.status = std::move(status);
  // Transitions, read from the status as the workload shows it. A pending hand-off leaves the workload without a
  // labelled leader by design (the successor waits for the old one to stop): the Failover event already said so,
  // and a warning would cry wolf on every failover.
  plan.leader_lost = conditionField(w.status, "LeaderElected", "status") == "True" && !has_leader && !waiting;
  plan.rollout_done = conditionField(w.status, "Progressing", "reason") == "RollingUpdate" && !outdated;
  return plan;
}

bool deferStatus(const Findings& findings, const Json& desired, const Json& current) {
  // Pods just created change again within moments (scheduled, started, Ready), and each change brings the workload
  // back here: this status would be rewritten at once. A status write is among the costliest requests (the custom
  // resource's whole object decoded, validated, re-encoded and sent to every watcher), and leaving it out of such
  // passes made a cold start of 1,000 workloads about 15 s faster. Never when leadership moved: the status must
  // name the new leader and token at once. reconcile() looks again after kStatusAfterCreate in any case.
  const auto field = [](const Json& object, const char* name) { return object.value(name, Json()); };
  return findings.created_pods && field(desired, "leader") == field(current, "leader") &&
         field(desired, "fencingToken") == field(current, "fencingToken");
}

std::optional<Json> statusPatch(const Json& desired, const Json& current) {
  if (desired == current) return std::nullopt;
  Json patch = desired;
  for (const auto& [field, value] : current.items()) {
    if (!patch.contains(field)) {
      patch[field] = nullptr;
    } else if (value.is_object() && patch[field].is_object()) {
      // A merge patch merges objects (status.handoff): keys no longer set go as null too.
      for (const auto& [key, old] : value.items()) {
        if (!patch[field].contains(key)) patch[field][key] = nullptr;
      }
    }
  }
  return patch;
}

}  // namespace singleton::op
