// Structured logs for the binaries and the library: one JSON object per line (default) or spdlog's plain text, on
// stderr.
//
//   {"ts":"2026-01-02T15:04:05.123Z","level":"info","logger":"controller","msg":"reconciled",
//    "object":{"name":"web","namespace":"prod"},"token":7}
//
// Structured fields travel next to the message: log::info("reconciled", {.object = {ns, name}}), or with a component's
// Logger (the library's elector, reflector, ...; the binaries' own). The message is a constant; what varies goes in
// the fields. Plain spdlog::info(...) calls, if any, become JSON lines too, since the formatter sits on the sink; they
// just carry no fields.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/common.h>
#include <spdlog/formatter.h>
#include <nlohmann/json.hpp>

#include "util/result.h"

namespace singleton::util {
class FlagSet;
}  // namespace singleton::util

namespace singleton::log {

enum class Format { kJson, kText };

// The Kubernetes object a line is about. Absent when `name` is empty; "namespace" is left out when `ns` is empty.
struct ObjectRef {
  std::string ns = {};
  std::string name = {};
};

// An object's key, "namespace/name" (or a cluster-scoped "name"), as the ObjectRef of a log line.
ObjectRef objectRef(std::string_view key);

// Extra key/value pairs, in order, e.g. {{"token", 7}, {"duration_ms", 3.2}}. The keys ts, level, logger, msg, err
// and object are reserved for the fields above and are dropped here.
using Values = std::vector<std::pair<std::string, nlohmann::json>>;

struct Fields {
  // Every member has a default, so callers name only what they have (designated initializers, no warnings).
  std::string err = {};   // the error, e.g. e.describe(); absent when empty
  ObjectRef object = {};  // the object, e.g. {ns, name}
  Values values = {};     // anything else
};

// Logs on the process logger; `logger` in the line is the process logger's name. Cheap when the level is off.
void trace(std::string_view msg, const Fields& fields = {});
void debug(std::string_view msg, const Fields& fields = {});
void info(std::string_view msg, const Fields& fields = {});
void warn(std::string_view msg, const Fields& fields = {});
void error(std::string_view msg, const Fields& fields = {});

// The same with a component's name in the `logger` field ("controller", "manager", "http"). Copyable, and valid
// before setup(): it writes through whatever the process logger is at the time of each call.
class Logger {
 public:
  explicit Logger(std::string name) : name_(std::move(name)) {}
  void trace(std::string_view msg, const Fields& fields = {}) const { write(spdlog::level::trace, msg, fields); }
  void debug(std::string_view msg, const Fields& fields = {}) const { write(spdlog::level::debug, msg, fields); }
  void info(std::string_view msg, const Fields& fields = {}) const { write(spdlog::level::info, msg, fields); }
  void warn(std::string_view msg, const Fields& fields = {}) const { write(spdlog::level::warn, msg, fields); }
  void error(std::string_view msg, const Fields& fields = {}) const { write(spdlog::level::err, msg, fields); }
  void write(spdlog::level::level_enum level, std::string_view msg, const Fields& fields) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// "json" or "text".
util::Result<Format> parseFormat(std::string_view text);
// "trace", "debug", "info", "warn", "error" (also "warning", "off").
util::Result<spdlog::level::level_enum> parseLevel(std::string_view text);

// "json" or "text", as the flag takes it.
std::string_view formatName(Format format);

// Registers --log-format FORMAT and --log-level LEVEL on a binary's flags, bound to `format` and `level`, whose values
// now are the defaults the help shows. A bad value is a one-line error naming the flag. For the binaries whose
// options are parsed straight into these types (the CLIs and the simulated kubelet; the operator parses its own).
void addFlags(util::FlagSet& flags, Format& format, spdlog::level::level_enum& level);

// The formatter for a format: JSON lines, or spdlog's pattern (UTC, millis) with the fields appended as key=value.
std::unique_ptr<spdlog::formatter> makeFormatter(Format format);

// Makes a synchronous logger named `name` on `sink` (stderr when null) the process's default logger, for both
// log:: and plain spdlog calls. Call once at start-up, before other threads log; tests call it with an ostream
// sink.
void setup(Format format, spdlog::level::level_enum level, spdlog::sink_ptr sink = nullptr,
           const std::string& name = "singleton-operator");

}  // namespace singleton::log
