// The process shell: composes the transport, the controller, the operator's own leader election, the HTTP endpoints
// and the metrics, and runs them in the right order. Every replica runs the informers (warm caches for a fast
// takeover); only the leader runs the workers, and only while its WriteGate is open.
#pragma once

#include <atomic>
#include <memory>
#include <stop_token>

#include "election/leader_elector.h"
#include "election/lock.h"
#include "kube/transport.h"
#include "operator/controller.h"
#include "operator/http_server.h"
#include "operator/metrics.h"
#include "operator/options.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::op {

// The WriteGate of a replica's own election. Open from the moment it starts leading until leadership ends or the
// elector is asked to stop (whichever is first), so a reconcile still in flight when leadership goes makes no
// further write. Lock-free: reconcilers check it before every write.
class LeaderGate final : public WriteGate {
 public:
  bool mayWrite() const override { return leading_.load() && !stopped_.load(); }
  fencing::FencingToken term() const override { return fencing::FencingToken(term_.load()); }
  std::uint64_t leadingSince() const override { return leading_since_.load(); }

  // This replica leads under `term` (its Lease's fencing token) since `revision` (its Lease's resourceVersion, or 0).
  void open(fencing::FencingToken term, std::uint64_t revision = 0);
  // Leadership ended (lost, or handed back).
  void close() { leading_ = false; }
  // The elector is being stopped: no writes from now on, even before leadership formally ends.
  void shutdown() { stopped_ = true; }

 private:
  std::atomic<bool> leading_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<std::int64_t> term_{0};
  std::atomic<std::uint64_t> leading_since_{0};
};

// The health checks' tolerance beyond lease_duration before a leading elector counts as wedged.
inline constexpr util::Millis kElectorHealthTolerance{20'000};
inline constexpr const char* kMasterStatusMetric = "leader_election_master_status";

// Loads the cluster config (kube::loadDefault with --kubeconfig/--context) and builds the Boost.Beast transport (no I/O
// pool). Errors are one line (bad kubeconfig, unreadable TLS material).
util::Result<std::shared_ptr<kube::Transport>> connect(const Options& options);

struct ManagerDeps {
  std::shared_ptr<election::Lock> lock;  // null: a LeaseLock on the transport
  const util::Clock* clock = &util::systemClock();
};

class Manager {
 public:
  enum class Outcome { kStopped, kLostLeadership };

  // Builds everything without starting anything; fails on an invalid configuration.
  static util::Result<std::unique_ptr<Manager>> create(const Options& options,
                                                       const std::shared_ptr<kube::Transport>& transport,
                                                       const ManagerDeps& deps = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Serves the endpoints (an error if an address cannot be bound), starts the informers, and campaigns until `stop`
  // (the workers finish their in-flight reconciles, the Lease is released: kStopped) or this replica loses the
  // Lease (kLostLeadership: exit and be restarted, as controller-runtime does). Then stops the informers and the
  // endpoints. Call once.
  util::Result<Outcome> run(std::stop_token stop);

  // For tests and logs. The ports are 0 until run() has bound them, and when disabled.
  int healthPort() const { return health_port_.load(); }
  int metricsPort() const { return metrics_port_.load(); }
  Registry& metrics() { return metrics_; }
  const LeaderGate& gate() const { return gate_; }

 private:
  Manager(const Options& options, std::shared_ptr<kube::Transport> transport, const util::Clock& clock);
  void onStartedLeading(fencing::FencingToken token, std::stop_token stop);
  void onStoppedLeading();
  util::Status startServers();
  HttpServer::Response healthz() const;
  HttpServer::Response readyz() const;

  Options options_;
  std::shared_ptr<kube::Transport> transport_;
  const util::Clock& clock_;
  Registry metrics_;
  Gauge& master_status_;
  LeaderGate gate_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<election::LeaderElector> elector_;
  HttpServer health_server_{"health"};
  HttpServer metrics_server_{"metrics"};
  std::atomic<int> health_port_{0};
  std::atomic<int> metrics_port_{0};
};

}  // namespace singleton::op
