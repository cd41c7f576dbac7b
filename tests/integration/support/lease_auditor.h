// An independent witness of fencing tokens per Lease: every term's token (spec.leaseTransitions) is above every token
// an earlier term of that Lease had, also across a Lease deleted by hand and created again.
//
// The auditor watches the Leases of one namespace (a watch::Reflector on its own thread and connection) and replays
// every version in the order the apiserver serialized them. A Lease is keyed by its name and, when it has an
// ownerReference (a SingletonWorkload's Lease), by its owner's UID: a workload deleted and created again is a new
// object whose tokens may start again (docs/api.md), while a deleted Lease of the same owner changes nothing. Per key:
//   - a version whose holder and token equal the last term's is a renewal (also when the Lease was re-created with
//     them: the same term goes on);
//   - any other version with a holder is a new term (or a raised token) and must carry a token above every earlier
//     one of the key; one at or below is a violation.
// A version without a holder (released) is no term. (client-go's example creates a deleted Lease at token 0, by its
// design: a test that deletes a Lease it campaigns for must expect that.)
//
//   LeaseAuditor leases(transport, "my-namespace");
//   ASSERT_TRUE(leases.start());
//   ...
//   EXPECT_THAT(leases.violations(), ::testing::IsEmpty());
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kube/client.h"
#include "watch/reflector.h"

namespace singleton::testing {

class LeaseAuditor final : public watch::Handler {
 public:
  struct Figures {
    std::size_t leases = 0;                  // keys seen
    std::size_t terms = 0;                   // new terms (and raised tokens) checked
    std::size_t deletions = 0;               // Lease deletions seen
    std::size_t recreations = 0;             // a Lease seen again after its deletion (same key)
    std::size_t terms_after_recreation = 0;  // terms checked on a re-created Lease against the tokens before it
  };

  LeaseAuditor(std::shared_ptr<kube::Transport> transport, std::string ns);
  ~LeaseAuditor() override;  // stop()
  LeaseAuditor(const LeaseAuditor&) = delete;
  LeaseAuditor& operator=(const LeaseAuditor&) = delete;

  // Starts watching; true once the first list has been applied (false after `timeout`).
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void stop();

  std::vector<std::string> violations() const;
  Figures figures() const;

  // Called on the watch thread with every new version of a Lease (not deletions), after it was checked; set before
  // start(). Must be quick.
  void setListener(std::function<void(const nlohmann::json& lease)> listener) { listener_ = std::move(listener); }

  // watch::Handler, called on the watch thread.
  void onReplace(std::vector<nlohmann::json> objects, const std::string& resource_version) override;
  void onEvent(const watch::Event& event) override;

 private:
  struct Version {
    std::string name;
    std::string key;  // name, or name@owner-uid
    std::string uid;
    std::string holder;
    std::int64_t token = 0;
    std::string resource_version;
  };
  struct LeaseState {
    std::string uid;  // the live object's ("" after a deletion)
    std::string resource_version;
    std::string last_holder;
    std::int64_t last_token = -1;
    std::int64_t max_token = -1;
    bool deleted_since_last_term = false;
  };
  static Version versionOf(const nlohmann::json& lease);
  void apply(const Version& v);          // lock held
  void removed(const std::string& key);  // lock held

  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<watch::Reflector> reflector_;
  std::jthread thread_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool synced_ = false;
  std::map<std::string, LeaseState> leases_;
  std::vector<std::string> violations_;
  Figures figures_;
  std::function<void(const nlohmann::json&)> listener_;
};

}  // namespace singleton::testing
