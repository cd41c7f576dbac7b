#include "options.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <regex>

#include "util/duration.h"

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

util::Status parseInt(const std::string& name, const std::string& value, int low, int high, int& target) {
  int parsed = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (ec != std::errc() || end != value.data() + value.size() || parsed < low || parsed > high) {
    return usageError("--" + name + ": \"" + value + "\" is not a whole number from " + std::to_string(low) + " to " +
                      std::to_string(high));
  }
  target = parsed;
  return {};
}

}  // namespace

std::string usage() {
  return R"(singleton-sim-kubelet: a simulated kubelet for a control plane without container runtime.

Registers Nodes and keeps them Ready (node status and kube-node-lease Lease heartbeats), marks pods bound to them
Running and Ready, completes their graceful deletion, and fails pods or nodes on request (annotations; see
e2e/kubelet/README.md).

Usage:
  singleton-sim-kubelet [--kubeconfig FILE] [flags]

Flags:
  --kubeconfig FILE   kubeconfig to use; default: $KUBECONFIG, then in-cluster, then ~/.kube/config
  --nodes N           how many Nodes to play (default 1)
  --node-prefix P     node i is named P<i> (default sim-node-)
  --heartbeat D       node status and Lease renewal interval (default 2s)
  --ready-delay D     a pod turns Ready this long after it is marked Running (default 0s)
  --workers N         threads writing pod status and deletions (default 4)
  --log-level LEVEL   trace, debug, info, warn, error, off (default info); logs go to stderr
  -h, --help          this text

Durations are Go-style: 500ms, 2s, 1m30s.
Signals: SIGTERM or SIGINT exits 0 (Nodes are left in place and go NotReady). Exit status 2: bad flags or
configuration.
)";
}

util::Result<Options> parseOptions(const std::vector<std::string>& args) {
  Options options;
  std::map<std::string, std::function<util::Status(const std::string&, const std::string&)>> flags;
  auto duration_flag = [](util::Millis& target) {
    return [&target](const std::string& name, const std::string& value) -> util::Status {
      auto d = util::parseDuration(value);
      if (!d.ok()) return usageError("--" + name + ": " + d.error().message);
      target = *d;
      return {};
    };
  };
  auto string_flag = [](std::string& target) {
    return [&target](const std::string&, const std::string& value) -> util::Status {
      target = value;
      return {};
    };
  };
  auto int_flag = [](int& target, int low, int high) {
    return [&target, low, high](const std::string& name, const std::string& value) {
      return parseInt(name, value, low, high, target);
    };
  };
  flags["kubeconfig"] = string_flag(options.kubeconfig);
  flags["nodes"] = int_flag(options.nodes, 1, 10'000);
  flags["node-prefix"] = string_flag(options.node_prefix);
  flags["heartbeat"] = duration_flag(options.heartbeat);
  flags["ready-delay"] = duration_flag(options.ready_delay);
  flags["workers"] = int_flag(options.workers, 1, 64);
  flags["log-level"] = string_flag(options.log_level);

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      return options;
    }
    if (!arg.starts_with("--")) return usageError("unexpected argument \"" + arg + "\" (see --help)");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const auto flag = flags.find(name);
    if (flag == flags.end()) return usageError("unknown flag --" + name + " (see --help)");
    if (!value) {
      if (i + 1 >= args.size()) return usageError("flag --" + name + " needs a value");
      value = args[++i];
    }
    if (auto s = flag->second(name, *value); !s.ok()) return std::move(s).takeError();
  }

  if (!isNamePrefix(options.node_prefix)) {
    return usageError("--node-prefix: \"" + options.node_prefix +
                      "\" cannot start a node name (lower-case letters, digits, '-' and '.')");
  }
  if (options.heartbeat < util::Millis(100)) return usageError("--heartbeat: must be at least 100ms");
  static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(levels.begin(), levels.end(), options.log_level) == levels.end()) {
    return usageError("--log-level: \"" + options.log_level + "\" is not one of trace, debug, info, warn, error, off");
  }
  return options;
}

}  // namespace singleton::sim
