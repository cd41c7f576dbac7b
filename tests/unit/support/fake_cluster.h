// An in-memory Kubernetes API behind kube::Transport, for the controller's unit tests: objects stored by collection,
// namespace and name; GET, LIST (label selectors), POST, PUT (resourceVersion compare-and-swap, status
// subresource), PATCH (merge patch and JSON patch with `test`), DELETE (uid preconditions, optional graceful pod
// deletion, cascading to dependents as garbage collection would); uids and resourceVersions assigned; watches
// (replayed from a history, then live). Faults: the Nth write fails, before or after it is applied.
//
// It also watches the safety invariants after every change, whoever made it: never two pods of one workload
// labelled leader, and a new leader incarnation always carries a higher fencing token than any before it.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/resource.h"
#include "kube/transport.h"
#include "util/clock.h"

namespace singleton::testing {

class FakeCluster final : public kube::Transport {
 public:
  using Json = nlohmann::json;

  explicit FakeCluster(const util::Clock& clock = util::systemClock()) : clock_(clock) {}

  util::Result<kube::HttpResponse> send(const kube::HttpRequest& request, std::stop_token stop = {}) override;
  util::Result<kube::HttpResponse> stream(const kube::HttpRequest& request, const kube::ChunkHandler& on_chunk,
                                          std::stop_token stop) override;
  std::string describe() const override { return "fake-cluster://"; }

  // Test-side access: not counted as writes, never failed; watches see the changes.
  Json put(const kube::Resource& resource, Json object);  // create or replace; assigns uid (if absent) and version
  std::optional<Json> get(const kube::Resource& resource, const std::string& ns, const std::string& name) const;
  std::vector<Json> list(const kube::Resource& resource, const std::string& ns = "") const;
  bool modify(const kube::Resource& resource, const std::string& ns, const std::string& name,
              const std::function<void(Json&)>& change);
  void erase(const kube::Resource& resource, const std::string& ns, const std::string& name);
  std::string resourceVersion() const;

  struct Write {
    std::string method;
    std::string path;
    int status = 0;
    std::string body;
  };
  std::vector<Write> writes() const;
  int writeCount() const;
  // The path (with query) of every GET: gets and lists.
  std::vector<std::string> reads() const;
  // Writes whose path contains `part` (e.g. "/pods/", "/leases/", "/events").
  int writeCount(const std::string& part) const;
  // Makes the nth write from now (1 = the next) answer `status`: not applied, or applied and then answered with
  // `status` (the answer was lost).
  void failWrite(int nth, int status = 500, bool after_apply = false);
  // Pod deletion sets deletionTimestamp (terminating) instead of removing the pod; erase() then removes it.
  void setGracefulPodDeletion(bool on) { graceful_pods_ = on; }

  std::vector<std::string> violations() const;
  void clearViolations();

 private:
  struct Target {
    std::string collection;  // "group/plural"
    std::string ns;
    std::string name;
    std::string subresource;
    std::map<std::string, std::string> query;
  };
  struct Change {
    long long version;
    std::string collection;
    std::string ns;
    std::string type;  // ADDED, MODIFIED, DELETED
    Json object;
  };
  using Answer = util::Result<kube::HttpResponse>;

  static std::optional<Target> parse(const std::string& path);
  static std::string collectionOf(const kube::Resource& resource) { return resource.group + "/" + resource.plural; }
  static bool matches(const std::string& selector, const Json& object);

  Answer handleLocked(const kube::HttpRequest& request, const Target& target);
  Answer createLocked(const Target& target, Json object);
  Answer updateLocked(const Target& target, Json object);
  Answer patchLocked(const Target& target, const kube::HttpRequest& request);
  Answer removeLocked(const Target& target, const std::string& body);
  Json listLocked(const Target& target) const;
  // What the apiserver we test on refuses (a 422) that the rest of the fake would accept: an empty string anywhere
  // in a custom resource (seen on the Debian-built 1.20). Also recorded as a violation.
  std::optional<kube::HttpResponse> refuseLocked(const std::string& collection, const Json& object);
  // Stores `object` (version bumped), appends to the history, checks invariants, wakes watches.
  Json commitLocked(const std::string& collection, const std::string& ns, Json object, const std::string& type);
  void removeCascadeLocked(const std::string& collection, const std::string& key);
  void checkInvariantsLocked();

  const util::Clock& clock_;
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  std::map<std::string, std::map<std::string, Json>> objects_;  // collection -> "ns/name" -> object
  std::vector<Change> history_;
  long long version_ = 100;
  long long uids_ = 0;
  std::vector<Write> writes_;
  std::vector<std::string> reads_;
  int writes_seen_ = 0;
  int fail_at_ = 0;
  int fail_status_ = 500;
  bool fail_after_apply_ = false;
  bool graceful_pods_ = false;
  std::vector<std::string> violations_;
  struct LeaderSeen {
    std::string uid;
    long long token = -1;
  };
  std::map<std::string, LeaderSeen> last_leader_;  // by "ns/workload"
};

}  // namespace singleton::testing
