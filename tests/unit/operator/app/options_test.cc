#include "operator/app/options.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>

#include <functional>

namespace singleton::op {
namespace {

using namespace std::chrono_literals;

Environment podEnvironment() {
  Environment env;
  env.pod_namespace = "ops";
  env.pod_name = "singleton-operator-7d9f-abcde";
  env.in_cluster_namespace = "from-file";
  env.hostname = "node-host";
  return env;
}

TEST(OptionsTest, Defaults) {
  auto o = parseOptions({}, podEnvironment());
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->kubeconfig, "");
  EXPECT_EQ(o->context, "");
  EXPECT_EQ(o->watch_namespace, "") << "all namespaces";
  EXPECT_EQ(o->leader_election_namespace, "ops");
  EXPECT_EQ(o->leader_election_id, "singleton-operator");
  EXPECT_EQ(o->identity, "singleton-operator-7d9f-abcde");
  EXPECT_EQ(o->lease_duration, 15s);
  EXPECT_EQ(o->renew_deadline, 10s);
  EXPECT_EQ(o->retry_period, 2s);
  EXPECT_EQ(o->renew_interval, 0ms) << "0: the elector's default, a third of the lease";
  EXPECT_EQ(o->metrics_bind_address, ":8080");
  EXPECT_EQ(o->health_probe_bind_address, ":8081");
  EXPECT_EQ(o->log_format, log::Format::kJson);
  EXPECT_EQ(o->log_level, spdlog::level::info);
  EXPECT_EQ(o->workers, 2);
  EXPECT_FALSE(o->help);
  EXPECT_FALSE(o->version);
}

TEST(OptionsTest, LeaderElectionNamespaceFallsBackFromPodToServiceAccountToDefault) {
  Environment env = podEnvironment();
  EXPECT_EQ(parseOptions({}, env)->leader_election_namespace, "ops");
  env.pod_namespace = "";
  EXPECT_EQ(parseOptions({}, env)->leader_election_namespace, "from-file");
  env.in_cluster_namespace = "";
  EXPECT_EQ(parseOptions({}, env)->leader_election_namespace, "singleton-system");
  EXPECT_EQ(parseOptions({"--leader-election-namespace", "explicit"}, podEnvironment())->leader_election_namespace,
            "explicit");
}

TEST(OptionsTest, IdentityFallsBackFromPodNameToHostnameWithAPerProcessSuffix) {
  Environment env = podEnvironment();
  env.instance_suffix = "k3j9x0abcd";
  EXPECT_EQ(parseOptions({}, env)->identity, "singleton-operator-7d9f-abcde") << "POD_NAME is unique in a cluster";
  env.pod_name = "";
  EXPECT_EQ(parseOptions({}, env)->identity, "node-host_k3j9x0abcd");
  EXPECT_EQ(parseOptions({"--identity=me"}, podEnvironment())->identity, "me");
  env.hostname = "";
  auto none = parseOptions({}, env);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("--identity"), std::string::npos) << none.error().message;
}

TEST(OptionsTest, TwoProcessesOnOneHostGetDifferentDefaultIdentities) {
  Environment env = podEnvironment();
  env.pod_name = "";
  const std::string a = randomInstanceSuffix();
  const std::string b = randomInstanceSuffix();
  EXPECT_EQ(a.size(), 10u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) != 0 || std::isdigit(static_cast<unsigned char>(c)) != 0;
  })) << a;
  env.instance_suffix = a;
  const std::string first = parseOptions({}, env)->identity;
  env.instance_suffix = b;
  EXPECT_NE(first, parseOptions({}, env)->identity);
}

TEST(OptionsTest, ParsesEveryFlagInBothForms) {
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"kubeconfig", "/k/config"},
      {"context", "dev"},
      {"namespace", "team-a"},
      {"leader-election-namespace", "ops2"},
      {"leader-election-id", "my-operator.example.com"},
      {"identity", "replica-1"},
      {"lease-duration", "4s"},
      {"renew-deadline", "3s"},
      {"retry-period", "500ms"},
      {"renew-interval", "1500ms"},
      {"metrics-bind-address", "127.0.0.1:9090"},
      {"health-probe-bind-address", "[::1]:0"},
      {"log-format", "text"},
      {"log-level", "debug"},
      {"workers", "8"},
  };
  for (bool equals : {false, true}) {
    std::vector<std::string> args;
    for (const auto& [name, value] : flags) {
      if (equals) {
        args.push_back("--" + name + "=" + value);
      } else {
        args.push_back("--" + name);
        args.push_back(value);
      }
    }
    auto o = parseOptions(args, podEnvironment());
    ASSERT_TRUE(o.ok()) << o.error().message;
    EXPECT_EQ(o->kubeconfig, "/k/config");
    EXPECT_EQ(o->context, "dev");
    EXPECT_EQ(o->watch_namespace, "team-a");
    EXPECT_EQ(o->leader_election_namespace, "ops2");
    EXPECT_EQ(o->leader_election_id, "my-operator.example.com");
    EXPECT_EQ(o->identity, "replica-1");
    EXPECT_EQ(o->lease_duration, 4s);
    EXPECT_EQ(o->renew_deadline, 3s);
    EXPECT_EQ(o->retry_period, 500ms);
    EXPECT_EQ(o->renew_interval, 1500ms);
    EXPECT_EQ(o->metrics_bind_address, "127.0.0.1:9090");
    EXPECT_EQ(o->health_probe_bind_address, "[::1]:0");
    EXPECT_EQ(o->log_format, log::Format::kText);
    EXPECT_EQ(o->log_level, spdlog::level::debug);
    EXPECT_EQ(o->workers, 8);
  }
}

TEST(OptionsTest, GoodValues) {
  struct Case {
    std::vector<std::string> args;
    std::function<bool(const Options&)> check;
  };
  const std::vector<Case> cases = {
      {{"--metrics-bind-address=0"}, [](const Options& o) { return o.metrics_bind_address == "0"; }},
      {{"--health-probe-bind-address", "0"}, [](const Options& o) { return o.health_probe_bind_address == "0"; }},
      {{"--metrics-bind-address", ":0"}, [](const Options& o) { return o.metrics_bind_address == ":0"; }},
      {{"--lease-duration=1m", "--renew-deadline=40s", "--retry-period=5s"},
       [](const Options& o) { return o.lease_duration == 60s && o.renew_deadline == 40s; }},
      {{"--renew-interval=9s"}, [](const Options& o) { return o.renew_interval == 9s; }},
      {{"--renew-interval", "0"}, [](const Options& o) { return o.renew_interval == 0ms; }},
      {{"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=1s", "--renew-interval=2s"},
       [](const Options& o) { return o.renew_interval == 2s; }},
      {{"--log-level=warn"}, [](const Options& o) { return o.log_level == spdlog::level::warn; }},
      {{"--log-level=off"}, [](const Options& o) { return o.log_level == spdlog::level::off; }},
      {{"--log-format", "json"}, [](const Options& o) { return o.log_format == log::Format::kJson; }},
      {{"--workers=1"}, [](const Options& o) { return o.workers == 1; }},
      {{"--namespace="}, [](const Options& o) { return o.watch_namespace.empty(); }},
      {{"--namespace=a", "--namespace=b"}, [](const Options& o) { return o.watch_namespace == "b"; }},
      {{"--identity", "x", "--help", "--bogus"}, [](const Options& o) { return o.help; }},
      {{"-h"}, [](const Options& o) { return o.help; }},
      {{"--version"}, [](const Options& o) { return o.version; }},
  };
  for (const auto& c : cases) {
    auto o = parseOptions(c.args, podEnvironment());
    ASSERT_TRUE(o.ok()) << c.args[0] << ": " << o.error().message;
    EXPECT_TRUE(c.check(*o)) << c.args[0];
  }
}

TEST(OptionsTest, RejectsBadInputWithOneReadableLine) {
  struct Case {
    std::vector<std::string> args;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {{"--frobnicate"}, "unknown flag --frobnicate"},
      {{"--frobnicate=1"}, "unknown flag --frobnicate"},
      {{"stray"}, "unexpected argument \"stray\""},
      {{"-v"}, "unexpected argument \"-v\""},
      {{"--"}, "unexpected argument \"--\""},
      {{"--namespace"}, "flag --namespace needs a value"},
      {{"--namespace", "--workers", "3"}, "flag --namespace needs a value"},
      {{"--namespace", "Bad_NS"}, "--namespace: \"Bad_NS\" is not a valid namespace name"},
      {{"--leader-election-namespace", "UP"}, "--leader-election-namespace"},
      {{"--leader-election-id", "no/slash"}, "not a valid Lease name"},
      {{"--leader-election-id="}, "--leader-election-id"},
      {{"--lease-duration", "15"}, "--lease-duration: invalid duration"},
      {{"--retry-period=-1s"}, "--retry-period"},
      {{"--renew-deadline", "soon"}, "--renew-deadline"},
      {{"--lease-duration", "5s"}, "must be greater than renew deadline"},
      {{"--renew-deadline", "2s"}, "must be greater than 1.2 x retry period"},
      {{"--renew-interval", "soon"}, "--renew-interval"},
      {{"--renew-interval=-1s"}, "--renew-interval"},
      {{"--renew-interval", "10s"}, "renew interval (10s) must be less than renew deadline (10s)"},
      {{"--renew-deadline=3s", "--lease-duration=4s", "--retry-period=1s", "--renew-interval=5s"},
       "renew interval (5s) must be less than renew deadline (3s)"},
      {{"--metrics-bind-address", "8080"}, "--metrics-bind-address"},
      {{"--health-probe-bind-address", ":99999"}, "--health-probe-bind-address"},
      {{"--health-probe-bind-address", "::1:80"}, "brackets"},
      {{"--log-format", "xml"}, "--log-format: \"xml\" is not one of json, text"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--workers", "0"}, "--workers: \"0\" is not a number from 1 to 64"},
      {{"--workers", "many"}, "--workers"},
      {{"--workers", "3x"}, "--workers"},
      {{"--workers=65"}, "--workers"},
  };
  for (const auto& c : cases) {
    auto o = parseOptions(c.args, podEnvironment());
    ASSERT_FALSE(o.ok()) << c.expected;
    EXPECT_EQ(o.error().code, util::ErrorCode::kInvalidArgument);
    EXPECT_NE(o.error().message.find(c.expected), std::string::npos) << o.error().message;
    EXPECT_EQ(o.error().message.find('\n'), std::string::npos) << "one line: " << o.error().message;
  }
}

TEST(OptionsTest, HelpDocumentsEveryFlagAndItsDefault) {
  const std::string text = usage();
  for (const char* flag :
       {"--kubeconfig", "--context", "--namespace", "--leader-election-namespace", "--leader-election-id", "--identity",
        "--lease-duration", "--renew-deadline", "--retry-period", "--renew-interval", "--metrics-bind-address",
        "--health-probe-bind-address", "--log-format", "--log-level", "--workers", "--help", "--version"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag;
  }
  for (const char* fact : {"POD_NAMESPACE", "POD_NAME", "singleton-system", "default singleton-operator", "default 15s",
                           "default 10s", "default 2s", "default :8080", "default :8081", "default json",
                           "default info", "default 2", "\"0\" disables", "a third of", "must be less than"}) {
    EXPECT_NE(text.find(fact), std::string::npos) << fact;
  }
}

}  // namespace
}  // namespace singleton::op
