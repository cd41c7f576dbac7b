// Runs the containers of process pods (README.md, "Pods that run real processes") as host processes and reports their
// state: one loop thread starts every process (so PR_SET_PDEATHSIG, which follows the spawning thread, lasts as long
// as the runtime), reaps them, restarts them under the pod's restartPolicy with backoff, runs readiness probes,
// requests and refreshes the pods' service-account tokens, and on deletion sends SIGTERM to each container's process
// group and SIGKILL after the grace. Callers (the pod workers) only record what they want (sync) and read the state
// (status); every change the pod's status should show is announced through the Changed callback.
//
// Why not lib/process (process::Child): a container needs what Child does not offer between fork and exec (its own
// mount namespace with the token bind-mounted, stdout/stderr to a log file, a working directory, an environment that
// is not ours) and many processes polled from one loop instead of one waiting thread each. The supervision it shares
// with Child (own process group under a watcher process that kills the group when we end, death signal armed
// race-free, group killed when the main process ends) follows Child's design, repeated here in a few system calls
// rather than widening Child's interface for a test tool.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "container_spec.h"
#include "kube/client.h"
#include "util/clock.h"

namespace singleton::sim {

class ProcessRuntime {
 public:
  struct Config {
    std::string log_dir;    // <log_dir>/<namespace>_<pod>_<uid>/<container>.log
    std::string state_dir;  // <state_dir>/<uid>/serviceaccount: the token, ca.crt and namespace files
    std::string service_host;
    std::string service_port;
    std::string ca_pem;  // written as ca.crt
    util::Millis restart_base{10'000};
    util::Millis restart_cap{300'000};
    int token_seconds = 3600;       // requested token lifetime
    util::Millis token_refresh{0};  // a new token this often; zero: at 80% of token_seconds
    std::string host_ip = "127.0.0.1";
  };
  using Changed = std::function<void(const std::string& key)>;

  ProcessRuntime(kube::Client& client, Config config, Changed changed);
  ~ProcessRuntime();  // kills whatever still runs (run() normally stopped it all)
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  // The loop, until `stop`; then every process gets SIGTERM and, 2 s later, SIGKILL, and is reaped.
  void run(std::stop_token stop);

  // Records the pod (first call: its containers will be started with `pod_ip` for the downward API) and its
  // deletion (metadata.deletionTimestamp: stop the processes). Thread-safe, does not block on processes.
  void sync(const Json& pod, const std::string& pod_ip);
  // The pod object is gone: kill its processes at once and drop its token directory (logs stay).
  void forget(const std::string& uid);
  bool known(const std::string& uid) const;
  // The state of the pod's containers, or nullopt for a pod never synced.
  std::optional<PodRun> status(const std::string& uid) const;
  // True when nothing of the pod runs any more (never started, or terminated and reaped).
  bool stopped(const std::string& uid) const;

 private:
  struct Container;
  struct Pod;

  void step(Pod& pod, std::vector<std::string>& changed);
  void startContainer(Pod& pod, Container& container, std::vector<std::string>& changed);
  void reap(Pod& pod, Container& container, std::vector<std::string>& changed);
  void probe(Pod& pod, Container& container, std::vector<std::string>& changed);
  bool ensureToken(Pod& pod, std::string& error);
  void killAll(Pod& pod, int sig);

  kube::Client& client_;
  Config config_;
  Changed changed_;
  const util::Clock& clock_ = util::systemClock();
  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  bool wake_requested_ = false;
  std::map<std::string, std::unique_ptr<Pod>> pods_;  // by uid
  // The watchers' life pipe: they hold the read end, we alone the write end; our end (exit, crash, SIGKILL) is their
  // EOF, and they kill their commands' groups.
  int life_read_ = -1;
  int life_write_ = -1;
  bool mount_point_ok_ = false;
  std::string mount_point_error_;
};

}  // namespace singleton::sim
