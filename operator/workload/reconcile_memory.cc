#include "operator/workload/reconcile_memory.h"

#include <algorithm>

namespace singleton::op {

ReconcilerMemory::LabelWrites ReconcilerMemory::labelWrites(const std::string& key) const {
  std::lock_guard lock(mutex_);
  LabelWrites writes;
  if (const auto it = label_writes_.find(key); it != label_writes_.end()) writes.written_at = it->second;
  writes.unconfirmed = unconfirmed_.contains(key);
  return writes;
}

void ReconcilerMemory::noteLabelWrite(const std::string& key, std::uint64_t revision) {
  std::lock_guard lock(mutex_);
  std::uint64_t& last = label_writes_[key];
  last = std::max(last, revision);
}

void ReconcilerMemory::noteUnconfirmed(const std::string& key) {
  std::lock_guard lock(mutex_);
  unconfirmed_.insert(key);
}

void ReconcilerMemory::noteLabelsConfirmed(const std::string& key, std::uint64_t revision) {
  std::lock_guard lock(mutex_);
  unconfirmed_.erase(key);
  // A write of unknown outcome that was applied before these reads is at or below `revision`: a cache that is past
  // it shows it.
  std::uint64_t& last = label_writes_[key];
  last = std::max(last, revision);
}

void ReconcilerMemory::noteTokenSeen(const std::string& key, std::optional<long long> lease_token) {
  std::lock_guard lock(mutex_);
  // The Lease's token outlives the Lease in our memory (a deleted Lease is re-created above it).
  TokenMemory& memory = tokens_seen_[key];
  memory.forgotten.reset();
  if (lease_token) memory.token = std::max(memory.token, *lease_token);
}

long long ReconcilerMemory::highestToken(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto it = tokens_seen_.find(key);
  return it == tokens_seen_.end() ? -1 : it->second.token;
}

void ReconcilerMemory::noteFailoverStart(const std::string& key, util::MonoTime since, long long token) {
  std::lock_guard lock(mutex_);
  failover_started_.try_emplace(key, FailoverStart{since, token});
}

std::optional<ReconcilerMemory::FailoverStart> ReconcilerMemory::takeFailoverStart(const std::string& key) {
  std::lock_guard lock(mutex_);
  const auto it = failover_started_.find(key);
  if (it == failover_started_.end()) return std::nullopt;
  const FailoverStart start = it->second;
  failover_started_.erase(it);
  return start;
}

void ReconcilerMemory::noteHandoffStart(const std::string& key, const HandoffStart& start) {
  std::lock_guard lock(mutex_);
  handoff_started_[key] = start;
}

ReconcilerMemory::HandoffStart ReconcilerMemory::handoffStart(const std::string& key, const HandoffStart& first_sight) {
  std::lock_guard lock(mutex_);
  auto it = handoff_started_.find(key);
  if (it == handoff_started_.end() || it->second.token != first_sight.token) {
    it = handoff_started_.insert_or_assign(key, first_sight).first;
  }
  return it->second;
}

void ReconcilerMemory::forgetHandoff(const std::string& key) {
  std::lock_guard lock(mutex_);
  handoff_started_.erase(key);
}

void ReconcilerMemory::forgetWorkload(const std::string& key, util::MonoTime now) {
  std::lock_guard lock(mutex_);
  failover_started_.erase(key);
  handoff_started_.erase(key);
  label_writes_.erase(key);
  unconfirmed_.erase(key);
  if (const auto it = tokens_seen_.find(key); it != tokens_seen_.end() && !it->second.forgotten) {
    it->second.forgotten = now;
  }
  std::erase_if(tokens_seen_, [&](const auto& entry) {
    return entry.second.forgotten && now - *entry.second.forgotten >= kTokenMemory;
  });
}

void ReconcilerMemory::endTerm() {
  std::lock_guard lock(mutex_);
  failover_started_.clear();
  // The next term measures a pending hand-off from its own first sight of it.
  handoff_started_.clear();
  label_writes_.clear();
}

}  // namespace singleton::op
