// What the agent tells the outside: one JSON line per event on stdout (EventPrinter), and the published role (the
// --role-dir files, GET /role and /readyz: RoleBoard).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "util/clock.h"

namespace singleton::agent {

// One JSON object per line ({"ts", "event", "pod", ...fields}); lines never interleave.
class EventPrinter {
 public:
  using Sink = std::function<void(const std::string& line)>;  // a line without its "\n"
  // The default sink writes to stdout and flushes.
  EventPrinter(std::string pod, const util::Clock& clock, Sink sink = {});
  void print(const char* event, const nlohmann::json& fields = nlohmann::json::object());

 private:
  std::string pod_;
  const util::Clock& clock_;
  Sink sink_;
  std::mutex mutex_;
};

class RoleBoard {
 public:
  // `dir` empty: no files.
  RoleBoard(std::string dir, EventPrinter& printer, const util::Clock& clock);

  // Publishes the role (files, then a "role" event) when it or the token changed.
  void set(bool leader, long long token);
  void setReady(bool ready, const std::string& why);
  bool ready() const { return ready_; }
  bool leader() const;
  nlohmann::json json() const;  // {"role", "token", "since"}

 private:
  void writeFiles();
  void writeAtomically(const std::string& name, const std::string& text);

  std::string dir_;
  EventPrinter& printer_;
  const util::Clock& clock_;
  mutable std::mutex mutex_;
  bool leader_ = false;
  bool published_ = false;
  long long token_ = 0;
  util::WallTime since_;
  std::atomic<bool> ready_{true};
};

}  // namespace singleton::agent
