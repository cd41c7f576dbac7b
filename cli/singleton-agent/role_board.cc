#include "cli/singleton-agent/role_board.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "util/log.h"
#include "util/time_format.h"

namespace singleton::agent {
namespace {
const log::Logger kLog("agent");
}  // namespace

EventPrinter::EventPrinter(std::string pod, const util::Clock& clock, Sink sink)
    : pod_(std::move(pod)), clock_(clock), sink_(std::move(sink)) {
  if (!sink_) {
    sink_ = [](const std::string& line) {
      std::fputs((line + "\n").c_str(), stdout);
      std::fflush(stdout);
    };
  }
}

void EventPrinter::print(const char* event, const nlohmann::json& fields) {
  nlohmann::ordered_json line = {{"ts", util::formatMillisTime(clock_.wallNow())}, {"event", event}, {"pod", pod_}};
  for (const auto& [k, v] : fields.items()) line[k] = v;
  std::lock_guard guard(mutex_);
  sink_(line.dump());
}

RoleBoard::RoleBoard(std::string dir, EventPrinter& printer, const util::Clock& clock)
    : dir_(std::move(dir)), printer_(printer), clock_(clock), since_(clock.wallNow()) {}

void RoleBoard::set(bool leader, long long token) {
  std::lock_guard guard(mutex_);
  if (leader == leader_ && token == token_ && published_) return;
  const bool changed_role = leader != leader_ || !published_;
  leader_ = leader;
  token_ = token;
  published_ = true;
  if (changed_role) since_ = clock_.wallNow();
  writeFiles();
  printer_.print("role", {{"role", leader ? "leader" : "standby"}, {"token", token}});
}

void RoleBoard::setReady(bool ready, const std::string& why) {
  if (ready_.exchange(ready) == ready) return;
  if (ready) {
    kLog.info("readiness: ready");
  } else {
    kLog.info("readiness: not ready", {.values = {{"reason", why}}});
  }
}

bool RoleBoard::leader() const {
  std::lock_guard guard(mutex_);
  return leader_;
}

nlohmann::json RoleBoard::json() const {
  std::lock_guard guard(mutex_);
  return {{"role", leader_ ? "leader" : "standby"}, {"token", token_}, {"since", util::formatMillisTime(since_)}};
}

void RoleBoard::writeFiles() {
  if (dir_.empty()) return;
  writeAtomically("role", std::string(leader_ ? "leader" : "standby") + "\n");
  writeAtomically("token", std::to_string(token_) + "\n");
}

void RoleBoard::writeAtomically(const std::string& name, const std::string& text) {
  const std::filesystem::path tmp = std::filesystem::path(dir_) / ("." + name + ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      kLog.error("cannot write the role file", {.values = {{"path", tmp.string()}}});
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, std::filesystem::path(dir_) / name, ec);
  if (ec) kLog.error("cannot rename the role file", {.err = ec.message(), .values = {{"path", tmp.string()}}});
}

}  // namespace singleton::agent
