// A Lock on a coordination.k8s.io/v1 Lease: reads and writes it with resourceVersion compare-and-swap (etcd decides
// who wins), and watches it so followers learn of a renewal or a release the moment it happens.
#pragma once

#include <memory>
#include <string>

#include "election/lock.h"
#include "kube/client.h"
#include "kube/transport.h"
#include "util/clock.h"

namespace singleton::election {

struct LeaseLockOptions {
  std::string ns;
  std::string name;
  std::string identity;
  // Labels and ownerReferences (as JSON) put on the Lease when this lock creates it.
  nlohmann::json create_metadata = nlohmann::json::object();
};

class LeaseLock final : public Lock {
 public:
  LeaseLock(std::shared_ptr<kube::Transport> transport, LeaseLockOptions options,
            const util::Clock& clock = util::systemClock());

  util::Result<VersionedRecord> get(util::Millis timeout) override;
  util::Result<VersionedRecord> create(const LeaderElectionRecord& record, util::Millis timeout) override;
  util::Result<VersionedRecord> update(const std::string& expected_version, const LeaderElectionRecord& record,
                                       util::Millis timeout) override;
  util::Status watch(const std::function<void(const RecordState&)>& on_change, std::stop_token stop) override;

  std::string identity() const override { return options_.identity; }
  std::string describe() const override { return options_.ns + "/" + options_.name; }

  static LeaderElectionRecord toRecord(const kube::LeaseSpec& spec);
  static kube::LeaseSpec toSpec(const LeaderElectionRecord& record);

 private:
  kube::Client clientWithTimeout(util::Millis timeout) const;

  std::shared_ptr<kube::Transport> transport_;
  LeaseLockOptions options_;
  const util::Clock& clock_;
  std::mutex mutex_;
  nlohmann::json last_raw_;  // the Lease as last read or written: updates keep its other fields
};

}  // namespace singleton::election
