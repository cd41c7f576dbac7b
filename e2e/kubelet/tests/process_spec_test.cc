// The pure parts of process pods: the opt-in rule, env and argv composition, probes, restart backoff, and the
// status written from the runtime's state.
#include <gtest/gtest.h>

#include "container_spec.h"
#include "pod_status.h"
#include "util/time_format.h"

namespace singleton::sim {
namespace {

using namespace std::chrono_literals;

const util::WallTime kNow = util::WallTime(std::chrono::seconds(1'700'000'000));

Json processPod() {
  return Json::parse(R"js({
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                 "labels": {"app": "web"}, "annotations": {"note": "hi"}},
    "spec": {"nodeName": "sim-node-0", "serviceAccountName": "agent", "containers": [
      {"name": "app", "image": "host", "command": ["/bin/sh", "-c"], "args": ["echo $(POD_NAME) $$HOME"],
       "env": [
         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
         {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
         {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
         {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
         {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
         {"name": "GREETING", "value": "hello $(POD_NAME) $(UNDEFINED)"},
         {"name": "HOME", "value": "/work"}
       ]
}]
}
})js");
}

EnvFacts envFacts() { return {"10.244.0.9", "127.0.0.1", "127.0.0.1", "6443"}; }

std::string envValue(const EnvList& env, const std::string& name) {
  for (const auto& [key, value] : env) {
    if (key == name) return value;
  }
  return "<unset>";
}

TEST(ProcessSpec, OptInRuleIsAnAbsoluteHostExecutable) {
  auto exists = [](const std::string& path) { return path == "/bin/sh"; };
  EXPECT_TRUE(isProcessContainer(Json{{"command", {"/bin/sh", "-c", "true"}}}, exists));
  EXPECT_FALSE(isProcessContainer(Json{{"command", {"sh", "-c", "true"}}}, exists));            // not absolute
  EXPECT_FALSE(isProcessContainer(Json{{"command", {"/usr/bin/missing"}}}, exists));            // not on this host
  EXPECT_FALSE(isProcessContainer(Json{{"image", "busybox"}, {"args", {"/bin/sh"}}}, exists));  // no command
  EXPECT_TRUE(isProcessPod(processPod(), exists));
  EXPECT_FALSE(isProcessPod(Json::parse(R"({"spec": {"containers": [{"name": "a", "image": "busybox"}]}})"), exists));
  EXPECT_TRUE(hostExecutable("/bin/sh"));
  EXPECT_FALSE(hostExecutable("/etc/passwd"));
  EXPECT_FALSE(hostExecutable("/bin"));
}

TEST(ProcessSpec, EnvComposesDownwardApiAndServiceVariables) {
  const Json pod = processPod();
  auto env = containerEnv(pod, pod["spec"]["containers"][0], envFacts());
  ASSERT_TRUE(env.ok()) << env.error().message;
  EXPECT_EQ(envValue(*env, "POD_NAME"), "p");
  EXPECT_EQ(envValue(*env, "POD_NAMESPACE"), "ns");
  EXPECT_EQ(envValue(*env, "POD_UID"), "u-1");
  EXPECT_EQ(envValue(*env, "NODE"), "sim-node-0");
  EXPECT_EQ(envValue(*env, "IP"), "10.244.0.9");
  EXPECT_EQ(envValue(*env, "APP"), "web");
  EXPECT_EQ(envValue(*env, "GREETING"), "hello p $(UNDEFINED)");
  EXPECT_EQ(envValue(*env, "HOME"), "/work");  // the template replaces the default
  EXPECT_EQ(envValue(*env, "HOSTNAME"), "p");
  EXPECT_EQ(envValue(*env, "KUBERNETES_SERVICE_HOST"), "127.0.0.1");
  EXPECT_EQ(envValue(*env, "KUBERNETES_SERVICE_PORT"), "6443");
  int homes = 0;
  for (const auto& [key, value] : *env) homes += key == "HOME" ? 1 : 0;
  EXPECT_EQ(homes, 1);

  const std::vector<std::string> argv = containerArgv(pod["spec"]["containers"][0], *env);
  EXPECT_EQ(argv, (std::vector<std::string>{"/bin/sh", "-c", "echo p $HOME"}));
}

TEST(ProcessSpec, UnsupportedEnvSourcesAreNamed) {
  Json pod = processPod();
  pod["spec"]["containers"][0]["env"] =
      Json::parse(R"([{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])");
  auto env = containerEnv(pod, pod["spec"]["containers"][0], envFacts());
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.error().message.find("PASSWORD"), std::string::npos) << env.error().message;
  EXPECT_NE(env.error().message.find("secretKeyRef"), std::string::npos) << env.error().message;

  pod["spec"]["containers"][0]["env"] =
      Json::parse(R"([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.x"}}}])");
  EXPECT_FALSE(containerEnv(pod, pod["spec"]["containers"][0], envFacts()).ok());
  pod["spec"]["containers"][0].erase("env");
  pod["spec"]["containers"][0]["envFrom"] = Json::parse(R"([{"configMapRef": {"name": "c"}}])");
  EXPECT_FALSE(containerEnv(pod, pod["spec"]["containers"][0], envFacts()).ok());
}

TEST(ProcessSpec, ReadinessProbeDefaultsAndKinds) {
  auto none = readinessProbe(Json{{"name", "a"}});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto exec = readinessProbe(Json::parse(R"({"readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}}})"));
  ASSERT_TRUE(exec.ok() && exec->has_value());
  const Probe& e = **exec;
  EXPECT_EQ(e.kind, Probe::Kind::kExec);
  EXPECT_EQ(e.command.size(), 3U);
  EXPECT_EQ(e.period_seconds, 10);
  EXPECT_EQ(e.timeout_seconds, 1);
  EXPECT_EQ(e.success_threshold, 1);
  EXPECT_EQ(e.failure_threshold, 3);
  EXPECT_EQ(e.initial_delay_seconds, 0);

  auto http = readinessProbe(Json::parse(R"({"ports": [{"name": "web", "containerPort": 8080}],
    "readinessProbe": {"httpGet": {"path": "healthz", "port": "web"}, "periodSeconds": 2, "initialDelaySeconds": 3,
                       "timeoutSeconds": 4, "successThreshold": 2, "failureThreshold": 5}})"));
  ASSERT_TRUE(http.ok() && http->has_value()) << (http.ok() ? "" : http.error().message);
  EXPECT_EQ((*http)->kind, Probe::Kind::kHttpGet);
  EXPECT_EQ((*http)->port, 8080);
  EXPECT_EQ((*http)->path, "/healthz");
  EXPECT_EQ((*http)->period_seconds, 2);
  EXPECT_EQ((*http)->initial_delay_seconds, 3);
  EXPECT_EQ((*http)->timeout_seconds, 4);
  EXPECT_EQ((*http)->success_threshold, 2);
  EXPECT_EQ((*http)->failure_threshold, 5);

  auto tcp = readinessProbe(Json::parse(R"({"readinessProbe": {"tcpSocket": {"port": 9000}}})"));
  ASSERT_TRUE(tcp.ok() && tcp->has_value());
  EXPECT_EQ((*tcp)->kind, Probe::Kind::kTcpSocket);

  EXPECT_FALSE(readinessProbe(Json::parse(R"({"readinessProbe": {"httpGet": {"port": 1, "scheme": "HTTPS"}}})")).ok());
  EXPECT_FALSE(readinessProbe(Json::parse(R"({"readinessProbe": {"httpGet": {"port": "nope"}}})")).ok());
  EXPECT_FALSE(readinessProbe(Json::parse(R"({"readinessProbe": {"periodSeconds": 1}})")).ok());
}

TEST(ProcessSpec, RestartBackoffAndPolicy) {
  EXPECT_EQ(restartDelay(0, 10s, 300s), 0ms);
  EXPECT_EQ(restartDelay(1, 10s, 300s), 10s);
  EXPECT_EQ(restartDelay(2, 10s, 300s), 20s);
  EXPECT_EQ(restartDelay(3, 10s, 300s), 40s);
  EXPECT_EQ(restartDelay(6, 10s, 300s), 300s);
  EXPECT_EQ(restartDelay(60, 10s, 300s), 300s);
  EXPECT_TRUE(shouldRestart("", 0));
  EXPECT_TRUE(shouldRestart("Always", 0));
  EXPECT_TRUE(shouldRestart("OnFailure", 1));
  EXPECT_FALSE(shouldRestart("OnFailure", 0));
  EXPECT_FALSE(shouldRestart("Never", 1));
}

TEST(ProcessSpec, GraceAndServiceAccount) {
  Json pod = processPod();
  EXPECT_EQ(terminationGraceSeconds(pod), 30);
  pod["spec"]["terminationGracePeriodSeconds"] = 5;
  EXPECT_EQ(terminationGraceSeconds(pod), 5);
  pod["metadata"]["deletionGracePeriodSeconds"] = 0;
  EXPECT_EQ(terminationGraceSeconds(pod), 0);
  EXPECT_EQ(serviceAccountName(pod), "agent");
  EXPECT_EQ(serviceAccountName(Json::object()), "default");
  EXPECT_TRUE(automountToken(pod));
  pod["spec"]["automountServiceAccountToken"] = false;
  EXPECT_FALSE(automountToken(pod));
}

PodFacts facts() {
  PodFacts f;
  f.now = kNow;
  f.pod_ip = "10.244.0.1";
  return f;
}

std::string readyOf(const Json& status) {
  const Json* ready = findByType(status["conditions"], "Ready");
  return ready != nullptr ? stringField(*ready, "status") : "";
}

TEST(ProcessStatus, FromRuntimeState) {
  const Json pod = processPod();
  PodRun run;
  run.containers.push_back(ContainerRun{});
  run.containers[0].name = "app";
  // Not started yet: Pending, waiting ContainerCreating.
  PodPlan plan = planProcessPod(pod, facts(), run);
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["phase"], "Pending");
  EXPECT_EQ(plan.status["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
  EXPECT_EQ(readyOf(plan.status), "False");

  // Running, ready after a restart: Running, Ready, restartCount and lastState.
  ContainerRun& c = run.containers[0];
  c.state = ContainerRun::State::kRunning;
  c.started_at = kNow;
  c.container_id = "process://42";
  c.ready = true;
  c.started = true;
  c.restart_count = 2;
  c.last = ContainerRun::Terminated{1, 0, "Error", "", kNow, kNow, "process://41"};
  plan = planProcessPod(pod, facts(), run);
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(plan.status["phase"], "Running");
  EXPECT_EQ(readyOf(plan.status), "True");
  const Json& status = plan.status["containerStatuses"][0];
  EXPECT_EQ(status["restartCount"], 2);
  EXPECT_EQ(status["containerID"], "process://42");
  EXPECT_EQ(status["lastState"]["terminated"]["exitCode"], 1);
  EXPECT_TRUE(status["state"].contains("running"));

  // Written already: no second write. A readiness change is one.
  Json written = pod;
  written["status"] = plan.status;
  EXPECT_EQ(planProcessPod(written, facts(), run).action, PodPlan::Action::kNothing);
  c.ready = false;
  plan = planProcessPod(written, facts(), run);
  ASSERT_EQ(plan.action, PodPlan::Action::kWriteStatus);
  EXPECT_EQ(readyOf(plan.status), "False");
  c.ready = true;
  c.restart_count = 3;
  EXPECT_EQ(planProcessPod(written, facts(), run).action, PodPlan::Action::kWriteStatus);

  // Ended for good (restartPolicy Never): Failed with the exit code.
  c.state = ContainerRun::State::kTerminated;
  c.final = true;
  c.ready = false;
  c.current = ContainerRun::Terminated{3, 0, "Error", "", kNow, kNow, "process://42"};
  plan = planProcessPod(written, facts(), run);
  EXPECT_EQ(plan.status["phase"], "Failed");
  EXPECT_EQ(plan.status["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
  c.current->exit_code = 0;
  EXPECT_EQ(planProcessPod(written, facts(), run).status["phase"], "Succeeded");
}

}  // namespace
}  // namespace singleton::sim
