#include "util/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "util/flags.h"

namespace singleton::log {
namespace {

using nlohmann::json;

// Installs a logger on an ostream for the test and puts the previous default logger back afterwards.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = spdlog::default_logger(); }
  void TearDown() override { spdlog::set_default_logger(saved_); }

  void install(Format format, spdlog::level::level_enum level = spdlog::level::trace) {
    setup(format, level, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_), "test-operator");
  }

  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) result.push_back(line);
    return result;
  }

  // Every line must parse on its own.
  std::vector<json> jsonLines() const {
    std::vector<json> result;
    for (const auto& line : lines()) {
      auto parsed = json::parse(line, nullptr, false);
      EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << line;
      result.push_back(parsed);
    }
    return result;
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> saved_;
};

TEST_F(LoggingTest, JsonLineHasTimestampLevelLoggerAndMessage) {
  install(Format::kJson);
  info("operator started");
  auto entries = jsonLines();
  ASSERT_EQ(entries.size(), 1u);
  const json& e = entries[0];
  EXPECT_EQ(e["msg"], "operator started");
  EXPECT_EQ(e["level"], "info");
  EXPECT_EQ(e["logger"], "test-operator");
  ASSERT_TRUE(e["ts"].is_string());
  EXPECT_TRUE(
      std::regex_match(e["ts"].get<std::string>(), std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)")))
      << e["ts"] << " is RFC 3339, UTC, milliseconds";
  EXPECT_FALSE(e.contains("err"));
  EXPECT_FALSE(e.contains("object"));
  EXPECT_EQ(lines()[0].rfind("{\"ts\":", 0), 0u) << "ts comes first, for people reading raw lines";
}

TEST_F(LoggingTest, ErrorAndObjectFields) {
  install(Format::kJson);
  error("patch failed", {.err = "Conflict: the object has been modified", .object = {"prod", "web"}});
  info("cluster-scoped", {.object = {.name = "node-1"}});
  auto entries = jsonLines();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["level"], "error");
  EXPECT_EQ(entries[0]["err"], "Conflict: the object has been modified");
  EXPECT_EQ(entries[0]["object"], (json{{"name", "web"}, {"namespace", "prod"}}));
  EXPECT_EQ(entries[1]["object"], (json{{"name", "node-1"}})) << "no namespace when empty";
}

TEST_F(LoggingTest, ExtraValuesKeepTheirTypesAndCannotOverrideCoreFields) {
  install(Format::kJson);
  info("failover", {.object = {"ns", "db"},
                    .values = {{"token", 7}, {"ms", 3.5}, {"leader", "db-1"}, {"msg", "spoof"}, {"level", "x"}}});
  auto e = jsonLines().at(0);
  EXPECT_EQ(e["token"], 7);
  EXPECT_EQ(e["ms"], 3.5);
  EXPECT_EQ(e["leader"], "db-1");
  EXPECT_EQ(e["msg"], "failover");
  EXPECT_EQ(e["level"], "info");
}

TEST_F(LoggingTest, MessagesWithQuotesNewlinesAndBadUtf8StayOneValidLine) {
  install(Format::kJson);
  const std::string nasty = "say \"hi\"\nsecond line\ttab \\ backslash";
  error(nasty, {.err = "line1\nline2 \"quoted\"", .object = {"n\"s", "na\nme"}});
  info(std::string("bad utf8: \xff\xfe end"));
  auto all = lines();
  ASSERT_EQ(all.size(), 2u) << "newlines are escaped, not written";
  auto entries = jsonLines();
  EXPECT_EQ(entries[0]["msg"], nasty);
  EXPECT_EQ(entries[0]["err"], "line1\nline2 \"quoted\"");
  EXPECT_EQ(entries[0]["object"]["name"], "na\nme");
  EXPECT_NE(entries[1]["msg"].get<std::string>().find("end"), std::string::npos);
}

TEST_F(LoggingTest, NamedLoggerSetsTheLoggerField) {
  install(Format::kJson);
  const Logger controller("controller");
  controller.warn("requeue", {.object = {"a", "b"}});
  info("from the process");
  auto entries = jsonLines();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["logger"], "controller");
  EXPECT_EQ(entries[0]["level"], "warn");
  EXPECT_EQ(entries[1]["logger"], "test-operator") << "the name does not leak into the next line";
}

TEST_F(LoggingTest, PlainSpdlogCallsBecomeJsonToo) {
  install(Format::kJson);
  spdlog::info("lease {}: {} started leading with token {}", "ns/x", "me", 3);
  spdlog::debug("quote \" in a library message");
  auto entries = jsonLines();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["msg"], "lease ns/x: me started leading with token 3");
  EXPECT_EQ(entries[0]["logger"], "test-operator");
  EXPECT_EQ(entries[1]["level"], "debug");
  EXPECT_FALSE(entries[1].contains("err"));
}

TEST_F(LoggingTest, LevelFiltersLines) {
  install(Format::kJson, spdlog::level::warn);
  info("hidden");
  debug("hidden");
  Logger("x").info("hidden");
  warn("shown");
  error("shown");
  EXPECT_EQ(jsonLines().size(), 2u);
}

TEST_F(LoggingTest, ConcurrentWritersNeverInterleave) {
  install(Format::kJson);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      const Logger logger("worker-" + std::to_string(t));
      for (int i = 0; i < 200; ++i) logger.info("reconciled", {.object = {"ns", std::to_string(i)}});
    });
  }
  for (auto& t : threads) t.join();
  auto entries = jsonLines();
  ASSERT_EQ(entries.size(), 800u);
  for (const auto& e : entries) {
    EXPECT_EQ(e["logger"].get<std::string>().rfind("worker-", 0), 0u);
    EXPECT_TRUE(e.contains("object"));
  }
}

TEST_F(LoggingTest, TextFormatIsSpdlogsPatternWithFieldsAppended) {
  install(Format::kText);
  Logger("controller").error("patch failed", {.err = "boom", .object = {"prod", "web"}, .values = {{"token", 4}}});
  spdlog::info("plain");
  auto all = lines();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(std::regex_match(
      all[0], std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z error \[controller\] patch failed .*)")))
      << all[0];
  EXPECT_NE(all[0].find("err=\"boom\" object=\"prod/web\" token=4"), std::string::npos) << all[0];
  EXPECT_NE(all[1].find(" info [test-operator] plain"), std::string::npos) << all[1];
}

TEST(LoggingParseTest, FormatsAndLevels) {
  EXPECT_EQ(*parseFormat("json"), Format::kJson);
  EXPECT_EQ(*parseFormat("text"), Format::kText);
  EXPECT_FALSE(parseFormat("JSON").ok());
  EXPECT_EQ(*parseLevel("trace"), spdlog::level::trace);
  EXPECT_EQ(*parseLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*parseLevel("info"), spdlog::level::info);
  EXPECT_EQ(*parseLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*parseLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(*parseLevel("error"), spdlog::level::err);
  EXPECT_EQ(*parseLevel("off"), spdlog::level::off);
  EXPECT_FALSE(parseLevel("verbose").ok());
}

TEST(LoggingParseTest, ObjectRefFromAKey) {
  const ObjectRef namespaced = objectRef("prod/web-0");
  EXPECT_EQ(namespaced.ns, "prod");
  EXPECT_EQ(namespaced.name, "web-0");
  const ObjectRef cluster_scoped = objectRef("sim-node-0");
  EXPECT_EQ(cluster_scoped.ns, "");
  EXPECT_EQ(cluster_scoped.name, "sim-node-0");
}

TEST(LoggingFlagsTest, ParsesBothFlagsAndShowsTheDefaultsInTheHelp) {
  Format format = Format::kText;
  spdlog::level::level_enum level = spdlog::level::info;
  util::FlagSet flags;
  addFlags(flags, format, level);
  const std::string help = flags.help();
  EXPECT_NE(help.find("--log-format FORMAT"), std::string::npos) << help;
  EXPECT_NE(help.find("(default text)"), std::string::npos) << help;
  EXPECT_NE(help.find("--log-level LEVEL"), std::string::npos) << help;
  EXPECT_NE(help.find("(default info)"), std::string::npos) << help;

  ASSERT_TRUE(flags.parse({"--log-format", "json", "--log-level=debug"}).ok());
  EXPECT_EQ(format, Format::kJson);
  EXPECT_EQ(level, spdlog::level::debug);

  auto bad_format = flags.parse({"--log-format", "yaml"});
  ASSERT_FALSE(bad_format.ok());
  EXPECT_EQ(bad_format.error().message.rfind("--log-format: ", 0), 0u) << bad_format.error().message;
  auto bad_level = flags.parse({"--log-level", "loud"});
  ASSERT_FALSE(bad_level.ok());
  EXPECT_EQ(bad_level.error().message.rfind("--log-level: ", 0), 0u) << bad_level.error().message;
}

}  // namespace
}  // namespace singleton::log
