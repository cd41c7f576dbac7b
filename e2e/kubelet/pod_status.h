// What the simulated kubelet does with one pod, decided from the pod alone (level-based: the same pod always gives
// the same plan, whatever event brought it). Pure functions, so the contract is unit-tested without a cluster.
#pragma once

#include <string>

#include "container_spec.h"
#include "contract.h"
#include "json_util.h"
#include "util/clock.h"

namespace singleton::sim {

struct PodFacts {
  util::WallTime now;
  std::string pod_ip;                 // used when the pod has none yet
  std::string host_ip = "127.0.0.1";  // the node's address
  bool ready_delay_elapsed = true;    // --ready-delay has passed since the pod was started
};

struct PodPlan {
  enum class Action {
    kNothing,      // already as it should be (or terminal)
    kDelete,       // graceful deletion requested: finish it (grace 0, precondition uid)
    kWriteStatus,  // merge-patch `status` into pods/status
  };
  Action action = Action::kNothing;
  Json status;       // kWriteStatus: the fields to set (we own them all, so lists are replaced whole)
  std::string what;  // for logs: "running", "ready", "not ready", "failed", ...
};

PodPlan planPod(const Json& pod, const PodFacts& facts);

// The status of a pod whose containers run as processes (README.md): containerStatuses from `run` (state, exit
// code, restartCount, lastState, readiness from its probe), Ready when every container is, the phase from the
// containers and the restartPolicy (Pending before any started; Succeeded/Failed once every container has ended
// for good). The pod's deletion is not handled here (the agent stops the processes, then deletes).
PodPlan planProcessPod(const Json& pod, const PodFacts& facts, const PodRun& run);

// True when the pod is bound and its status says so: a started pod that needs no IP from us.
bool podStarted(const Json& pod);
// The pod's own IP (status.podIP), or "".
std::string podIp(const Json& pod);
bool hostNetwork(const Json& pod);

}  // namespace singleton::sim
