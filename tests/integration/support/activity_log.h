// The activity logs of a leader's COMMAND, as tests/tools/activity.cc and the hand-off tests' COMMAND write them: one
// file DIR/<pod>.log per pod, lines "start <µs> <token> ...", "beat <µs>", "stop <µs>", times on CLOCK_MONOTONIC (the
// clock std::chrono::steady_clock reads, so an observer compares them with its own instants). Shared by the
// integration tests and singleton-bench-operator.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace singleton::testing {

// One active window of a COMMAND (µs on CLOCK_MONOTONIC).
struct Window {
  std::string pod;
  long long start = 0;
  long long last = 0;  // the last heartbeat or stop
  bool stopped = false;
  long long token = -1;
};

// Every window in DIR's logs (only `only_pod`'s when given), in order of start. A line still being written is skipped.
inline std::vector<Window> readWindows(const std::filesystem::path& dir, const std::string& only_pod = "") {
  std::vector<Window> windows;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".log") continue;
    const std::string pod = entry.path().stem().string();
    if (!only_pod.empty() && pod != only_pod) continue;
    std::ifstream in(entry.path());
    std::string line;
    std::vector<Window> own;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string kind;
      long long at = 0;
      if (!(fields >> kind >> at)) continue;
      if (kind == "start") {
        own.push_back({pod, at, at, false, -1});
        fields >> own.back().token;
      } else if (!own.empty() && (kind == "beat" || kind == "stop")) {
        own.back().last = std::max(own.back().last, at);
        if (kind == "stop") own.back().stopped = true;
      }
    }
    windows.insert(windows.end(), own.begin(), own.end());
  }
  std::sort(windows.begin(), windows.end(), [](const Window& a, const Window& b) { return a.start < b.start; });
  return windows;
}

// A steady_clock instant in the logs' unit.
inline long long steadyMicros(std::chrono::steady_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
}

}  // namespace singleton::testing
