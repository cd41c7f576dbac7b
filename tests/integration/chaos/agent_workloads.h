// The fault campaign's workloads whose pods run real processes: `singleton-agent -- singleton-activity DIR` under the
// simulated kubelet, as in operator_handoff_test.cc, one activity directory per workload. The campaign reads those
// activity logs (support/activity_log.h's format, times on CLOCK_MONOTONIC) incrementally as they grow, never the
// operator's view: the invariant is that no two COMMAND windows of one workload overlap, and that a window of another
// pod carries a higher fencing token than every earlier window.
#pragma once

#include "support/process.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/activity_log.h"

namespace singleton::testing::chaos {

// `base` (a workloadObject) with every replica running singleton-agent around singleton-activity, logging into
// `activity_dir` (which must exist, writable by the pods' processes).
nlohmann::json agentWorkload(nlohmann::json base, const std::filesystem::path& activity_dir);

// Follows one workload's activity directory: each call to refresh() reads only what was appended since the last one
// (complete lines), so checking every tick stays cheap however long the logs get.
class ActivityTail {
 public:
  explicit ActivityTail(std::filesystem::path dir) : dir_(std::move(dir)) {}

  const std::filesystem::path& dir() const { return dir_; }
  void refresh();

  // Every window so far, in order of start.
  std::vector<Window> windows() const;

  // The pod's COMMAND runs with `token`: its last window has that token, has not logged its stop, and beat within
  // `fresh` of `now` and after `beat_after` (a COMMAND killed at that instant beat only before it).
  bool running(const std::string& pod, long long token, std::chrono::steady_clock::time_point now,
               std::chrono::milliseconds fresh, std::chrono::steady_clock::time_point beat_after = {}) const;

  // Checks every pair of consecutive windows (after refresh()); returns the violations not reported before: two
  // windows overlapping, or a window of another pod without a higher token.
  std::vector<std::string> newViolations();

  std::size_t windowCount() const;

 private:
  struct File {
    std::uintmax_t offset = 0;
    std::string partial;  // a line still being written
    std::vector<Window> windows;
  };
  std::filesystem::path dir_;
  std::map<std::string, File> files_;  // by pod name
  std::set<std::string> reported_;     // "<pod>@<start>/<pod>@<start>" pairs already reported
};

// Among them, the one whose argv[0] is singleton-agent.
std::optional<pid_t> agentProcessOfPod(const std::string& uid);

}  // namespace singleton::testing::chaos
