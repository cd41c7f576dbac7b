#include "operator/manager.h"

#include <thread>

#include "election/lease_lock.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "operator/logging.h"
#include "util/duration.h"

namespace singleton::op {
namespace {

// Besides the workers, these send requests at once: the elector and an informer relisting. Watches hold
// connections of their own.
constexpr int kOtherSenders = 2;

const log::Logger& logger() {
  static const log::Logger l{"manager"};
  return l;
}

}  // namespace

void LeaderGate::open(fencing::FencingToken term, std::uint64_t revision) {
  // The term is in place before the gate opens: a writer that sees mayWrite() reads the term it leads under.
  term_ = term.value();
  leading_since_ = revision;
  leading_ = true;
}

util::Result<std::shared_ptr<kube::Transport>> connect(const Options& options) {
  auto config = kube::loadDefault(kube::KubeconfigOptions{options.kubeconfig, options.context});
  if (!config.ok()) return std::move(config).takeError();
  // Boost.Beast: every request runs on the thread that sends it (a worker, an informer, the elector), so there is no
  // I/O pool, and without cpprestsdk the process stays small (the RSS targets in docs/operations.md).
  kube::TransportOptions transport_options;
  transport_options.idle_connections = options.workers + kOtherSenders;
  auto transport = kube::makeBeastTransport(*config, transport_options);
  if (!transport.ok()) return std::move(transport).takeError();
  logger().info("connected", {.values = {{"server", (*transport)->describe()}, {"config", config->origin}}});
  return transport;
}

util::Result<std::unique_ptr<Manager>> Manager::create(const Options& options,
                                                       const std::shared_ptr<kube::Transport>& transport,
                                                       const ManagerDeps& deps) {
  if (!transport) return util::makeError(util::ErrorCode::kInvalidArgument, "a transport is required");
  if (deps.clock == nullptr) return util::makeError(util::ErrorCode::kInvalidArgument, "a clock is required");
  std::unique_ptr<Manager> manager(new Manager(options, transport, *deps.clock));
  Manager* self = manager.get();

  std::shared_ptr<election::Lock> lock = deps.lock;
  if (!lock) {
    lock = std::make_shared<election::LeaseLock>(
        transport,
        election::LeaseLockOptions{options.leader_election_namespace, options.leader_election_id, options.identity,
                                   nlohmann::json::object()},
        *deps.clock);
  }
  election::ElectorConfig config;
  config.lock = std::move(lock);
  config.lease_duration = options.lease_duration;
  config.renew_deadline = options.renew_deadline;
  config.retry_period = options.retry_period;
  config.clock = deps.clock;
  config.callbacks.on_started_leading = [self](fencing::FencingToken token, std::stop_token stop) {
    self->onStartedLeading(token, std::move(stop));
  };
  config.callbacks.on_stopped_leading = [self] { self->onStoppedLeading(); };
  config.callbacks.on_new_leader = [self](const std::string& holder, fencing::FencingToken token) {
    logger().info(
        "new leader",
        {.values = {{"leader", holder}, {"token", token.value()}, {"self", holder == self->options_.identity}}});
  };
  auto elector = election::LeaderElector::create(std::move(config));
  if (!elector.ok()) return std::move(elector).takeError();
  manager->elector_ = std::move(*elector);
  return manager;
}

Manager::Manager(const Options& options, std::shared_ptr<kube::Transport> transport, const util::Clock& clock)
    : options_(options),
      transport_(std::move(transport)),
      clock_(clock),
      master_status_(metrics_.gauge(kMasterStatusMetric,
                                    "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
                                    "backup, 1 indicates master. 'name' is the string used to identify the lease.",
                                    {{"name", options.leader_election_id}})),
      controller_(std::make_unique<Controller>(
          transport_, ControllerOptions{options.watch_namespace, options.workers, options.identity}, metrics_, clock)) {
}

Manager::~Manager() = default;

void Manager::onStartedLeading(fencing::FencingToken token, std::stop_token stop) {
  gate_.open(token, kube::revisionOf(elector_->observedVersion()).value_or(0));
  // The elector requests this stop the moment leadership ends or the process is told to stop; closing the gate
  // right then (not when the workers have drained) keeps in-flight reconciles from writing as a former leader.
  std::stop_callback close_gate(stop, [this] { gate_.close(); });
  master_status_.set(1);
  logger().info("started leading", {.values = {{"identity", options_.identity}, {"term", token.value()}}});
  controller_->runWorkers(gate_, stop);
  logger().info("workers stopped", {.values = {{"term", token.value()}}});
}

void Manager::onStoppedLeading() {
  gate_.close();
  master_status_.set(0);
}

HttpServer::Response Manager::healthz() const {
  if (auto s = elector_->healthCheck(kElectorHealthTolerance); !s.ok()) return {500, s.error().message + "\n"};
  return {200, "ok\n"};
}

HttpServer::Response Manager::readyz() const {
  if (!controller_->synced()) return {503, "informers have not synced\n"};
  return {200, "ok\n"};
}

util::Status Manager::startServers() {
  if (options_.health_probe_bind_address != kDisabledAddress) {
    health_server_.handle("/healthz", [this](const HttpServer::Request&) { return healthz(); });
    health_server_.handle("/readyz", [this](const HttpServer::Request&) { return readyz(); });
    if (auto s = health_server_.start(options_.health_probe_bind_address); !s.ok()) return s;
    health_port_ = health_server_.port();
  }
  if (options_.metrics_bind_address != kDisabledAddress) {
    metrics_server_.handle("/metrics", [this](const HttpServer::Request&) {
      return HttpServer::Response{200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8"};
    });
    if (auto s = metrics_server_.start(options_.metrics_bind_address); !s.ok()) return s;
    metrics_port_ = metrics_server_.port();
  }
  return {};
}

util::Result<Manager::Outcome> Manager::run(std::stop_token stop) {
  if (auto s = startServers(); !s.ok()) {
    health_server_.stop();
    return std::move(s).takeError();
  }
  // Closes the gate at once on a stop request, before the elector gets round to stopping the workers.
  std::stop_callback shutdown_gate(stop, [this] { gate_.shutdown(); });

  std::jthread informers([this](std::stop_token informer_stop) { controller_->runInformers(informer_stop); });
  logger().info("campaigning",
                {.values = {{"identity", options_.identity},
                            {"lease", options_.leader_election_namespace + "/" + options_.leader_election_id},
                            {"lease_duration", util::formatDuration(options_.lease_duration)}}});
  // Returns after the workers have finished and (on a requested stop) the Lease has been released.
  const auto outcome = elector_->run(stop);

  informers.request_stop();
  informers.join();
  metrics_server_.stop();
  health_server_.stop();
  if (outcome == election::LeaderElector::Outcome::kLostLeadership) {
    logger().error("lost leadership",
                   {.values = {{"lease", options_.leader_election_namespace + "/" + options_.leader_election_id}}});
    return Outcome::kLostLeadership;
  }
  logger().info("stopped");
  return Outcome::kStopped;
}

}  // namespace singleton::op
