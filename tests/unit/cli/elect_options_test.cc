#include "cli/singleton-elect/options.h"

#include <gtest/gtest.h>

namespace singleton::cli {
namespace {

using namespace std::chrono_literals;

TEST(ElectOptionsTest, ParsesTheDocumentedInterface) {
  auto o = parseElectOptions({"--lease", "team/db-primary", "--identity=pod-1", "--kubeconfig", "/k", "--context",
                              "dev", "--lease-duration", "4s", "--renew-deadline=3s", "--retry-period", "500ms", "--",
                              "sh", "-c", "echo $SINGLETON_FENCING_TOKEN"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->lease_namespace, "team");
  EXPECT_EQ(o->lease_name, "db-primary");
  EXPECT_EQ(o->identity, "pod-1");
  EXPECT_EQ(o->kubeconfig, "/k");
  EXPECT_EQ(o->context, "dev");
  EXPECT_EQ(o->lease_duration, 4s);
  EXPECT_EQ(o->renew_deadline, 3s);
  EXPECT_EQ(o->retry_period, 500ms);
  EXPECT_EQ(o->command, (std::vector<std::string>{"sh", "-c", "echo $SINGLETON_FENCING_TOKEN"}));
}

TEST(ElectOptionsTest, Defaults) {
  auto o = parseElectOptions({"--lease", "ns/x", "--identity", "a"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->lease_duration, 15s);
  EXPECT_EQ(o->renew_deadline, 10s);
  EXPECT_EQ(o->retry_period, 2s);
  EXPECT_TRUE(o->command.empty());
  auto bare = parseElectOptions({"--lease", "x", "--identity", "a"});
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->lease_namespace, "");
}

TEST(ElectOptionsTest, RejectsBadInputWithOneReadableLine) {
  struct Case {
    std::vector<std::string> args;
    const char* expected;
  } cases[] = {
      {{"--identity", "a"}, "--lease NAMESPACE/NAME is required"},
      {{"--lease", "ns/x"}, "--identity is required"},
      {{"--lease", "ns/x", "--identity", "a", "--lease-duration", "15"}, "--lease-duration: invalid duration"},
      {{"--lease", "ns/x", "--identity", "a", "--retry-period", "-1s"}, "must not be negative"},
      {{"--lease", "ns/x", "--identity", "a", "--lease-duration", "5s"}, "must be greater than renew deadline"},
      {{"--lease", "Bad_NS/x", "--identity", "a"}, "not a valid namespace name"},
      {{"--lease", "ns/UPPER", "--identity", "a"}, "not a valid Lease name"},
      {{"--lease", "ns/x", "--identity", "a", "--frobnicate"}, "unknown flag --frobnicate"},
      {{"--lease", "ns/x", "--identity"}, "flag --identity needs a value"},
      {{"--lease", "ns/x", "--identity", "a", "stray"}, "unexpected argument \"stray\""},
      {{"--lease", "ns/x", "--identity", "a", "--"}, "-- must be followed by a command"},
      {{"--lease", "ns/x", "--identity", "a", "--log-level", "loud"}, "--log-level"},
  };
  for (const auto& c : cases) {
    auto o = parseElectOptions(c.args);
    ASSERT_FALSE(o.ok()) << c.expected;
    EXPECT_NE(o.error().message.find(c.expected), std::string::npos) << o.error().message;
    EXPECT_EQ(o.error().message.find('\n'), std::string::npos) << "one line";
  }
}

TEST(ElectOptionsTest, HelpAndVersion) {
  EXPECT_TRUE(parseElectOptions({"--help"})->help);
  EXPECT_TRUE(parseElectOptions({"-h"})->help);
  EXPECT_TRUE(parseElectOptions({"--version"})->version);
  EXPECT_NE(electUsage().find("--lease NAMESPACE/NAME"), std::string::npos);
}

}  // namespace
}  // namespace singleton::cli
