// What a pod's container asks of a host process, decided from the pod alone (pure, unit-tested): whether it runs as
// a real process at all (the opt-in rule of README.md), its environment (template env, downward API, the in-cluster
// service variables), its argv (command + args with $(VAR) expanded, as Kubernetes composes them), its readiness
// probe, the restart backoff and the termination grace. ProcessRuntime runs what this decides.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "json_util.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::sim {

using EnvList = std::vector<std::pair<std::string, std::string>>;

// Where the service-account files are read by in-cluster config; bind-mounted per container process.
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// The opt-in rule: a container runs as a host process when its command[0] is an absolute path to a file this host
// can execute. A pod runs as processes when any of its containers does. `executable` answers for a path (tests
// inject it; the default asks access(X_OK) on a regular file).
using ExecutableCheck = std::function<bool(const std::string& path)>;
bool hostExecutable(const std::string& path);
bool isProcessContainer(const Json& container, const ExecutableCheck& executable = hostExecutable);
bool isProcessPod(const Json& pod, const ExecutableCheck& executable = hostExecutable);

// What the downward API and the service variables read besides the pod itself.
struct EnvFacts {
  std::string pod_ip;        // status.podIP (the pod's own, or the one we are about to write)
  std::string host_ip;       // status.hostIP
  std::string service_host;  // KUBERNETES_SERVICE_HOST: the local apiserver
  std::string service_port;  // KUBERNETES_SERVICE_PORT
};

// The container's environment: PATH, HOSTNAME, HOME, the KUBERNETES_SERVICE_* / KUBERNETES_PORT* variables, then the
// template's env in order (value with $(VAR) expanded against what precedes it; valueFrom.fieldRef for metadata.name,
// metadata.namespace, metadata.uid, metadata.labels['k'], metadata.annotations['k'], spec.nodeName,
// spec.serviceAccountName, status.podIP, status.hostIP). A later entry replaces an earlier one of the same name.
// secretKeyRef, configMapKeyRef, resourceFieldRef and envFrom: an error naming the variable (kInvalidArgument).
util::Result<EnvList> containerEnv(const Json& pod, const Json& container, const EnvFacts& facts);

// Kubernetes' $(VAR) expansion: a defined $(VAR) is replaced, an undefined one is left as written, $$ is a '$'.
std::string expandVars(const std::string& text, const EnvList& env);

// command + args, each expanded against `env`. Empty when the container has no command.
std::vector<std::string> containerArgv(const Json& container, const EnvList& env);

struct Probe {
  enum class Kind { kExec, kHttpGet, kTcpSocket };
  Kind kind = Kind::kExec;
  std::vector<std::string> command;  // exec
  std::string path = "/";            // httpGet
  int port = 0;                      // httpGet, tcpSocket: on 127.0.0.1
  int initial_delay_seconds = 0;
  int period_seconds = 10;
  int timeout_seconds = 1;
  int success_threshold = 1;
  int failure_threshold = 3;
};

// The container's readinessProbe (nullopt when it has none), with Kubernetes' defaults. A named port is resolved
// from the container's ports. Unsupported (HTTPS, grpc, an unknown port name, no handler): kInvalidArgument.
util::Result<std::optional<Probe>> readinessProbe(const Json& container);

// How long to wait before restart number `restarts + 1` of a container that exited: nothing before the first
// restart, then base, 2*base, 4*base, ... up to cap (the kubelet's 10 s .. 5 min with the defaults).
util::Millis restartDelay(int restarts, util::Millis base, util::Millis cap);

// Whether a container that exited with `exit_code` is started again under the pod's restartPolicy
// (Always, the default; OnFailure; Never).
bool shouldRestart(const std::string& restart_policy, int exit_code);

// The grace a deletion gives the processes: metadata.deletionGracePeriodSeconds, else
// spec.terminationGracePeriodSeconds, else 30.
int terminationGraceSeconds(const Json& pod);

// The service account whose token the pod gets ("default" when unset), and whether it is mounted at all
// (automountServiceAccountToken: false on the pod turns it off).
std::string serviceAccountName(const Json& pod);
bool automountToken(const Json& pod);

// What the runtime reports of one container; planProcessPod turns it into a containerStatus.
struct ContainerRun {
  enum class State { kWaiting, kRunning, kTerminated };
  struct Terminated {
    int exit_code = 0;
    int signal = 0;
    std::string reason;  // Completed, Error, StartError
    std::string message;
    util::WallTime started_at;
    util::WallTime finished_at;
    std::string container_id;
  };
  std::string name;
  State state = State::kWaiting;
  std::string waiting_reason = "ContainerCreating";  // kWaiting: ContainerCreating, CrashLoopBackOff, ...
  std::string waiting_message;
  util::WallTime started_at;          // kRunning
  std::optional<Terminated> current;  // kTerminated: the run that ended
  std::optional<Terminated> last;     // the previous run (lastState), once restarted
  std::string container_id;           // "process://<pid>" of the current or last run
  bool ready = false;
  bool started = false;  // running (no startup probes)
  bool final = false;    // terminated and not going to be restarted
  int restart_count = 0;
};

struct PodRun {
  std::vector<ContainerRun> containers;  // spec.containers order
  bool stopped = false;                  // terminating and every process is gone
};

}  // namespace singleton::sim
