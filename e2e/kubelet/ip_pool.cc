#include "ip_pool.h"

#include <charconv>

namespace singleton::sim {
namespace {

constexpr std::uint32_t kSize = 1u << 16;

// .0 and .255 in the last octet look like network and broadcast addresses to people reading them; skip them.
bool usable(std::uint32_t index) { return (index & 0xff) != 0 && (index & 0xff) != 0xff; }

}  // namespace

std::string IpPool::format(std::uint32_t index) {
  return "10.244." + std::to_string(index >> 8) + "." + std::to_string(index & 0xff);
}

bool IpPool::parse(const std::string& ip, std::uint32_t& index) {
  constexpr std::string_view prefix = "10.244.";
  if (!ip.starts_with(prefix)) return false;
  const char* p = ip.data() + prefix.size();
  const char* end = ip.data() + ip.size();
  unsigned third = 0, fourth = 0;
  auto [after_third, ec1] = std::from_chars(p, end, third);
  if (ec1 != std::errc() || after_third == end || *after_third != '.' || third > 255) return false;
  auto [after_fourth, ec2] = std::from_chars(after_third + 1, end, fourth);
  if (ec2 != std::errc() || after_fourth != end || fourth > 255) return false;
  index = (third << 8) | fourth;
  return true;
}

std::string IpPool::assign(const std::string& uid) {
  std::lock_guard lock(mutex_);
  if (const auto it = by_uid_.find(uid); it != by_uid_.end()) return format(it->second);
  for (std::uint32_t tried = 0; tried < kSize; ++tried) {
    const std::uint32_t candidate = next_;
    next_ = (next_ + 1) % kSize;
    if (!usable(candidate) || used_.contains(candidate)) continue;
    used_.insert(candidate);
    by_uid_[uid] = candidate;
    return format(candidate);
  }
  return "";
}

void IpPool::markUsed(const std::string& ip) {
  std::uint32_t index = 0;
  if (!parse(ip, index)) return;
  std::lock_guard lock(mutex_);
  used_.insert(index);
}

void IpPool::release(const std::string& uid, const std::string& ip) {
  std::lock_guard lock(mutex_);
  if (const auto it = by_uid_.find(uid); it != by_uid_.end()) {
    used_.erase(it->second);
    by_uid_.erase(it);
  }
  std::uint32_t index = 0;
  if (parse(ip, index)) used_.erase(index);
}

std::size_t IpPool::used() const {
  std::lock_guard lock(mutex_);
  return used_.size();
}

}  // namespace singleton::sim
