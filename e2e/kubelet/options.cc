#include "options.h"

#include <algorithm>
#include <regex>

#include "util/flags.h"
#include "util/log.h"

namespace singleton::sim {
namespace {

util::Error usageError(const std::string& message) {
  return util::makeError(util::ErrorCode::kInvalidArgument, message);
}

// Node names are DNS subdomains; the prefix must leave room for the index and start like one.
bool isNamePrefix(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9.]*)?");
  return !s.empty() && s.size() <= 200 && std::regex_match(s, re);
}

// The flags, bound to options; the same set parses and documents them.
util::FlagSet kubeletFlags(Options& options) {
  util::FlagSet flags({.version = false, .unexpected_hint = "see --help"});
  flags.addString("kubeconfig", options.kubeconfig, "FILE",
                  "kubeconfig to use; default: $KUBECONFIG, then in-cluster, then ~/.kube/config");
  flags.addInt("nodes", options.nodes, 1, 10'000, "N", "how many Nodes to play (default {default})");
  flags.addString("node-prefix", options.node_prefix, "P", "node i is named P<i> (default {default})");
  flags.addDuration("heartbeat", options.heartbeat, "D", "node status and Lease renewal interval (default {default})");
  flags.addDuration("ready-delay", options.ready_delay, "D",
                    "a pod turns Ready this long after it is marked Running (default {default})");
  flags.addInt("workers", options.workers, 1, 64, "N", "threads writing pod status and deletions (default {default})");
  flags.addString("pod-log-dir", options.pod_log_dir, "DIR",
                  "process pods' stdout/stderr go to DIR/<namespace>_<pod>_<uid>/<container>.log (default: "
                  "$TMPDIR/singleton-sim-kubelet-<pid>/logs)");
  flags.addDuration("restart-backoff", options.restart_backoff, "D",
                    "process containers restart at once, then after D, 2D, 4D, ... up to 5m (default {default})");
  flags.addDuration("token-refresh", options.token_refresh, "D",
                    "request process pods' service-account tokens again every D (default: at 80% of their 1h life)");
  log::addFlags(flags, options.log_format, options.log_level);
  return flags;
}

}  // namespace

std::string usage() {
  Options defaults;
  return R"(singleton-sim-kubelet: a simulated kubelet for a control plane without container runtime.

Registers Nodes and keeps them Ready (node status and kube-node-lease Lease heartbeats), marks pods bound to them
Running and Ready, completes their graceful deletion, and fails pods or nodes on request (annotations; see
e2e/kubelet/README.md).

Usage:
  singleton-sim-kubelet [--kubeconfig FILE] [flags]

Flags:
)" + kubeletFlags(defaults).help() +
         R"(
Durations are Go-style: 500ms, 2s, 1m30s.
Logs go to stderr: text by default; --log-format json gives one object per line (the Node or pod as "object").
"ready: nodes registered, watching pods" is logged once the Nodes are registered and the pod watch has synced.
Signals: SIGTERM or SIGINT exits 0 (Nodes are left in place and go NotReady). Exit status 2: bad flags or
configuration.
)";
}

util::Result<Options> parseOptions(const std::vector<std::string>& args) {
  Options options;
  auto parsed = kubeletFlags(options).parse(args);
  if (!parsed.ok()) return std::move(parsed).takeError();
  options.help = parsed->help;
  if (options.help) return options;

  if (!isNamePrefix(options.node_prefix)) {
    return usageError("--node-prefix: \"" + options.node_prefix +
                      "\" cannot start a node name (lower-case letters, digits, '-' and '.')");
  }
  if (options.heartbeat < util::Millis(100)) return usageError("--heartbeat: must be at least 100ms");
  if (options.token_refresh < util::Millis(0) || options.token_refresh > std::chrono::minutes(50)) {
    return usageError("--token-refresh: must be between 0 and 50m (the tokens last 1h)");
  }
  if (options.restart_backoff < util::Millis(0)) return usageError("--restart-backoff: must not be negative");
  return options;
}

}  // namespace singleton::sim
