// The process shell: composes the transport, the controller, the operator's own leader election, the HTTP endpoints
// and the metrics, and runs them in the right order. Every replica runs the informers (warm caches for a fast
// takeover); only the leader runs the workers, and only while its WriteGate is open.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>

#include "controller/http_server.h"
#include "controller/metrics.h"
#include "election/leader_elector.h"
#include "election/lock.h"
#include "kube/transport.h"
#include "operator/app/options.h"
#include "operator/workload/controller.h"
#include "util/clock.h"
#include "util/result.h"

namespace singleton::op {

// The WriteGate of a replica's own election. Open from the moment it starts leading until the first of: its
// leadership's deadline passes on the monotonic clock, leadership ends, or the elector is asked to stop. Lock-free
// (but for the deadline's source): reconcilers check it before every write.
//
// The deadline is the elector's leadingUntil(): the start of its last successful renewal + renew_deadline, the very
// instant the elector gives up. No follower can acquire before that start + lease_duration on its own clock, and
// renew_deadline < lease_duration (minus the drift margin, docs/design.md "The write gate's deadline"), so no write
// passes the gate once another replica may lead. The monotonic clock keeps running while a process is stopped, so a
// process resumed after SIGSTOP finds the gate shut before its elector thread runs.
class LeaderGate final : public controller::WriteGate {
 public:
  // The instant until which this replica may lead; nullopt when it does not.
  using Deadline = std::function<std::optional<util::MonoTime>()>;

  LeaderGate() = default;  // no deadline: open() to close() (tests)
  LeaderGate(const util::Clock& clock, Deadline leading_until)
      : clock_(&clock), leading_until_(std::move(leading_until)) {}

  bool mayWrite() const override;
  fencing::FencingToken term() const override { return fencing::FencingToken(term_.load()); }
  std::uint64_t leadingSince() const override { return leading_since_.load(); }

  // This replica leads under `term` (its Lease's fencing token) since `revision` (its Lease's resourceVersion, or 0).
  void open(fencing::FencingToken term, std::uint64_t revision = 0);
  // Leadership ended (lost, or handed back).
  void close() { leading_ = false; }
  // The process is stopping: no writes from now on, even before leadership formally ends.
  void shutdown() { stopped_ = true; }

 private:
  const util::Clock* clock_ = nullptr;
  Deadline leading_until_;
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
  enum class Outcome {
    kStopped,           // `stop` was requested: exit 0
    kIdentityConflict,  // another process writes the Lease under our identity: a configuration error, exit 2
  };

  // Builds everything without starting anything; fails on an invalid configuration.
  static util::Result<std::unique_ptr<Manager>> create(const Options& options,
                                                       const std::shared_ptr<kube::Transport>& transport,
                                                       const ManagerDeps& deps = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Serves the endpoints (an error if an address cannot be bound), starts the informers, and campaigns until `stop`
  // (the workers finish their in-flight reconciles, the Lease is released: kStopped) or the elector finds another
  // process using our identity (kIdentityConflict). Losing the Lease is not an end: the term's workers stop (their
  // requests cancelled), its state is dropped, the informers stay warm, and the replica campaigns again. Then stops
  // the informers and the endpoints. Call once.
  util::Result<Outcome> run(std::stop_token stop);

  // For tests and logs. The ports are 0 until run() has bound them, and when disabled.
  int healthPort() const { return health_port_.load(); }
  int metricsPort() const { return metrics_port_.load(); }
  controller::Registry& metrics() { return metrics_; }
  const LeaderGate& gate() const { return gate_; }
  // Leadership terms this replica has started (its workers ran), for tests and logs.
  int termsStarted() const { return terms_started_.load(); }

 private:
  Manager(const Options& options, std::shared_ptr<kube::Transport> transport, const util::Clock& clock);
  void onStartedLeading(fencing::FencingToken token, std::stop_token stop);
  void onStoppedLeading();
  // Issue 7: a term at or below one recorded on a workload Lease (the operator's Lease was deleted and recreated)
  // would be fenced out by the reconciler's self-fencing. Raises this replica's token above it; retries every
  // retry_period until it succeeds or `stop`. nullopt when stopped.
  std::optional<fencing::FencingToken> termAboveRecorded(fencing::FencingToken token, std::stop_token stop);
  void recordLeaseWarning(const std::string& reason, const std::string& message);
  std::string leaseName() const { return options_.leader_election_namespace + "/" + options_.leader_election_id; }
  util::Status startServers();
  controller::HttpServer::Response healthz() const;
  controller::HttpServer::Response readyz() const;

  Options options_;
  std::shared_ptr<kube::Transport> transport_;
  const util::Clock& clock_;
  controller::Registry metrics_;
  controller::Gauge& master_status_;
  LeaderGate gate_;
  std::atomic<int> terms_started_{0};
  // Set while a term's workers run after its stop was requested (the clock's ticks), 0 otherwise: /healthz fails when
  // they do not stop (a wedged worker).
  std::atomic<std::int64_t> stopping_since_{0};
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<election::LeaderElector> elector_;
  controller::HttpServer health_server_{"health"};
  controller::HttpServer metrics_server_{"metrics"};
  std::atomic<int> health_port_{0};
  std::atomic<int> metrics_port_{0};
};

}  // namespace singleton::op
