// A typed view of a SingletonWorkload, the names and keys the operator writes, and the helpers that read pods.
// Everything here is pure (no API calls), so the reconciler's decisions can be tested on plain JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kube/object.h"
#include "kube/resource.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::op {

using Json = nlohmann::json;

inline const kube::Resource kWorkloads{"singleton.dev", "v1alpha1", "singletonworkloads", true};
inline constexpr std::string_view kWorkloadApiVersion = "singleton.dev/v1alpha1";
inline constexpr std::string_view kWorkloadKind = "SingletonWorkload";

// Labels and annotations (docs/design.md, "SingletonWorkload controller").
inline const std::string kLabelWorkload = "singleton.dev/workload";
inline const std::string kLabelRole = "singleton.dev/role";
inline const std::string kRoleLeader = "leader";
inline const std::string kRoleStandby = "standby";
inline const std::string kAnnotationTemplateHash = "singleton.dev/template-hash";
inline const std::string kAnnotationFencingToken = "singleton.dev/fencing-token";
inline const std::string kAnnotationLeaderUid = "singleton.dev/leader-uid";
inline const std::string kAnnotationOperatorTerm = "singleton.dev/operator-term";
inline const std::string kAnnotationSwitchoverTo = "singleton.dev/switchover-to";

// The identity env the operator adds to every container and init container it creates (docs/handoff.md): what
// singleton-agent reads to know its workload and pod.
inline const std::string kEnvWorkload = "SINGLETON_WORKLOAD";
inline const std::string kEnvPodName = "POD_NAME";
inline const std::string kEnvPodNamespace = "POD_NAMESPACE";
inline const std::string kEnvPodUid = "POD_UID";

// spec.handoff: whether a successor becomes leader only once the previous leader has stopped (docs/handoff.md).
enum class HandoffMode {
  kAuto,         // WaitForStop when the template runs singleton-agent (templateRunsAgent), else Immediate
  kWaitForStop,  // the Lease names who must stop first; the successor is labelled once the hand-off is complete
  kImmediate,    // the successor is labelled at once (no agent: the fencing token is the only guard)
};
const char* handoffModeName(HandoffMode mode);  // "Auto", "WaitForStop", "Immediate"

inline constexpr int kDefaultReplicas = 2;               // the CRD's default, for objects the apiserver did not default
inline constexpr int kDefaultLeaseDurationSeconds = 15;  // the operator's default (docs/design.md)

struct Workload {
  std::string ns;
  std::string name;
  std::string uid;
  std::int64_t generation = 0;
  int replicas = kDefaultReplicas;
  int lease_duration_seconds = kDefaultLeaseDurationSeconds;
  Json pod_template = Json::object();        // spec.template
  std::string template_hash;                 // templateHash(pod_template)
  std::optional<Json> service;               // spec.service
  HandoffMode handoff = HandoffMode::kAuto;  // spec.handoff as written (unknown values read as Auto)
  std::string switchover_to;                 // the singleton.dev/switchover-to annotation, "" when absent
  bool deleting = false;                     // metadata.deletionTimestamp is set
  Json status = Json::object();              // as read

  // Fails on what the CRD schema should have refused (no name, no spec.template).
  static util::Result<Workload> fromJson(const Json& object);

  std::string key() const { return ns + "/" + name; }
  std::string podName(int ordinal) const { return name + "-" + std::to_string(ordinal); }
  std::string leaseName() const { return name + "-leader"; }
  // spec.handoff with Auto resolved: WaitForStop or Immediate.
  HandoffMode effectiveHandoff() const;
  // The controller ownerReference that pods, the Lease and the Service carry, so garbage collection removes them.
  Json ownerReference() const;
  // For Events: involvedObject.
  kube::ObjectReference objectReference() const;
};

// --- Reading any object -------------------------------------------------------------------------------------------

// The accessors of kube/object.h, under the names the reconciler reads them by.
using kube::annotationOf;
using kube::annotationPointer;
using kube::integerAnnotationOf;
using kube::isControlledBy;
using kube::labelOf;
using kube::labelPointer;
using kube::metaString;

// --- Pods ---------------------------------------------------------------------------------------------------------

bool isTerminating(const Json& pod);  // metadata.deletionTimestamp is set
bool isReady(const Json& pod);        // condition Ready=True
bool hasExited(const Json& pod);      // phase Failed or Succeeded
// Could hold or take leadership: Ready, not terminating, not exited.
inline bool isAvailable(const Json& pod) { return isReady(pod) && !isTerminating(pod) && !hasExited(pod); }
// The ordinal of "<workload>-<n>" (n without leading zeros), or nullopt for any other name.
std::optional<int> ordinalOf(std::string_view pod_name, std::string_view workload_name);
// When the pod stopped being a good leader, as the API recorded it: the deletion request (deletionTimestamp minus
// the grace period), or the Ready condition's lastTransitionTime when it is not True. nullopt when unknown.
std::optional<util::WallTime> unhealthySince(const Json& pod);

// Some container or init container of the pod template runs singleton-agent: its command[0]'s basename is
// "singleton-agent" (the agent wraps COMMAND, or runs as a sidecar). An agent started by an image's entrypoint
// without `command` is not seen: set spec.handoff: WaitForStop for it.
bool templateRunsAgent(const Json& pod_template);
// Every container in the pod's status has terminated (or the pod is Failed/Succeeded): no process of this pod runs.
// False when the status lists no container.
bool containersTerminated(const Json& pod);

// A stable hash of a pod template: FNV-1a 64 of its canonical JSON (nlohmann sorts object keys), as 16 hex digits.
std::string templateHash(const Json& pod_template);
// The identity env entries, in order: SINGLETON_WORKLOAD=<workload_name>, then POD_NAME, POD_NAMESPACE, POD_UID from
// the downward API (fieldRef metadata.name, metadata.namespace, metadata.uid).
Json agentIdentityEnv(const std::string& workload_name);
// The pod for an ordinal: the template's labels and annotations plus ours (ours win on the reserved keys), role
// standby (a pod is never born a leader), the template hash, the operator term that creates it (the label fence,
// docs/design.md "Operator self-fencing"), the ownerReference, and agentIdentityEnv() prepended to the env of every
// container and init container, for each name the container does not set itself (the template's value wins).
Json desiredPod(const Workload& workload, int ordinal, long long operator_term);

}  // namespace singleton::op
