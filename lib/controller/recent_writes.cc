#include "controller/recent_writes.h"

#include "kube/object.h"

namespace singleton::controller {

RecentWrites::RecentWrites(const util::Clock& clock, util::Millis ttl) : clock_(clock), ttl_(ttl) {}

void RecentWrites::record(const std::string& key, const std::string& base_version, nlohmann::json written) {
  const util::MonoTime now = clock_.now();
  std::lock_guard lock(mutex_);
  pruneLocked(now);
  std::string base = base_version;
  // A second write on top of our first, before the cache saw either: the cache still shows the first one's base.
  if (const auto it = entries_.find(key);
      it != entries_.end() && kube::metaString(it->second.written, "resourceVersion") == base_version) {
    base = it->second.base_version;
  }
  entries_[key] = Entry{std::move(base), std::move(written), now};
}

std::optional<nlohmann::json> RecentWrites::resolve(const std::string& key, std::optional<nlohmann::json> cached) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return cached;
  const std::string cached_version = cached ? kube::metaString(*cached, "resourceVersion") : "";
  if (cached_version == it->second.base_version && clock_.now() - it->second.at < ttl_) return it->second.written;
  // The cache has moved on (or our entry is too old to trust): from here the cache is the truth.
  entries_.erase(it);
  return cached;
}

void RecentWrites::forgetPrefix(const std::string& prefix) {
  std::lock_guard lock(mutex_);
  std::erase_if(entries_, [&](const auto& entry) { return entry.first.starts_with(prefix); });
}

std::size_t RecentWrites::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void RecentWrites::pruneLocked(util::MonoTime now) {
  // Entries of objects nobody reads again (the cache caught up, and no reconcile asked since) expire; scanning at
  // most once per ttl keeps this O(1) amortised.
  if (now - last_prune_ < ttl_) return;
  last_prune_ = now;
  std::erase_if(entries_, [&](const auto& entry) { return now - entry.second.at >= ttl_; });
}

}  // namespace singleton::controller
