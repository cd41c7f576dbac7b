// The flags and the IP pool.
#include <gtest/gtest.h>

#include <set>

#include "ip_pool.h"
#include "options.h"

namespace singleton::sim {
namespace {

TEST(Options, DefaultsAndValues) {
  auto parsed = parseOptions({"--kubeconfig", "/k", "--nodes=3", "--node-prefix", "n-", "--heartbeat", "500ms",
                              "--ready-delay=1s", "--workers", "2", "--log-level", "debug", "--log-format", "json"});
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->kubeconfig, "/k");
  EXPECT_EQ(parsed->nodes, 3);
  EXPECT_EQ(parsed->node_prefix, "n-");
  EXPECT_EQ(parsed->heartbeat, util::Millis(500));
  EXPECT_EQ(parsed->ready_delay, util::Millis(1000));
  EXPECT_EQ(parsed->workers, 2);
  EXPECT_EQ(parsed->log_level, spdlog::level::debug);
  EXPECT_EQ(parsed->log_format, log::Format::kJson);
  auto defaults = parseOptions({});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->nodes, 1);
  EXPECT_EQ(defaults->node_prefix, "sim-node-");
  EXPECT_EQ(defaults->heartbeat, util::Millis(2000));
  EXPECT_EQ(defaults->log_format, log::Format::kText);
  EXPECT_TRUE(parseOptions({"--help"})->help);
}

TEST(Options, BadFlagsAreOneLineErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{{"--nodes", "0"},
                                                                                    {"--nodes", "x"},
                                                                                    {"--nodes"},
                                                                                    {"--bogus"},
                                                                                    {"positional"},
                                                                                    {"--heartbeat", "2"},
                                                                                    {"--heartbeat", "10ms"},
                                                                                    {"--node-prefix", "Upper"},
                                                                                    {"--log-level", "loud"},
                                                                                    {"--log-format", "yaml"}}) {
    auto parsed = parseOptions(args);
    ASSERT_FALSE(parsed.ok()) << args[0];
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos);
  }
}

TEST(IpPool, UniqueStableAndReleased) {
  IpPool pool;
  pool.markUsed("10.244.0.1");
  const std::string a = pool.assign("uid-a");
  EXPECT_EQ(a, "10.244.0.2");
  EXPECT_EQ(pool.assign("uid-a"), a);
  std::set<std::string> seen{a};
  for (int i = 0; i < 600; ++i) EXPECT_TRUE(seen.insert(pool.assign("u" + std::to_string(i))).second);
  EXPECT_FALSE(seen.contains("10.244.1.0"));
  EXPECT_FALSE(seen.contains("10.244.0.255"));
  const std::size_t used = pool.used();
  pool.release("uid-a", a);
  EXPECT_EQ(pool.used(), used - 1);
  pool.markUsed("garbage");
  pool.markUsed("10.244.300.1");
  EXPECT_EQ(pool.used(), used - 1);
}

}  // namespace
}  // namespace singleton::sim
