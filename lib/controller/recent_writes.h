// Read-your-writes over the informer caches (client-go calls this a mutation cache). After a write, the cache shows
// the old object until the watch event arrives; a reconcile that runs meanwhile (another event of the same workload)
// would act on the old version: repeat the write, or fail a compare-and-swap and spin. So the reconciler remembers
// what it wrote, and uses it for as long as the cache still shows the version that the write replaced.
//
// Safety never rests on this: the Lease is written by compare-and-swap and promotions re-read the API. It saves
// redundant writes and conflicts.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "util/clock.h"

namespace singleton::controller {

class RecentWrites {
 public:
  explicit RecentWrites(const util::Clock& clock, util::Millis ttl = util::Millis(60'000));

  // `written` is the object as the API returned it after a write made on top of the version `base_version` ("" when
  // the object did not exist, e.g. a create).
  void record(const std::string& key, const std::string& base_version, nlohmann::json written);
  // The cache's object, or our write when the cache still shows the version the write replaced.
  std::optional<nlohmann::json> resolve(const std::string& key, std::optional<nlohmann::json> cached);
  // Drops every entry whose key starts with `prefix` (a workload that went away).
  void forgetPrefix(const std::string& prefix);
  std::size_t size() const;

 private:
  struct Entry {
    std::string base_version;  // what the cache showed before our first unobserved write
    nlohmann::json written;
    util::MonoTime at;
  };
  void pruneLocked(util::MonoTime now);

  const util::Clock& clock_;
  util::Millis ttl_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  util::MonoTime last_prune_{};
};

}  // namespace singleton::controller
