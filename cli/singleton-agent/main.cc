// singleton-agent: runs COMMAND only while this pod is its workload's active leader. See --help and docs/handoff.md.
//
// This file is the wiring: flags, logging, the kube client, the local HTTP endpoints and the signals. The decisions
// are agent::Agent's (agent.h).

#include <filesystem>
#include <iostream>

#include "cli/singleton-agent/agent.h"
#include "cli/singleton-agent/command.h"
#include "cli/singleton-agent/options.h"
#include "cli/singleton-agent/role_board.h"
#include "controller/http_server.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "util/flags.h"
#include "util/log.h"
#include "util/signals.h"

namespace {

using namespace singleton;

constexpr const char* kProgram = "singleton-agent";
constexpr int kExitUsage = 2;

const log::Logger kLog("agent");

int fail(int code, const std::string& message) { return util::fail(kProgram, code, message); }

}  // namespace

int main(int argc, char** argv) {
  util::TerminationSignals signals;  // before any other thread exists

  auto parsed = cli::parseAgentOptions(std::vector<std::string>(argv + 1, argv + argc), cli::agentEnvironment());
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const cli::AgentOptions& options = *parsed;
  if (auto exit_code = util::answerHelpOrVersion(kProgram, options.help, options.version, cli::agentUsage))
    return *exit_code;
  if (!options.role_dir.empty() && !std::filesystem::is_directory(options.role_dir)) {
    return fail(kExitUsage, "--role-dir: \"" + options.role_dir + "\" is not a directory");
  }

  log::setup(options.log_format, options.log_level, nullptr, kProgram);

  auto config = kube::loadDefault(kube::KubeconfigOptions{options.kubeconfig, ""});
  if (!config.ok()) return fail(kExitUsage, config.error().message);
  auto transport = kube::makeBeastTransport(*config);
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  // A confirmation that takes longer than renew-deadline is useless: give up on it then.
  kube::Client client(*transport, kube::ClientOptions{options.renew_deadline, "singleton-agent/0.1"});

  const util::Clock& clock = util::systemClock();
  agent::EventPrinter printer(options.pod_name, clock);
  agent::Agent agent(options, client, clock,
                     options.command.empty() ? nullptr : agent::makeProcessCommand(options.command), printer);

  // One worker: the endpoints answer from memory, and each thread costs resident pages (its stack, a malloc arena).
  controller::HttpServer server("agent", controller::HttpServerOptions{.workers = 1});
  server.handle("/role", [&](const controller::HttpServer::Request&) {
    return controller::HttpServer::Response{200, agent.role().dump() + "\n", "application/json"};
  });
  server.handle("/healthz", [](const controller::HttpServer::Request&) {
    return controller::HttpServer::Response{200, "ok\n"};
  });
  server.handle("/readyz", [&](const controller::HttpServer::Request&) {
    return agent.ready() ? controller::HttpServer::Response{200, "ok\n"}
                         : controller::HttpServer::Response{503, "self-demoted: cannot confirm the lease\n"};
  });
  if (auto started = server.start(options.listen); !started.ok()) {
    return fail(kExitUsage, "--listen " + options.listen + ": bind: " + started.error().message);
  }

  signals.start([&](int sig) {
    kLog.info("received signal; stopping", {.values = {{"signal", util::TerminationSignals::name(sig)}}});
    agent.signal();
  });

  // As --listen gave it, with the port bound: ":PORT" stays so (every interface).
  const std::string address = controller::BindAddress{options.listen_host, server.port()}.str();
  kLog.info("serving", {.object = {.ns = options.pod_namespace, .name = options.leaseName()},
                        .values = {{"pod", options.pod_name}, {"pod_uid", options.pod_uid}, {"address", address}}});
  printer.print("ready", {{"address", address}, {"lease", options.pod_namespace + "/" + options.leaseName()}});

  const int status = agent.run({});
  signals.stop();
  return status;
}
