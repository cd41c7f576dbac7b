// singleton-sim-kubelet: a simulated kubelet (what KWOK does) for a control plane without container runtime.
// See --help and README.md.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "node_agent.h"
#include "options.h"
#include "pod_agent.h"
#include "util/flags.h"
#include "util/log.h"
#include "util/signals.h"

namespace {

using namespace singleton;

constexpr const char* kProgram = "singleton-sim-kubelet";
constexpr int kExitUsage = 2;

const log::Logger kLog("kubelet");

int fail(int code, const std::string& message) { return util::fail(kProgram, code, message); }

}  // namespace

int main(int argc, char** argv) {
  util::TerminationSignals signals;  // before any other thread exists

  auto parsed = sim::parseOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const sim::Options& options = *parsed;
  if (auto exit_code = util::answerHelpOrVersion(kProgram, options.help, false, sim::usage)) return *exit_code;

  log::setup(options.log_format, options.log_level, nullptr, kProgram);

  auto config = kube::loadDefault(kube::KubeconfigOptions{options.kubeconfig, ""});
  if (!config.ok()) return fail(kExitUsage, config.error().message);
  // Requests run on the threads that send them (Boost.Beast): the workers and the node heartbeats at once, each on a
  // kept-alive connection; the two watches hold their own.
  kube::TransportOptions transport_options;
  transport_options.idle_connections = options.workers + options.nodes;
  auto transport = kube::makeBeastTransport(*config, transport_options);
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  kube::ClientOptions client_options;
  client_options.user_agent = "singleton-sim-kubelet/0.1";
  kube::Client client(*transport, client_options);

  // Process pods (README.md): their in-cluster config points at the apiserver we use, with its CA.
  sim::ProcessRuntime::Config processes;
  {
    const char* tmp = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): read before any thread starts
    const std::filesystem::path base = std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") /
                                       ("singleton-sim-kubelet-" + std::to_string(::getpid()));
    processes.log_dir = options.pod_log_dir.empty() ? (base / "logs").string() : options.pod_log_dir;
    processes.state_dir = (base / "pods").string();
    std::string server = config->server;
    if (const auto scheme = server.find("://"); scheme != std::string::npos) server = server.substr(scheme + 3);
    const auto colon = server.rfind(':');
    const bool has_port = colon != std::string::npos && server.find(']', colon) == std::string::npos;
    processes.service_host = has_port ? server.substr(0, colon) : server;
    processes.service_port = has_port ? server.substr(colon + 1) : "443";
    if (processes.service_host.size() > 2 && processes.service_host.front() == '[') {
      processes.service_host = processes.service_host.substr(1, processes.service_host.size() - 2);
    }
    processes.ca_pem = config->ca_pem;
    processes.restart_base = options.restart_backoff;
    processes.token_refresh = options.token_refresh;
  }

  std::vector<std::string> names;
  for (int i = 0; i < options.nodes; ++i) names.push_back(options.node_prefix + std::to_string(i));
  sim::NodeAgent nodes(client, {names, options.heartbeat});
  sim::PodAgent pods(
      client,
      {std::set<std::string>(names.begin(), names.end()), options.ready_delay, options.workers, "127.0.0.1", processes},
      [&nodes](const std::string& node) { return nodes.stopped(node); });
  nodes.setResumeListener([&pods](const std::string& node) { pods.resyncNode(node); });
  kLog.info("starting", {.values = {{"nodes", options.nodes},
                                    {"node_prefix", options.node_prefix},
                                    {"server", config->server},
                                    {"heartbeat_ms", options.heartbeat.count()},
                                    {"ready_delay_ms", options.ready_delay.count()},
                                    {"workers", options.workers}}});
  kLog.info("process pods", {.values = {{"log_dir", processes.log_dir},
                                        {"apiserver", processes.service_host + ":" + processes.service_port}}});

  std::stop_source stop_all;
  std::jthread node_thread([&] { nodes.run(stop_all.get_token()); });
  std::jthread pod_thread([&] {
    // Pods wait for the nodes: until the node watch has synced we cannot tell which nodes are stopped.
    const util::Clock& clock = util::systemClock();
    while (!nodes.ready()) {
      if (!clock.sleepFor(util::Millis(5), stop_all.get_token())) return;
    }
    pods.run(stop_all.get_token());
  });
  std::jthread ready_log([&] {
    const util::Clock& clock = util::systemClock();
    while (!(nodes.ready() && pods.synced())) {
      if (!clock.sleepFor(util::Millis(5), stop_all.get_token())) return;
    }
    // Tests and scripts wait for "ready:" in this line.
    kLog.info("ready: nodes registered, watching pods");
  });

  kLog.info("received signal; stopping", {.values = {{"signal", util::TerminationSignals::name(signals.wait())}}});
  stop_all.request_stop();
  node_thread.join();
  pod_thread.join();
  ready_log.join();
  {
    // The token directories are gone with their pods; the base directory too unless it holds the logs.
    std::error_code error;
    std::filesystem::remove_all(processes.state_dir, error);
    std::filesystem::remove(processes.log_dir, error);  // only when empty: no process pod ran
    std::filesystem::remove(std::filesystem::path(processes.state_dir).parent_path(), error);
  }
  const sim::PodAgentStats& stats = pods.stats();
  const long long writes = stats.status_writes.load();
  // Latencies from each pod's event to its status write, in ms to the tenth.
  auto tenths = [](double ms) { return std::round(ms * 10.0) / 10.0; };
  kLog.info(
      "stopped",
      {.values = {{"status_writes", writes},
                  {"write_latency_mean_ms", tenths(writes > 0 ? static_cast<double>(stats.latency_us_total.load()) /
                                                                    1000.0 / static_cast<double>(writes)
                                                              : 0.0)},
                  {"write_latency_max_ms", tenths(static_cast<double>(stats.latency_us_max.load()) / 1000.0)},
                  {"deletions", stats.deletes.load()},
                  {"conflicts", stats.conflicts.load()},
                  {"retried_errors", stats.errors.load()},
                  {"events_without_write", stats.skipped.load()}}});
  return 0;
}
