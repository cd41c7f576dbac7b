// The leader Service, and step 8: the status, written only when it differs from what the workload shows (steady
// state makes no writes), with status.handoff and conditions Ready / LeaderElected / ExclusiveActivation / Progressing.
#include "election/handoff.h"
#include "operator/workload/informers.h"
#include "operator/workload/reconcile_context.h"
#include "operator/workload/reconciler.h"
#include "util/log.h"
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

util::Status Reconciler::reconcileService(Context& ctx) {
  const Workload& w = ctx.workload;
  const std::string key = "services/" + w.ns + "/" + w.name;
  if (!w.service) {
    // Removing spec.service deletes the Service we made (only ours).
    if (!ctx.service || !isControlledBy(*ctx.service, w.uid)) return {};
    if (auto s = allowWrite(ctx); !s.ok()) return s;
    kube::DeleteOptions options;
    options.precondition_uid = metaString(*ctx.service, "uid");
    auto removed = client_.remove(kube::kServices, w.ns, w.name, options);
    if (!removed.ok() && removed.error().code != util::ErrorCode::kNotFound) return removed;
    ctx.service.reset();
    return {};
  }

  const Json desired_spec = desiredServiceSpec(w);
  if (!ctx.service) {
    if (auto s = allowWrite(ctx); !s.ok()) return s;
    const Json service = {{"apiVersion", "v1"},
                          {"kind", "Service"},
                          {"metadata",
                           {{"name", w.name},
                            {"namespace", w.ns},
                            {"labels", {{kLabelWorkload, w.name}}},
                            {"ownerReferences", Json::array({w.ownerReference()})}}},
                          {"spec", desiredServiceSpec(w)}};
    auto created = client_.create(kube::kServices, w.ns, service);
    if (!created.ok()) {
      const util::Error& error = created.error();
      if (error.code == util::ErrorCode::kAlreadyExists) {
        // Not in our cache, so not labelled for us: someone else's Service of that name.
        ctx.problem("ServiceConflict", "a Service named " + w.name + " exists and does not belong to this workload");
        return {};
      }
      if (error.code != util::ErrorCode::kInvalid && error.code != util::ErrorCode::kBadRequest) {
        return std::move(created).takeError();
      }
      ctx.problem("ServiceInvalid", "creating Service " + w.name + ": " + error.message);
      ctx.deferred_error = error;
      return {};
    }
    stripService(*created);
    ctx.service = std::move(*created);  // not in controller::RecentWrites: see createPod
    return {};
  }

  if (!isControlledBy(*ctx.service, w.uid)) {
    ctx.problem("ServiceConflict", "Service " + w.name + " is not controlled by this workload");
    return {};
  }
  if (serviceMatches(*ctx.service, desired_spec, w)) return {};
  if (auto s = allowWrite(ctx); !s.ok()) return s;
  // A PUT of the object as read (resourceVersion included: a concurrent change makes it Conflict, and we re-read).
  Json updated = *ctx.service;
  const std::string type = desired_spec["type"];
  updated["metadata"]["labels"][kLabelWorkload] = w.name;
  updated["spec"]["type"] = type;
  updated["spec"]["selector"] = desired_spec["selector"];
  updated["spec"]["ports"] = portsKeepingNodePorts(desired_spec["ports"], updated["spec"].value("ports", Json()), type);
  auto written = client_.update(kube::kServices, w.ns, updated);
  if (!written.ok()) {
    const util::Error& error = written.error();
    if (error.code != util::ErrorCode::kInvalid && error.code != util::ErrorCode::kBadRequest) {
      return std::move(written).takeError();
    }
    ctx.problem("ServiceInvalid", "updating Service " + w.name + ": " + error.message);
    ctx.deferred_error = error;
    return {};
  }
  stripService(*written);
  recent_.record(key, metaString(*ctx.service, "resourceVersion"), *written);
  ctx.service = std::move(*written);
  return {};
}

util::Status Reconciler::updateStatus(Context& ctx) {
  const Workload& w = ctx.workload;
  int replicas = 0;
  int ready = 0;
  bool outdated = false;
  bool scaling = false;
  for (const auto& [name, pod] : ctx.pods) {
    if (!ctx.owns(pod)) continue;
    if (isTerminating(pod)) {
      scaling = true;
      continue;
    }
    ++replicas;
    if (isReady(pod)) ++ready;
    if (!ctx.wanted(name)) {
      scaling = true;
    } else if (!ctx.current(pod)) {
      outdated = true;
    }
  }
  if (replicas != w.replicas) scaling = true;

  Json status = Json::object();
  // Absent, not "", while nobody leads: the apiserver we test on (1.20, Debian build) refuses empty strings in
  // custom resources ("must be of type string: null").
  if (!ctx.leader.empty()) status["leader"] = ctx.leader;
  if (ctx.lease) status["fencingToken"] = ctx.token();
  status["replicas"] = replicas;
  status["readyReplicas"] = ready;
  status["readySummary"] = std::to_string(ready) + "/" + std::to_string(w.replicas);
  status["observedGeneration"] = w.generation;
  // Derived from the Lease (its acquireTime once the token has moved past the first election), so a status write
  // lost after a failover is still right on the next reconcile.
  if (ctx.lease && ctx.token() >= 1 && ctx.lease->spec.acquire_time) {
    status["lastFailoverTime"] = util::formatTime(*ctx.lease->spec.acquire_time);
  }

  // Which guarantee this workload has, and the hand-off in progress (the successor holds the Lease, unlabelled, until
  // the previous holder is known stopped).
  const bool waits = ctx.wait_for_stop;
  status["handoff"] = {{"mode", handoffModeName(w.effectiveHandoff())}};
  std::string pending_message;
  if (ctx.handoff_pending && ctx.lease) {
    const election::HandoffView view = election::parseHandoff(ctx.lease->raw);
    status["handoff"]["pendingFrom"] = view.from;
    if (!view.holder.empty()) status["handoff"]["pendingTo"] = view.holder;
    pending_message = "waiting for " + view.from + " to stop before " +
                      (view.holder.empty() ? std::string("anyone") : view.holder) + " leads (fencing token " +
                      std::to_string(view.token) + ")";
  }
  const bool waiting = waits && !pending_message.empty() && ctx.leader.empty();

  Json conditions = Json::array();
  const bool has_leader = !ctx.leader.empty();
  if (!ctx.problem_reason.empty()) {
    conditions.push_back(condition("Ready", false, ctx.problem_reason, ctx.problem_message));
  } else if (waiting) {
    conditions.push_back(condition("Ready", false, "HandoffPending", pending_message));
  } else if (!has_leader) {
    conditions.push_back(condition("Ready", false, "NoReadyReplica", "no pod is Ready to lead"));
  } else {
    conditions.push_back(condition("Ready", true, "LeaderReady", "leader " + ctx.leader + " is Ready"));
  }
  if (has_leader) {
    conditions.push_back(
        condition("LeaderElected", true, "Elected",
                  ctx.leader + " holds Lease " + w.leaseName() + " with fencing token " + std::to_string(ctx.token())));
  } else if (waiting) {
    conditions.push_back(condition("LeaderElected", false, "HandoffPending", pending_message));
  } else {
    conditions.push_back(condition("LeaderElected", false, "NoReadyReplica", "no Ready pod can lead"));
  }
  conditions.push_back(
      waits ? condition("ExclusiveActivation", true, "WaitForStop",
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
  const std::string now = util::formatTime(clock_.wallNow());
  for (Json& c : conditions) {
    c["observedGeneration"] = w.generation;
    const Json* old = findCondition(w.status, c["type"]);
    c["lastTransitionTime"] =
        old && old->value("status", "") == c["status"] ? old->value("lastTransitionTime", now) : now;
  }
  status["conditions"] = std::move(conditions);

  // Pods just created change again within moments (scheduled, started, Ready), and each change brings the workload
  // back here: this status would be rewritten at once. A status write is among the costliest requests (the custom
  // resource's whole object decoded, validated, re-encoded and sent to every watcher), and leaving it out of such
  // passes made a cold start of 1,000 workloads about 15 s faster. Never when leadership moved: the status must
  // name the new leader and token at once. reconcile() looks again after kStatusAfterCreate in any case.
  const auto fieldOf = [](const Json& object, const char* name) { return object.value(name, Json()); };
  if (ctx.created_pods && fieldOf(status, "leader") == fieldOf(w.status, "leader") &&
      fieldOf(status, "fencingToken") == fieldOf(w.status, "fencingToken")) {
    ctx.status_deferred = true;
    return {};
  }

  // Events on transitions, read from the status as the workload shows it.
  // A pending hand-off leaves the workload without a labelled leader by design (the successor waits for the old one
  // to stop): the Failover event already said so, and a warning would cry wolf on every failover.
  if (conditionField(w.status, "LeaderElected", "status") == "True" && !has_leader && !waiting) {
    event(ctx, controller::EventType::kWarning, "NoReadyReplica", "no Ready pod can lead; the workload has no leader");
  }
  if (conditionField(w.status, "Progressing", "reason") == "RollingUpdate" && !outdated) {
    event(ctx, controller::EventType::kNormal, "RolloutComplete", "every pod runs template " + w.template_hash);
  }

  if (status == w.status) return {};
  Json patch = status;
  for (const auto& [field, value] : w.status.items()) {
    if (!patch.contains(field)) {
      patch[field] = nullptr;
    } else if (value.is_object() && patch[field].is_object()) {
      // A merge patch merges objects (status.handoff): keys no longer set go as null too.
      for (const auto& [key, old] : value.items()) {
        if (!patch[field].contains(key)) patch[field][key] = nullptr;
      }
    }
  }
  return patchStatus(ctx, patch);
}

}  // namespace singleton::op
