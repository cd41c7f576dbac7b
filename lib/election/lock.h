// The resource an election is held on. The elector never touches a Lease directly: a Lock reads and writes a
// LeaderElectionRecord with compare-and-swap, and tells followers when it changes. The Kubernetes Lease is one
// implementation (LeaseLock); tests use an in-memory one.
#pragma once

#include <functional>
#include <optional>
#include <stop_token>
#include <string>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::election {

// The record exactly as client-go keeps it (its LeaderElectionRecord), so Go and C++ candidates interoperate.
struct LeaderElectionRecord {
  std::string holder_identity;  // "" when released
  int lease_duration_seconds = 0;
  std::optional<util::WallTime> acquire_time;
  std::optional<util::WallTime> renew_time;
  long long leader_transitions = 0;

  bool operator==(const LeaderElectionRecord&) const = default;
};

// A record with the version it was read at (the Lease's resourceVersion): the precondition for the next write.
struct VersionedRecord {
  LeaderElectionRecord record;
  std::string version;
};

// What a watch saw: the record at a version, or (no record) that there was none as of `version`: the list's
// resourceVersion, or the deletion's. The version orders an absence against records read or written directly, so a
// list answered before our own create is not taken for a deletion after it.
struct RecordState {
  std::optional<VersionedRecord> record;
  std::string version;  // record->version when there is one; "" when unknown

  static RecordState of(const VersionedRecord& record) { return {record, record.version}; }
  static RecordState absent(std::string as_of) { return {std::nullopt, std::move(as_of)}; }
};

class Lock {
 public:
  virtual ~Lock() = default;

  // kNotFound when the record does not exist yet.
  virtual util::Result<VersionedRecord> get(util::Millis timeout) = 0;
  // kAlreadyExists when someone created it first.
  virtual util::Result<VersionedRecord> create(const LeaderElectionRecord& record, util::Millis timeout) = 0;
  // Compare-and-swap: kConflict when the record is no longer at `expected_version`.
  virtual util::Result<VersionedRecord> update(const std::string& expected_version, const LeaderElectionRecord& record,
                                               util::Millis timeout) = 0;

  // Calls `on_change` with every new state of the record (none: deleted, or not there when listed) until `stop`;
  // blocks. Returns early (with an error) only if watching is impossible; transient failures are retried inside.
  virtual util::Status watch(const std::function<void(const RecordState&)>& on_change, std::stop_token stop) = 0;

  virtual std::string identity() const = 0;
  virtual std::string describe() const = 0;  // "namespace/name", for logs
};

}  // namespace singleton::election
