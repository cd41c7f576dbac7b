#include "util/log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "util/flags.h"
#include "util/time_format.h"

namespace singleton::log {
namespace {

// spdlog's log_msg has no room for fields, so Logger::write hands them to the formatter through the calling thread:
// our loggers are synchronous, so the sink formats on this thread, inside the log() call (as spdlog's own
// thread-local MDC does in later versions).
struct Context {
  std::string_view logger;
  const Fields* fields = nullptr;
};
thread_local const Context* current_context = nullptr;

class ContextScope {
 public:
  explicit ContextScope(const Context* context) : saved_(current_context) { current_context = context; }
  ~ContextScope() { current_context = saved_; }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  const Context* saved_;
};

bool reserved(const std::string& key) {
  static constexpr std::array<std::string_view, 6> kReserved = {"ts", "level", "logger", "msg", "err", "object"};
  return std::find(kReserved.begin(), kReserved.end(), key) != kReserved.end();
}

std::string_view levelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

std::string_view loggerName(const spdlog::details::log_msg& msg, const Context* context) {
  if (context && !context->logger.empty()) return context->logger;
  return {msg.logger_name.data(), msg.logger_name.size()};
}

// Never throws on bad UTF-8 in a message: replaces it, so a line is always written and always valid JSON.
template <typename J>
std::string dump(const J& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const Context* context = current_context;
    nlohmann::ordered_json line;
    line["ts"] = util::formatMillisTime(msg.time);
    line["level"] = levelName(msg.level);
    if (auto logger = loggerName(msg, context); !logger.empty()) line["logger"] = logger;
    line["msg"] = std::string_view(msg.payload.data(), msg.payload.size());
    if (context && context->fields) {
      const Fields& fields = *context->fields;
      if (!fields.err.empty()) line["err"] = fields.err;
      if (!fields.object.name.empty()) {
        line["object"]["name"] = fields.object.name;
        if (!fields.object.ns.empty()) line["object"]["namespace"] = fields.object.ns;
      }
      for (const auto& [key, value] : fields.values) {
        if (!reserved(key)) line[key] = nlohmann::ordered_json(value);
      }
    }
    const std::string text = dump(line);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

// spdlog's pattern, with the fields appended to the message as key=value (values as JSON, so strings are quoted).
class TextFormatter final : public spdlog::formatter {
 public:
  TextFormatter()
      : pattern_("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc,
                 spdlog::details::os::default_eol) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const Context* context = current_context;
    if (!context) return pattern_.format(msg, dest);
    std::string payload(msg.payload.data(), msg.payload.size());
    if (context->fields) {
      const Fields& fields = *context->fields;
      if (!fields.err.empty()) payload += " err=" + dump(nlohmann::json(fields.err));
      if (!fields.object.name.empty()) {
        const std::string ref =
            fields.object.ns.empty() ? fields.object.name : fields.object.ns + "/" + fields.object.name;
        payload += " object=" + dump(nlohmann::json(ref));
      }
      for (const auto& [key, value] : fields.values) {
        if (!reserved(key)) payload += " " + key + "=" + dump(value);
      }
    }
    spdlog::details::log_msg copy = msg;
    copy.payload = payload;
    const auto logger = loggerName(msg, context);
    copy.logger_name = spdlog::string_view_t(logger.data(), logger.size());
    pattern_.format(copy, dest);
    // Colour sinks read the range the pattern marked from the message they passed in.
    msg.color_range_start = copy.color_range_start;
    msg.color_range_end = copy.color_range_end;
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<TextFormatter>(); }

 private:
  spdlog::pattern_formatter pattern_;
};

}  // namespace

void Logger::write(spdlog::level::level_enum level, std::string_view msg, const Fields& fields) const {
  spdlog::logger* base = spdlog::default_logger_raw();
  if (base == nullptr || !base->should_log(level)) return;
  const Context context{name_, &fields};
  ContextScope scope(&context);
  base->log(level, spdlog::string_view_t(msg.data(), msg.size()));
}

namespace {
const Logger& processLogger() {
  static const Logger logger{""};
  return logger;
}
}  // namespace

void trace(std::string_view msg, const Fields& fields) { processLogger().trace(msg, fields); }
void debug(std::string_view msg, const Fields& fields) { processLogger().debug(msg, fields); }
void info(std::string_view msg, const Fields& fields) { processLogger().info(msg, fields); }
void warn(std::string_view msg, const Fields& fields) { processLogger().warn(msg, fields); }
void error(std::string_view msg, const Fields& fields) { processLogger().error(msg, fields); }

ObjectRef objectRef(std::string_view key) {
  const auto slash = key.find('/');
  if (slash == std::string_view::npos) return {.ns = "", .name = std::string(key)};
  return {.ns = std::string(key.substr(0, slash)), .name = std::string(key.substr(slash + 1))};
}

util::Result<Format> parseFormat(std::string_view text) {
  if (text == "json") return Format::kJson;
  if (text == "text") return Format::kText;
  return util::makeError(util::ErrorCode::kInvalidArgument, "\"" + std::string(text) + "\" is not one of json, text");
}

util::Result<spdlog::level::level_enum> parseLevel(std::string_view text) {
  if (text == "trace") return spdlog::level::trace;
  if (text == "debug") return spdlog::level::debug;
  if (text == "info") return spdlog::level::info;
  if (text == "warn" || text == "warning") return spdlog::level::warn;
  if (text == "error") return spdlog::level::err;
  if (text == "off") return spdlog::level::off;
  return util::makeError(util::ErrorCode::kInvalidArgument,
                         "\"" + std::string(text) + "\" is not one of trace, debug, info, warn, error, off");
}

std::string_view formatName(Format format) { return format == Format::kJson ? "json" : "text"; }

void addFlags(util::FlagSet& flags, Format& format, spdlog::level::level_enum& level) {
  flags.addFunc(
      "log-format",
      [&format](const std::string& value) -> util::Status {
        auto parsed = parseFormat(value);
        if (!parsed.ok()) return std::move(parsed).takeError();
        format = *parsed;
        return {};
      },
      "FORMAT",
      "text, or json for one object per line (default " + std::string(formatName(format)) + "); logs go to stderr");
  flags.addFunc(
      "log-level",
      [&level](const std::string& value) -> util::Status {
        auto parsed = parseLevel(value);
        if (!parsed.ok()) return std::move(parsed).takeError();
        level = *parsed;
        return {};
      },
      "LEVEL", "trace, debug, info, warn, error, off (default " + std::string(levelName(level)) + ")");
}

std::unique_ptr<spdlog::formatter> makeFormatter(Format format) {
  if (format == Format::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<TextFormatter>();
}

void setup(Format format, spdlog::level::level_enum level, spdlog::sink_ptr sink, const std::string& name) {
  if (!sink) {
    // JSON goes to log collectors, never a terminal: no colour codes in it.
    if (format == Format::kJson) {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    }
  }
  sink->set_formatter(makeFormatter(format));
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_level(level);
  // A crash loses nothing, and lines of a JSON stream are never cut: flush each one (our volume is low).
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace singleton::log
