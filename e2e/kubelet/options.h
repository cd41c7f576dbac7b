// singleton-sim-kubelet's command line, parsed in one place so its contract can be tested.
#pragma once

#include <string>
#include <vector>

#include "util/clock.h"
#include "util/log.h"
#include "util/result.h"

namespace singleton::sim {

struct Options {
  std::string kubeconfig;                 // empty: $KUBECONFIG, then in-cluster, then ~/.kube/config
  int nodes = 1;                          // how many Nodes this process plays
  std::string node_prefix = "sim-node-";  // node i is named <prefix><i>
  util::Millis heartbeat{2'000};          // node status and Lease renewal interval
  util::Millis ready_delay{0};            // a started pod turns Ready this long after it is Running
  int workers = 4;                        // threads writing pod status (the bulk of the API load)
  // Logs on stderr; text by default, since people read these binaries' stderr (--log-format json for a collector).
  log::Format log_format = log::Format::kText;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::string pod_log_dir;               // process pods' logs; empty: $TMPDIR/singleton-sim-kubelet-<pid>/logs
  util::Millis token_refresh{0};         // process pods' token renewal interval; zero: at 80% of its 1h life
  util::Millis restart_backoff{10'000};  // first restart delay of a crashing process container (doubling, 5m cap)
  bool help = false;
};

// Accepts "--flag value" and "--flag=value". An error is one readable line.
util::Result<Options> parseOptions(const std::vector<std::string>& args);
std::string usage();

}  // namespace singleton::sim
