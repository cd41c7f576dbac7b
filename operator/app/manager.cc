#include "operator/app/manager.h"

#include <chrono>
#include <thread>

#include "election/lease_lock.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "util/duration.h"
#include "util/log.h"
#include "util/time_format.h"

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

bool LeaderGate::mayWrite() const {
  if (!leading_.load() || stopped_.load()) return false;
  if (!leading_until_) return true;
  // The elector's deadline, on the same monotonic clock it decides by: shut the instant it would give up, even
  // before its thread has noticed (a resumed process, a renewal still waiting for its answer).
  const std::optional<util::MonoTime> until = leading_until_();
  return until.has_value() && clock_->now() < *until;
}

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
  config.renew_interval = options.renew_interval;
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
      master_status_(
          metrics_.gauge(kMasterStatusMetric,
                         "controller::Gauge of if the reporting system is master of the relevant lease, 0 indicates "
                         "backup, 1 indicates master. 'name' is the string used to identify the lease.",
                         {{"name", options.leader_election_id}})),
      gate_(clock,
            [this]() -> std::optional<util::MonoTime> { return elector_ ? elector_->leadingUntil() : std::nullopt; }),
      controller_(std::make_unique<Controller>(
          transport_,
          ControllerOptions{options.watch_namespace, options.workers, options.identity, options.retry_period}, metrics_,
          clock)) {}

Manager::~Manager() = default;

std::optional<fencing::FencingToken> Manager::termAboveRecorded(fencing::FencingToken token, std::stop_token stop) {
  // The caches are complete up to their first list: a term recorded on any workload Lease is in them.
  if (!controller_->waitSynced(stop)) return std::nullopt;
  // No workload Lease records a term (a fresh install): nothing to be fenced out of.
  const std::optional<long long> recorded = controller_->highestOperatorTerm();
  if (!recorded || token.value() > *recorded) return token;
  const long long floor = *recorded;
  while (!stop.stop_requested()) {
    auto raised = elector_->raiseTokenAbove(fencing::FencingToken(floor));
    if (raised.ok()) {
      const std::string message = "operator term " + std::to_string(token.value()) +
                                  " is not above the term recorded on workload Leases (" + std::to_string(floor) +
                                  "); the Lease " + leaseName() + " was deleted or recreated: raised to " +
                                  std::to_string(raised->value());
      logger().warn(
          "operator term raised",
          {.values = {
               {"lease", leaseName()}, {"term", token.value()}, {"recorded", floor}, {"raised_to", raised->value()}}});
      recordLeaseWarning("OperatorTermRaised", message);
      return *raised;
    }
    logger().warn("cannot raise the operator term; retrying",
                  {.err = raised.error().describe(), .values = {{"lease", leaseName()}, {"recorded", floor}}});
    clock_.sleepFor(options_.retry_period, stop);
  }
  return std::nullopt;
}

void Manager::recordLeaseWarning(const std::string& reason, const std::string& message) {
  // Best effort, like every Event: the log line above is the record of it.
  const util::WallTime now = clock_.wallNow();
  const std::string stamp = util::formatTime(now);
  nlohmann::json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata",
       {{"generateName", options_.leader_election_id + "."}, {"namespace", options_.leader_election_namespace}}},
      {"involvedObject",
       {{"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"namespace", options_.leader_election_namespace},
        {"name", options_.leader_election_id}}},
      {"reason", reason},
      {"message", message},
      {"type", "Warning"},
      {"count", 1},
      {"firstTimestamp", stamp},
      {"lastTimestamp", stamp},
      {"source", {{"component", "singleton-operator"}, {"host", options_.identity}}},
      {"reportingComponent", "singleton-operator"},
      {"reportingInstance", options_.identity},
  };
  kube::Client client(transport_);
  if (auto created = client.create(kube::kEvents, options_.leader_election_namespace, event); !created.ok()) {
    logger().warn("cannot record event", {.err = created.error().describe(), .values = {{"reason", reason}}});
  }
}

void Manager::onStartedLeading(fencing::FencingToken token, std::stop_token stop) {
  // Before the gate opens: a term that workload Leases already record (or exceed) is raised above them.
  const std::optional<fencing::FencingToken> term = termAboveRecorded(token, stop);
  if (!term) return;
  gate_.open(*term, kube::revisionOf(elector_->observedVersion()).value_or(0));
  // The gate shuts by itself at the elector's deadline (LeaderGate::mayWrite); this closes it on any other end of
  // the term (a rival's write seen, a stop) at the moment the elector requests the stop, before the workers drain.
  std::stop_callback close_gate(stop, [this] {
    gate_.close();
    stopping_since_ = clock_.now().time_since_epoch().count();
  });
  master_status_.set(1);
  terms_started_.fetch_add(1);
  logger().info("started leading", {.values = {{"identity", options_.identity}, {"term", term->value()}}});
  controller_->runWorkers(gate_, stop);
  stopping_since_ = 0;
  logger().info("workers stopped", {.values = {{"term", term->value()}}});
}

void Manager::onStoppedLeading() {
  gate_.close();
  master_status_.set(0);
}

controller::HttpServer::Response Manager::healthz() const {
  if (auto s = elector_->healthCheck(kElectorHealthTolerance); !s.ok()) return {500, s.error().message + "\n"};
  // A term's workers get their requests cancelled when it ends; still running long after means a wedged worker.
  if (const std::int64_t since = stopping_since_.load(); since != 0) {
    const auto waited =
        std::chrono::duration_cast<util::Millis>(clock_.now().time_since_epoch() - util::MonoTime::duration(since));
    if (waited > options_.lease_duration + kElectorHealthTolerance) {
      return {500,
              "the workers of the last leadership term have not stopped for " + util::formatDuration(waited) + "\n"};
    }
  }
  return {200, "ok\n"};
}

controller::HttpServer::Response Manager::readyz() const {
  if (!controller_->synced()) return {503, "informers have not synced\n"};
  return {200, "ok\n"};
}

util::Status Manager::startServers() {
  if (options_.health_probe_bind_address != kDisabledAddress) {
    health_server_.handle("/healthz", [this](const controller::HttpServer::Request&) { return healthz(); });
    health_server_.handle("/readyz", [this](const controller::HttpServer::Request&) { return readyz(); });
    if (auto s = health_server_.start(options_.health_probe_bind_address); !s.ok()) return s;
    health_port_ = health_server_.port();
  }
  if (options_.metrics_bind_address != kDisabledAddress) {
    metrics_server_.handle("/metrics", [this](const controller::HttpServer::Request&) {
      return controller::HttpServer::Response{200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8"};
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
  Outcome outcome = Outcome::kStopped;
  while (!stop.stop_requested()) {
    logger().info("campaigning", {.values = {{"identity", options_.identity},
                                             {"lease", leaseName()},
                                             {"lease_duration", util::formatDuration(options_.lease_duration)}}});
    const util::MonoTime campaign_start = clock_.now();
    // Returns after the workers have finished and (on a requested stop) the Lease has been released.
    const auto result = elector_->run(stop);
    if (result == election::LeaderElector::Outcome::kIdentityConflict) {
      logger().error(
          "another process writes the operator's Lease under this replica's identity; each replica needs "
          "its own --identity (by default $POD_NAME, else <host name>_<random>)",
          {.values = {{"lease", leaseName()}, {"identity", options_.identity}}});
      outcome = Outcome::kIdentityConflict;
      break;
    }
    if (result == election::LeaderElector::Outcome::kStopped) break;
    // Lost the Lease: the gate shut at the elector's deadline, the workers have stopped and the term's queue state
    // is gone; the informers kept running. Campaign again (issue 9: losing leadership is normal).
    logger().warn("lost leadership; campaigning again", {.values = {{"lease", leaseName()}}});
    // The elector paces its own attempts; this only keeps a term that ends at once from looping hot.
    clock_.sleepUntil(campaign_start + options_.retry_period, stop);
  }

  informers.request_stop();
  informers.join();
  metrics_server_.stop();
  health_server_.stop();
  if (outcome == Outcome::kStopped) logger().info("stopped");
  return outcome;
}

}  // namespace singleton::op
