#include "fencing/guard.h"

namespace singleton::fencing {
namespace {

util::Error stale(FencingToken token, std::int64_t highest) {
  util::Error e =
      util::makeError(util::ErrorCode::kConflict, "stale fencing token " + token.str() + ": a leader with token " +
                                                      std::to_string(highest) + " has already written");
  e.reason = "StaleFencingToken";
  return e;
}

}  // namespace

util::Status Guard::admit(FencingToken token) {
  std::int64_t seen = highest_.load();
  while (token.value() > seen) {
    if (highest_.compare_exchange_weak(seen, token.value())) return {};
  }
  if (token.value() < seen) return stale(token, seen);
  return {};
}

util::Status KeyedGuard::admit(const std::string& key, FencingToken token) {
  std::lock_guard guard(mutex_);
  auto [it, inserted] = highest_.try_emplace(key, token.value());
  if (inserted) return {};
  if (token.value() < it->second) return stale(token, it->second);
  it->second = token.value();
  return {};
}

FencingToken KeyedGuard::highest(const std::string& key) const {
  std::lock_guard guard(mutex_);
  auto it = highest_.find(key);
  return FencingToken(it == highest_.end() ? -1 : it->second);
}

}  // namespace singleton::fencing
