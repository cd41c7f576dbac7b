#include "cli/singleton-elect/options.h"

#include "election/timings.h"

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
  EXPECT_EQ(o->log_format, log::Format::kText) << "people read singleton-elect's stderr";
  EXPECT_EQ(o->log_level, spdlog::level::info);
  auto json = parseElectOptions({"--lease", "ns/x", "--log-format", "json", "--log-level", "warn"});
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->log_format, log::Format::kJson);
  EXPECT_EQ(json->log_level, spdlog::level::warn);
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
      {{"--lease", "ns/x", "--renew-interval", "10s"}, "renew interval (10s) must be less than renew deadline (10s)"},
      {{"--lease", "ns/x", "--grace-period", "5s"}, "--grace-period 5s is too long"},
      {{"--lease", "ns/x", "--lease-duration", "11s"}, "drift margin"},
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
      {{"--lease", "ns/x", "--identity", "a", "--log-format", "yaml"}, "--log-format"},
  };
  for (const auto& c : cases) {
    auto o = parseElectOptions(c.args);
    ASSERT_FALSE(o.ok()) << c.expected;
    EXPECT_NE(o.error().message.find(c.expected), std::string::npos) << o.error().message;
    EXPECT_EQ(o.error().message.find('\n'), std::string::npos) << "one line";
  }
}

TEST(ElectOptionsTest, DefaultIdentityIsUniquePerProcess) {
  auto a = parseElectOptions({"--lease", "ns/x"});
  auto b = parseElectOptions({"--lease", "ns/x"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->identity.empty());
  EXPECT_NE(a->identity, b->identity);
  EXPECT_NE(a->identity.find('_'), std::string::npos) << "<hostname>_<random>";
}

TEST(ElectOptionsTest, GracePeriodIsDerivedFromTheTimingsSoTheStopEndsBeforeARivalCanAcquire) {
  // 15 - 10 - 1.5 (drift margin) = 3.5 s for the whole stop; 500 ms of it for the reap.
  auto o = parseElectOptions({"--lease", "ns/x"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->grace_period, 3s);
  EXPECT_EQ(election::killWait(15s, 10s), 500ms);
  // 4 - 3 - 0.4 = 600 ms; a quarter of it for the reap.
  auto fast = parseElectOptions(
      {"--lease", "ns/x", "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s"});
  ASSERT_TRUE(fast.ok());
  EXPECT_EQ(fast->grace_period, 450ms);
  // An explicit grace period within the bound is kept; one beyond it is refused, saying the most allowed.
  auto explicit_ok = parseElectOptions({"--lease", "ns/x", "--grace-period", "3s"});
  ASSERT_TRUE(explicit_ok.ok());
  EXPECT_EQ(explicit_ok->grace_period, 3s);
  auto too_long = parseElectOptions({"--lease", "ns/x", "--grace-period", "3001ms"});
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().message.find("at most 3s"), std::string::npos) << too_long.error().message;
  // A longer lease makes room for a longer grace period.
  EXPECT_TRUE(parseElectOptions({"--lease", "ns/x", "--lease-duration", "30s", "--grace-period", "10s"}).ok());
}

TEST(ElectOptionsTest, RenewInterval) {
  auto o = parseElectOptions({"--lease", "ns/x", "--renew-interval", "4s"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->renew_interval, 4s);
  EXPECT_EQ(parseElectOptions({"--lease", "ns/x"})->renew_interval, 0ms) << "0: a third of the lease";
  EXPECT_NE(electUsage().find("--renew-interval"), std::string::npos);
}

TEST(ElectOptionsTest, HelpAndVersion) {
  EXPECT_TRUE(parseElectOptions({"--help"})->help);
  EXPECT_TRUE(parseElectOptions({"-h"})->help);
  EXPECT_TRUE(parseElectOptions({"--version"})->version);
  EXPECT_NE(electUsage().find("--lease NAMESPACE/NAME"), std::string::npos);
}

}  // namespace
}  // namespace singleton::cli
