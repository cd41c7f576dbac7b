#include "chaos/agent_workloads.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace singleton::testing::chaos {

namespace fs = std::filesystem;
using Json = nlohmann::json;

Json agentWorkload(Json base, const fs::path& activity_dir) {
  Json& spec = base["spec"]["template"]["spec"];
  spec["serviceAccountName"] = "singleton-agent";  // manifests/agent-rbac.yaml, applied in the campaign's namespace
  // The image is ignored by the simulated kubelet for process pods: "host" runs the command on this machine.
  // --beat-ms 20: overlaps are measured at 20 ms resolution (the hand-offs' gaps are hundreds of ms), and four
  // workloads' leaders beating for minutes keep the logs small enough to follow every 50 ms.
  spec["containers"] = Json::array({{
      {"name", "main"},
      {"image", "host"},
      {"command",
       {std::string(SINGLETON_BINARY_DIR) + "/cli/singleton-agent", "--",
        std::string(SINGLETON_BINARY_DIR) + "/tests/singleton-activity", activity_dir.string(), "--beat-ms", "20"}},
  }});
  return base;
}

void ActivityTail::refresh() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".log") continue;
    File& file = files_[entry.path().stem().string()];
    const std::uintmax_t size = fs::file_size(entry.path(), ec);
    if (ec || size <= file.offset) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    in.seekg(static_cast<std::streamoff>(file.offset));
    std::string chunk(size - file.offset, '\0');
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<std::size_t>(in.gcount()));
    file.offset += chunk.size();
    file.partial += chunk;
    std::size_t begin = 0;
    for (std::size_t end; (end = file.partial.find('\n', begin)) != std::string::npos; begin = end + 1) {
      std::istringstream fields(file.partial.substr(begin, end - begin));
      std::string kind;
      long long at = 0;
      if (!(fields >> kind >> at)) continue;
      if (kind == "start") {
        Window w{entry.path().stem().string(), at, at, false, -1};
        fields >> w.token;
        file.windows.push_back(w);
      } else if (!file.windows.empty() && (kind == "beat" || kind == "stop")) {
        file.windows.back().last = std::max(file.windows.back().last, at);
        if (kind == "stop") file.windows.back().stopped = true;
      }
    }
    file.partial.erase(0, begin);
  }
}

std::vector<Window> ActivityTail::windows() const {
  std::vector<Window> all;
  for (const auto& [pod, file] : files_) all.insert(all.end(), file.windows.begin(), file.windows.end());
  std::sort(all.begin(), all.end(), [](const Window& a, const Window& b) { return a.start < b.start; });
  return all;
}

std::size_t ActivityTail::windowCount() const {
  std::size_t n = 0;
  for (const auto& [pod, file] : files_) n += file.windows.size();
  return n;
}

bool ActivityTail::running(const std::string& pod, long long token, std::chrono::steady_clock::time_point now,
                           std::chrono::milliseconds fresh, std::chrono::steady_clock::time_point beat_after) const {
  const auto it = files_.find(pod);
  if (it == files_.end() || it->second.windows.empty()) return false;
  const Window& w = it->second.windows.back();
  return w.token == token && !w.stopped && steadyMicros(now) - w.last <= fresh.count() * 1000 &&
         w.last > steadyMicros(beat_after);
}

std::vector<std::string> ActivityTail::newViolations() {
  std::vector<std::string> out;
  const auto all = windows();
  auto name = [](const Window& w) { return w.pod + "@" + std::to_string(w.start); };
  auto text = [](const Window& w) {
    std::ostringstream s;
    s << w.pod << " token " << w.token << " [" << w.start / 1000 << " ms, " << w.last / 1000 << " ms"
      << (w.stopped ? " stopped]" : "]");
    return s.str();
  };
  // Sorted by start, a window overlaps an earlier one exactly when it starts before the latest end so far; and its
  // token must be above every earlier window's of another pod (the same pod's restarted agent keeps its token).
  std::optional<Window> latest_end, highest_token;
  for (const Window& w : all) {
    if (latest_end && latest_end->last >= w.start) {
      if (reported_.insert(name(*latest_end) + "/" + name(w) + "/overlap").second) {
        out.push_back("two COMMAND windows overlap by " + std::to_string((latest_end->last - w.start) / 1000) +
                      " ms: " + text(*latest_end) + " and " + text(w));
      }
    }
    if (highest_token && highest_token->pod != w.pod && highest_token->token >= w.token) {
      if (reported_.insert(name(*highest_token) + "/" + name(w) + "/token").second) {
        out.push_back("a COMMAND window of another pod without a higher token: " + text(*highest_token) + " then " +
                      text(w));
      }
    }
    if (!latest_end || w.last >= latest_end->last) latest_end = w;
    if (!highest_token || w.token >= highest_token->token) highest_token = w;
  }
  return out;
}

std::optional<pid_t> agentProcessOfPod(const std::string& uid) {
  for (const pid_t pid : processesOfPod(uid)) {
    std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string argv0;
    std::getline(cmdline, argv0, '\0');
    if (fs::path(argv0).filename() == "singleton-agent") return pid;
  }
  return std::nullopt;
}

}  // namespace singleton::testing::chaos
