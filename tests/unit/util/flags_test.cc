#include "util/flags.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace singleton::util {
namespace {

using namespace std::chrono_literals;

struct Values {
  std::string name = "default-name";
  std::chrono::milliseconds period{2'000};
  int count = 3;
  bool verbose = false;
  std::string custom;
};

FlagSet makeFlags(Values& v, FlagSyntax syntax = {}) {
  FlagSet flags(std::move(syntax));
  flags.addString("name", v.name, "NAME", "the name (default {default})");
  flags.addDuration("period", v.period, "D", "how often (default {default})");
  flags.addInt("count", v.count, 1, 10, "N", "how many, 1 to 10 (default {default})");
  flags.addBool("verbose", v.verbose, "say more");
  flags.addFunc(
      "custom",
      [&v](const std::string& value) -> Status {
        if (value == "bad") return makeError(ErrorCode::kInvalidArgument, "\"bad\" is not allowed");
        v.custom = value;
        return {};
      },
      "X", "anything but bad");
  return flags;
}

Result<FlagSet::Parsed> parse(Values& v, const std::vector<std::string>& args, FlagSyntax syntax = {}) {
  return makeFlags(v, std::move(syntax)).parse(args);
}

std::string errorOf(const std::vector<std::string>& args, FlagSyntax syntax = {}) {
  Values v;
  auto parsed = parse(v, args, std::move(syntax));
  if (parsed.ok()) return "(parsed)";
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << "one line: " << parsed.error().message;
  return parsed.error().message;
}

TEST(FlagSetTest, DefaultsStayWithoutFlags) {
  Values v;
  auto parsed = parse(v, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_FALSE(parsed->help);
  EXPECT_FALSE(parsed->version);
  EXPECT_TRUE(parsed->command.empty());
  EXPECT_EQ(v.name, "default-name");
  EXPECT_EQ(v.period, 2s);
  EXPECT_EQ(v.count, 3);
  EXPECT_FALSE(v.verbose);
}

TEST(FlagSetTest, ParsesBothFormsOfEveryKind) {
  for (bool equals : {false, true}) {
    Values v;
    std::vector<std::string> args;
    for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
             {"name", "n1"}, {"period", "1m30s"}, {"count", "10"}, {"custom", "c"}}) {
      if (equals) {
        args.push_back("--" + name + "=" + value);
      } else {
        args.push_back("--" + name);
        args.push_back(value);
      }
    }
    args.push_back("--verbose");
    auto parsed = parse(v, args);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(v.name, "n1");
    EXPECT_EQ(v.period, 90s);
    EXPECT_EQ(v.count, 10);
    EXPECT_TRUE(v.verbose);
    EXPECT_EQ(v.custom, "c");
  }
}

TEST(FlagSetTest, ValueDetails) {
  Values v;
  ASSERT_TRUE(parse(v, {"--name=a=b", "--count", "1"}).ok());
  EXPECT_EQ(v.name, "a=b") << "only the first '=' separates";
  EXPECT_EQ(v.count, 1);
  ASSERT_TRUE(parse(v, {"--name="}).ok());
  EXPECT_EQ(v.name, "") << "an empty value is a value";
  ASSERT_TRUE(parse(v, {"--name", "x", "--name", "y"}).ok());
  EXPECT_EQ(v.name, "y") << "the last one wins";
  ASSERT_TRUE(parse(v, {"--name", "--looks-like-a-flag"}).ok());
  EXPECT_EQ(v.name, "--looks-like-a-flag") << "without dashed_value_is_missing";
}

TEST(FlagSetTest, BoolFlagsNeverTakeTheNextArgument) {
  Values v;
  auto parsed = parse(v, {"--verbose", "false"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "unexpected argument \"false\"");
  ASSERT_TRUE(parse(v, {"--verbose=true"}).ok());
  EXPECT_TRUE(v.verbose);
  ASSERT_TRUE(parse(v, {"--verbose=false"}).ok());
  EXPECT_FALSE(v.verbose);
  EXPECT_EQ(errorOf({"--verbose=yes"}), "--verbose: \"yes\" is not true or false");
}

TEST(FlagSetTest, ErrorsAreOneLineNamingTheFlag) {
  EXPECT_EQ(errorOf({"--frobnicate"}), "unknown flag --frobnicate (see --help)");
  EXPECT_EQ(errorOf({"--frobnicate=1"}), "unknown flag --frobnicate (see --help)");
  EXPECT_EQ(errorOf({"--name"}), "flag --name needs a value");
  EXPECT_EQ(errorOf({"stray"}), "unexpected argument \"stray\"");
  EXPECT_EQ(errorOf({"-v"}), "unexpected argument \"-v\"");
  EXPECT_EQ(errorOf({"--"}), "unexpected argument \"--\"");
  EXPECT_EQ(errorOf({"stray"}, {.unexpected_hint = "see --help"}), "unexpected argument \"stray\" (see --help)");
  EXPECT_EQ(errorOf({"--period", "15"}).rfind("--period: invalid duration", 0), 0u) << errorOf({"--period", "15"});
  EXPECT_EQ(errorOf({"--count", "0"}), "--count: \"0\" is not a number from 1 to 10");
  EXPECT_EQ(errorOf({"--count=11"}), "--count: \"11\" is not a number from 1 to 10");
  EXPECT_EQ(errorOf({"--count", "3x"}), "--count: \"3x\" is not a number from 1 to 10");
  EXPECT_EQ(errorOf({"--count="}), "--count: \"\" is not a number from 1 to 10");
  EXPECT_EQ(errorOf({"--custom", "bad"}), "--custom: \"bad\" is not allowed");
  EXPECT_EQ(errorOf({"--help=1"}), "unknown flag --help (see --help)");
}

TEST(FlagSetTest, FirstProblemWinsAndValuesBeforeItAreStored) {
  Values v;
  auto parsed = parse(v, {"--name", "kept", "--bogus", "--count", "0"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "unknown flag --bogus (see --help)");
  EXPECT_EQ(v.name, "kept");
}

TEST(FlagSetTest, DashedValueIsMissing) {
  const FlagSyntax syntax{.dashed_value_is_missing = true};
  EXPECT_EQ(errorOf({"--name", "--count", "3"}, syntax), "flag --name needs a value");
  EXPECT_EQ(errorOf({"--name", "--"}, syntax), "flag --name needs a value");
  Values v;
  ASSERT_TRUE(parse(v, {"--name=--x", "--custom", "-x"}, syntax).ok()) << "= and a single dash still work";
  EXPECT_EQ(v.name, "--x");
  EXPECT_EQ(v.custom, "-x");
}

TEST(FlagSetTest, HelpAndVersionStopParsing) {
  Values v;
  auto help = parse(v, {"--name", "x", "--help", "--bogus"});
  ASSERT_TRUE(help.ok()) << help.error().message;
  EXPECT_TRUE(help->help);
  EXPECT_EQ(v.name, "x");
  EXPECT_TRUE(parse(v, {"-h"})->help);
  auto version = parse(v, {"--version", "--bogus"});
  ASSERT_TRUE(version.ok());
  EXPECT_TRUE(version->version);
  EXPECT_FALSE(version->help);
  EXPECT_EQ(errorOf({"--bogus", "--help"}), "unknown flag --bogus (see --help)");
  EXPECT_EQ(errorOf({"--version"}, {.version = false}), "unknown flag --version (see --help)");
}

TEST(FlagSetTest, CommandAfterDashes) {
  const FlagSyntax syntax{.command_after_dashes = true, .unexpected_hint = "a command goes after --"};
  Values v;
  auto parsed = parse(v, {"--name", "x", "--", "sh", "-c", "--name", "--help"}, syntax);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->command, (std::vector<std::string>{"sh", "-c", "--name", "--help"}));
  EXPECT_FALSE(parsed->help);
  EXPECT_EQ(v.name, "x");
  EXPECT_EQ(errorOf({"--name", "x", "--"}, syntax), "-- must be followed by a command");
  EXPECT_EQ(errorOf({"cmd"}, syntax), "unexpected argument \"cmd\" (a command goes after --)");
  auto value = parse(v, {"--name", "--", "cmd"}, syntax);
  ASSERT_FALSE(value.ok()) << "\"--\" was --name's value, so cmd is a stray argument";
  EXPECT_EQ(value.error().message, "unexpected argument \"cmd\" (a command goes after --)");
}

TEST(FlagSetTest, RegisteringANameTwiceIsAProgrammingError) {
  Values v;
  FlagSet flags;
  flags.addString("name", v.name, "NAME", "");
  EXPECT_THROW(flags.addInt("name", v.count, 1, 2, "N", ""), std::logic_error);
  EXPECT_THROW(flags.addBool("help", v.verbose, ""), std::logic_error);
  EXPECT_THROW(flags.addBool("version", v.verbose, ""), std::logic_error);
  FlagSet without_version({.version = false});
  EXPECT_NO_THROW(without_version.addBool("version", v.verbose, ""));
}

TEST(FlagSetTest, HelpListsFlagsInOrderWithDefaultsInOneColumn) {
  Values v;
  v.period = 90s;
  const std::string help = makeFlags(v).help();
  EXPECT_EQ(help,
            "  --name NAME  the name (default default-name)\n"
            "  --period D   how often (default 1m30s)\n"
            "  --count N    how many, 1 to 10 (default 3)\n"
            "  --verbose    say more\n"
            "  --custom X   anything but bad\n"
            "  -h, --help   this text\n"
            "  --version    the version\n");
  Values w;
  EXPECT_EQ(makeFlags(w, {.version = false}).help().find("--version"), std::string::npos);
}

TEST(FlagSetTest, HelpWrapsLongTextsAndKeepsExplicitLineBreaks) {
  std::string a;
  std::string b;
  FlagSet flags;
  std::string long_text;
  for (int i = 0; i < 20; ++i) long_text += "word" + std::to_string(i) + " ";
  flags.addString("a", a, "A", long_text);
  flags.addString("b", b, "B", "first line\nsecond line");
  const std::string help = flags.help();
  std::size_t start = 0;
  int lines = 0;
  for (std::size_t end = help.find('\n'); end != std::string::npos; start = end + 1, end = help.find('\n', start)) {
    const std::string line = help.substr(start, end - start);
    ++lines;
    EXPECT_LE(line.size(), 114u) << line;
    EXPECT_NE(line.back(), ' ') << line;
    if (line.starts_with("  --") || line.starts_with("  -h")) continue;
    EXPECT_EQ(line.find_first_not_of(' '), 14u) << "continuations align with the help column: " << line;
  }
  EXPECT_EQ(lines, 2 + 2 + 2) << help;  // a wraps once, b has two lines, then help and version
  EXPECT_NE(help.find("word19\n"), std::string::npos) << help;
  EXPECT_NE(help.find("  --b B       first line\n              second line\n"), std::string::npos) << help;
}

TEST(FailTest, ReturnsTheCode) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(fail("prog", 2, "bad flag"), 2);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "prog: bad flag\n");
}

TEST(FlagsTest, HelpAndVersionAreAnsweredAlikeInEveryBinary) {
  const auto usage = [] { return std::string("usage: prog\n"); };
  EXPECT_EQ(answerHelpOrVersion("prog", false, false, usage), std::nullopt);

  testing::internal::CaptureStdout();
  EXPECT_EQ(answerHelpOrVersion("prog", true, true, usage), 0);  // --help wins
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "usage: prog\n");

  testing::internal::CaptureStdout();
  EXPECT_EQ(answerHelpOrVersion("prog", false, true, usage), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "prog " + std::string(kVersion) + "\n");
}

}  // namespace
}  // namespace singleton::util
