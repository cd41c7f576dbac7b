#include "cli/singleton-agent/options.h"
#include "election/timings.h"

#include <gtest/gtest.h>

namespace singleton::cli {
namespace {

using namespace std::chrono_literals;
using Env = std::map<std::string, std::string>;

const Env kEnv = {{"SINGLETON_WORKLOAD", "web"}, {"POD_NAME", "web-0"}, {"POD_NAMESPACE", "prod"}, {"POD_UID", "u-0"}};

std::string errorOf(const std::vector<std::string>& args, const Env& env = kEnv) {
  auto r = parseAgentOptions(args, env);
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << "one line: " << r.error().message;
  return r.error().message;
}

TEST(AgentOptionsTest, DefaultsFromEnvironment) {
  auto r = parseAgentOptions({}, kEnv);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->workload, "web");
  EXPECT_EQ(r->leaseName(), "web-leader");
  EXPECT_EQ(r->pod_name, "web-0");
  EXPECT_EQ(r->pod_namespace, "prod");
  EXPECT_EQ(r->pod_uid, "u-0");
  EXPECT_EQ(r->renew_deadline, 10s);
  EXPECT_EQ(r->renew_interval, 5s);
  EXPECT_FALSE(r->grace_period_set);
  EXPECT_EQ(r->listen_host, "127.0.0.1");
  EXPECT_EQ(r->listen_port, 0);
  EXPECT_TRUE(r->command.empty());
}

TEST(AgentOptionsTest, FlagsOverrideEnvironmentAndCommandFollowsDashes) {
  auto r = parseAgentOptions({"--workload=db",
                              "--pod-name",
                              "db-1",
                              "--pod-namespace",
                              "ns",
                              "--pod-uid",
                              "u",
                              "--renew-deadline",
                              "2s",
                              "--renew-interval=500ms",
                              "--grace-period",
                              "1s",
                              "--role-dir",
                              "/tmp",
                              "--listen",
                              "127.0.0.1:8099",
                              "--",
                              "sh",
                              "-c",
                              "exit 0"},
                             kEnv);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->leaseName(), "db-leader");
  EXPECT_EQ(r->pod_name, "db-1");
  EXPECT_EQ(r->pod_namespace, "ns");
  EXPECT_EQ(r->pod_uid, "u");
  EXPECT_EQ(r->renew_deadline, 2s);
  EXPECT_EQ(r->renew_interval, 500ms);
  EXPECT_TRUE(r->grace_period_set);
  EXPECT_EQ(r->grace_period, 1s);
  EXPECT_EQ(r->listen_port, 8099);
  EXPECT_EQ(r->command, (std::vector<std::string>{"sh", "-c", "exit 0"}));
}

TEST(AgentOptionsTest, MissingIdentityNamesTheEnvironmentVariable) {
  for (const char* name : {"SINGLETON_WORKLOAD", "POD_NAME", "POD_NAMESPACE", "POD_UID"}) {
    Env env = kEnv;
    env.erase(name);
    EXPECT_NE(errorOf({}, env).find(name), std::string::npos) << name;
  }
}

TEST(AgentOptionsTest, BadFlagsAreOneLineErrors) {
  EXPECT_NE(errorOf({"--nope"}), "");
  EXPECT_NE(errorOf({"--renew-deadline", "soon"}), "");
  EXPECT_NE(errorOf({"--renew-interval", "10s"}).find("less than"), std::string::npos);
  EXPECT_NE(errorOf({"--renew-deadline", "0s"}), "");
  EXPECT_NE(errorOf({"--grace-period", "x"}), "");
  EXPECT_NE(errorOf({"--log-level", "loud"}), "");
  EXPECT_NE(errorOf({"--log-format", "yaml"}).find("--log-format"), std::string::npos);
  EXPECT_NE(errorOf({"--listen", "8080"}), "");
  EXPECT_NE(errorOf({"--listen", "127.0.0.1:99999"}), "");
  EXPECT_NE(errorOf({"--listen", "127.0.0.1:http"}), "");
  EXPECT_NE(errorOf({"--workload", "Bad_Name"}), "");
  EXPECT_NE(errorOf({"--pod-namespace", "a.b"}), "");
  EXPECT_NE(errorOf({"--"}), "");  // "--" needs a command after it
  EXPECT_NE(errorOf({"extra"}), "");
}

TEST(AgentOptionsTest, HelpAndVersion) {
  auto help = parseAgentOptions({"--help"}, {});
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->help);
  auto version = parseAgentOptions({"--version"}, {});
  ASSERT_TRUE(version.ok());
  EXPECT_TRUE(version->version);
  const std::string usage = agentUsage();
  for (const char* flag :
       {"--kubeconfig", "--workload", "--pod-name", "--pod-namespace", "--pod-uid", "--renew-deadline",
        "--renew-interval", "--grace-period", "--role-dir", "--listen", "--log-format", "--log-level"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

TEST(AgentOptionsTest, GracePeriodDerivedFromTheLease) {
  // 15s lease, 10s deadline: budget 3.5s, reap wait 500ms, grace 3s (as singleton-elect's).
  EXPECT_EQ(election::killWait(15s, 10s), 500ms);
  EXPECT_EQ(election::defaultGracePeriod(15s, 10s), 3s);
  // 4s lease, 2s deadline: budget 1.6s, reap wait 400ms, grace 1.2s.
  EXPECT_EQ(election::killWait(4s, 2s), 400ms);
  EXPECT_EQ(election::defaultGracePeriod(4s, 2s), 1200ms);
  EXPECT_LE(election::defaultGracePeriod(4s, 4s), 0ms);
}

}  // namespace
}  // namespace singleton::cli
