// Pod IPs from 10.244.0.0/16, unique among the pods this process can see. Nothing routes to them; they exist so
// that Endpoints and anything reading status.podIP see distinct, plausible addresses.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

namespace singleton::sim {

class IpPool {
 public:
  // The address already given to pod `uid`, or a free one (remembered for it); "" when all are taken.
  std::string assign(const std::string& uid);
  // An address seen in some pod's status (ours or not): never hand it out.
  void markUsed(const std::string& ip);
  // Pod `uid` with address `ip` (may be "") is gone.
  void release(const std::string& uid, const std::string& ip);
  std::size_t used() const;

 private:
  static std::string format(std::uint32_t index);
  static bool parse(const std::string& ip, std::uint32_t& index);

  mutable std::mutex mutex_;
  std::set<std::uint32_t> used_;                 // offsets into 10.244.0.0/16
  std::map<std::string, std::uint32_t> by_uid_;  // assigned by us
  std::uint32_t next_ = 1;
};

}  // namespace singleton::sim
