// The downstream half of fencing: a store (or anything with side effects) admits an operation only if its token is
// at least the highest it has seen. A paused old leader, woken after a new leader wrote, carries a lower token and is
// refused — however confident it is that it still leads.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "fencing/token.h"
#include "util/result.h"

namespace singleton::fencing {

class Guard {
 public:
  explicit Guard(FencingToken highest_seen = FencingToken(-1)) : highest_(highest_seen.value()) {}

  // Accepts `token` if it is >= the highest seen (raising the mark), else a kConflict error naming both tokens.
  // Thread-safe and lock-free: concurrent admits of different tokens leave the highest as the mark.
  util::Status admit(FencingToken token);
  FencingToken highest() const { return FencingToken(highest_.load()); }

 private:
  std::atomic<std::int64_t> highest_;
};

// One guard per resource key (a table, a queue, a shard), for stores that fence per resource.
class KeyedGuard {
 public:
  util::Status admit(const std::string& key, FencingToken token);
  FencingToken highest(const std::string& key) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::int64_t> highest_;
};

}  // namespace singleton::fencing
