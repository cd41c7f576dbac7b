#include "election/lease_lock.h"

#include "watch/reflector.h"

namespace singleton::election {
namespace {

VersionedRecord versioned(const kube::Lease& lease) {
  return VersionedRecord{LeaseLock::toRecord(lease.spec), lease.resource_version};
}

// Turns the reflector's view of a one-object collection into "the record changed" calls.
class RecordWatchHandler final : public watch::Handler {
 public:
  RecordWatchHandler(std::string name, std::function<void(const RecordState&)> on_change)
      : name_(std::move(name)), on_change_(std::move(on_change)) {}

  void onReplace(std::vector<nlohmann::json> objects, const std::string& resource_version) override {
    for (const auto& object : objects) {
      if (object.value("/metadata/name"_json_pointer, std::string()) == name_) return deliver(object);
    }
    // Absent as of the list: a create of ours answered before the list was served is newer than this.
    on_change_(RecordState::absent(resource_version));
  }
  void onEvent(const watch::Event& event) override {
    if (event.type == watch::EventType::kDeleted) {
      // A DELETED event carries the deletion's resourceVersion.
      return on_change_(
          RecordState::absent(event.object.value("/metadata/resourceVersion"_json_pointer, std::string())));
    }
    deliver(event.object);
  }

 private:
  void deliver(const nlohmann::json& object) {
    auto lease = kube::leaseFromJson(object);
    if (lease.ok()) on_change_(RecordState::of(versioned(*lease)));
  }
  std::string name_;
  std::function<void(const RecordState&)> on_change_;
};

}  // namespace

LeaseLock::LeaseLock(std::shared_ptr<kube::Transport> transport, LeaseLockOptions options, const util::Clock& clock)
    : transport_(std::move(transport)), options_(std::move(options)), clock_(clock) {}

LeaderElectionRecord LeaseLock::toRecord(const kube::LeaseSpec& spec) {
  LeaderElectionRecord r;
  r.holder_identity = spec.holder_identity.value_or("");
  r.lease_duration_seconds = spec.lease_duration_seconds.value_or(0);
  r.acquire_time = spec.acquire_time;
  r.renew_time = spec.renew_time;
  r.leader_transitions = spec.lease_transitions.value_or(0);
  return r;
}

kube::LeaseSpec LeaseLock::toSpec(const LeaderElectionRecord& record) {
  kube::LeaseSpec s;
  // client-go writes an empty holder on release; keep that shape for Go peers.
  s.holder_identity = record.holder_identity;
  s.lease_duration_seconds = record.lease_duration_seconds;
  s.acquire_time = record.acquire_time;
  s.renew_time = record.renew_time;
  s.lease_transitions = record.leader_transitions;
  return s;
}

kube::Client LeaseLock::clientWithTimeout(util::Millis timeout) const {
  kube::ClientOptions client_options;
  client_options.request_timeout = timeout;
  return kube::Client(transport_, client_options);
}

util::Result<VersionedRecord> LeaseLock::get(util::Millis timeout) {
  auto lease = clientWithTimeout(timeout).getLease(options_.ns, options_.name);
  if (!lease.ok()) return std::move(lease).takeError();
  std::lock_guard guard(mutex_);
  last_raw_ = lease->raw;
  return versioned(*lease);
}

util::Result<VersionedRecord> LeaseLock::create(const LeaderElectionRecord& record, util::Millis timeout) {
  kube::Lease lease;
  lease.name = options_.name;
  lease.ns = options_.ns;
  lease.spec = toSpec(record);
  lease.raw = {{"apiVersion", "coordination.k8s.io/v1"}, {"kind", "Lease"}, {"metadata", options_.create_metadata}};
  auto created = clientWithTimeout(timeout).createLease(lease);
  if (!created.ok()) return std::move(created).takeError();
  std::lock_guard guard(mutex_);
  last_raw_ = created->raw;
  return versioned(*created);
}

util::Result<VersionedRecord> LeaseLock::update(const std::string& expected_version, const LeaderElectionRecord& record,
                                                util::Millis timeout) {
  kube::Lease lease;
  lease.name = options_.name;
  lease.ns = options_.ns;
  lease.resource_version = expected_version;
  lease.spec = toSpec(record);
  {
    std::lock_guard guard(mutex_);
    if (last_raw_.is_object()) lease.raw = last_raw_;
  }
  auto updated = clientWithTimeout(timeout).updateLease(lease);
  if (!updated.ok()) return std::move(updated).takeError();
  std::lock_guard guard(mutex_);
  last_raw_ = updated->raw;
  return versioned(*updated);
}

util::Status LeaseLock::watch(const std::function<void(const RecordState&)>& on_change, std::stop_token stop) {
  kube::ClientOptions client_options;
  kube::Client client(transport_, client_options);
  RecordWatchHandler handler(options_.name, on_change);
  watch::ReflectorOptions reflector_options;
  reflector_options.ns = options_.ns;
  reflector_options.field_selector = "metadata.name=" + options_.name;
  // Leases change every RetryPeriod; a shorter server timeout only adds reconnects.
  reflector_options.watch_timeout = std::chrono::seconds(300);
  watch::Reflector reflector(client, kube::kLeases, reflector_options, handler, clock_);
  reflector.run(stop);
  return {};
}

}  // namespace singleton::election
