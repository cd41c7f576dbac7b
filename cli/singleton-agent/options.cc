#include "cli/singleton-agent/options.h"

#include <algorithm>
#include <cstdlib>

#include "controller/http_server.h"
#include "election/timing_flags.h"
#include "election/timings.h"
#include "util/duration.h"
#include "util/flags.h"
#include "util/log.h"

namespace singleton::cli {
namespace {

util::Error usageError(const std::string& message) {
  return util::makeError(util::ErrorCode::kInvalidArgument, message);
}

bool isDnsLabel(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool isDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = s.find('.', start);
    if (!isDnsLabel(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start))) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

util::FlagSet agentFlags(AgentOptions& options) {
  util::FlagSet flags({.command_after_dashes = true, .unexpected_hint = "a command goes after --"});
  flags.addString("kubeconfig", options.kubeconfig, "FILE",
                  "kubeconfig to use; default: the in-cluster service account (then $KUBECONFIG, ~/.kube/config)");
  flags.addString("workload", options.workload, "NAME",
                  "the SingletonWorkload; its Lease is <NAME>-leader (default: $SINGLETON_WORKLOAD)");
  flags.addString("pod-name", options.pod_name, "NAME", "this pod's name (default: $POD_NAME)");
  flags.addString("pod-namespace", options.pod_namespace, "NS",
                  "this pod's namespace, where the Lease is (default: $POD_NAMESPACE)");
  flags.addString("pod-uid", options.pod_uid, "UID", "this pod's UID (default: $POD_UID)");
  flags.addDuration("renew-deadline", options.renew_deadline, "D",
                    "a leader that has not confirmed its Lease for this long stops COMMAND and reports standby "
                    "(default {default})");
  flags.addDuration("renew-interval", options.renew_interval, "D",
                    "a leader confirms its Lease with one GET this often (default {default}); less than "
                    "renew-deadline");
  election::addGracePeriodFlag(
      flags, options.grace_period, options.grace_period_set,
      "after SIGTERM, how long COMMAND may take before SIGKILL; default: what the Lease's duration leaves, "
      "lease - renew-deadline - 10% of lease - the reap wait (3s at 15s/10s)\n(need renew-deadline + grace-period + "
      "reap wait + 10% of the lease <= the Lease's leaseDurationSeconds, checked when the Lease is first seen)");
  flags.addString("role-dir", options.role_dir, "DIR",
                  "publish the role in files DIR/role (leader|standby) and DIR/token, each replaced atomically");
  flags.addString(
      "listen", options.listen, "HOST:PORT",
      "serve GET (and HEAD) /role, /readyz, /healthz here (default {default}: loopback, a free port, logged in "
      "the ready line); \":PORT\" listens on every interface (IPv6 and IPv4), a host name such as "
      "localhost is resolved (its first address that binds), an IPv6 address goes in brackets: [::1]:8080");
  log::addFlags(flags, options.log_format, options.log_level);
  return flags;
}

}  // namespace

std::map<std::string, std::string> agentEnvironment() {
  std::map<std::string, std::string> env;
  for (const char* name : {"SINGLETON_WORKLOAD", "POD_NAME", "POD_NAMESPACE", "POD_UID"}) {
    if (const char* v = std::getenv(name)) env[name] = v;
  }
  return env;
}

std::string agentUsage() {
  AgentOptions defaults;
  return R"(singleton-agent: run COMMAND only while this pod is its SingletonWorkload's active leader.

Usage:
  singleton-agent [flags] [-- COMMAND [ARGS...]]

Flags:
)" + agentFlags(defaults).help() +
         R"(
Durations are Go-style: 500ms, 4s, 1m30s.

The agent watches the Lease <workload>-leader in the pod's namespace. COMMAND starts (with SINGLETON_FENCING_TOKEN
and SINGLETON_ROLE=leader in its environment, in a process group of its own) only when this pod holds the Lease and
the hand-off to it is complete, confirmed by a fresh GET. A leader re-confirms with one GET every renew-interval; if
none succeeds for renew-deadline, or the Lease moves away, COMMAND gets SIGTERM, SIGKILL after the grace period, and
the pod turns NotReady (GET /readyz fails) until the agent confirms again or sees that another pod holds the Lease.
When the Lease was handed from this pod to another, the agent acknowledges on the Lease once COMMAND has stopped.
Without COMMAND (sidecar mode) the role is only published: --role-dir files and GET /role
({"role":"leader","token":7,"since":"..."}).

Output: one JSON object per line on stdout per event ("ready", "role", "started_command", "stopped_command",
"command_exited", "self_demoted", "acked_handoff"), e.g.
  {"ts":"2026-01-02T15:04:05.123Z","event":"started_command","pod":"web-0","token":7}
Logs (not events) go to stderr: text by default, for people; --log-format json gives one object per line
({"ts","level","logger","msg"}, the Lease as "object", errors as "err", the rest as fields) for a log collector.

Signals: SIGTERM or SIGINT stops COMMAND first; if this pod holds the Lease, the agent then waits up to
min(renew-deadline, 5s) for the hand-off away from it, acknowledges it, and exits 0 (a second signal: at once).
Exit status: 0 stopped by signal; 2 bad flags or configuration (including timings the Lease's duration does not
allow); 1 a runtime failure; otherwise COMMAND's own status when it exits by itself (the agent then exits too, so
the container restarts; the hand-off moves on as for any stopped leader).
)";
}

util::Result<AgentOptions> parseAgentOptions(const std::vector<std::string>& args,
                                             const std::map<std::string, std::string>& env) {
  AgentOptions options;
  auto parsed = agentFlags(options).parse(args);
  if (!parsed.ok()) return std::move(parsed).takeError();
  options.help = parsed->help;
  options.version = parsed->version;
  if (options.help || options.version) return options;
  options.command = std::move(parsed->command);

  auto fromEnv = [&env](std::string& target, const char* name) {
    if (!target.empty()) return;
    if (auto it = env.find(name); it != env.end()) target = it->second;
  };
  fromEnv(options.workload, "SINGLETON_WORKLOAD");
  fromEnv(options.pod_name, "POD_NAME");
  fromEnv(options.pod_namespace, "POD_NAMESPACE");
  fromEnv(options.pod_uid, "POD_UID");
  if (options.workload.empty()) return usageError("no workload: set SINGLETON_WORKLOAD or --workload");
  if (options.pod_name.empty()) return usageError("no pod name: set POD_NAME or --pod-name");
  if (options.pod_namespace.empty()) return usageError("no pod namespace: set POD_NAMESPACE or --pod-namespace");
  if (options.pod_uid.empty()) return usageError("no pod UID: set POD_UID or --pod-uid");
  if (!isDnsSubdomain(options.leaseName())) {
    return usageError("--workload: \"" + options.workload + "\" does not make a valid Lease name");
  }
  if (!isDnsLabel(options.pod_namespace)) {
    return usageError("--pod-namespace: \"" + options.pod_namespace + "\" is not a valid namespace name");
  }
  if (options.renew_deadline <= util::Millis(0)) return usageError("--renew-deadline must be positive");
  if (options.renew_interval <= util::Millis(0)) return usageError("--renew-interval must be positive");
  if (options.renew_interval >= options.renew_deadline) {
    return usageError("--renew-interval (" + util::formatDuration(options.renew_interval) +
                      ") must be less than --renew-deadline (" + util::formatDuration(options.renew_deadline) + ")");
  }
  if (options.grace_period_set && options.grace_period < util::Millis(0)) {
    return usageError("--grace-period must not be negative");
  }
  // The address as the controller's HttpServer takes it (Go's net.Listen form): ":PORT" is every interface.
  auto listen = controller::parseBindAddress(options.listen);
  if (!listen.ok()) return usageError("--listen: " + listen.error().message);
  options.listen_host = listen->host;
  options.listen_port = listen->port;
  return options;
}

}  // namespace singleton::cli
