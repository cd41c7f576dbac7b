// A fencing token: the Lease's leaseTransitions at the time a leader acquired it. Strictly increasing across
// leaders, so a store that remembers the highest token it has seen can refuse a leader that no longer is one.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace singleton::fencing {

class FencingToken {
 public:
  constexpr FencingToken() = default;
  constexpr explicit FencingToken(std::int64_t value) : value_(value) {}
  constexpr std::int64_t value() const { return value_; }
  constexpr auto operator<=>(const FencingToken&) const = default;
  std::string str() const { return std::to_string(value_); }

 private:
  std::int64_t value_ = 0;
};

}  // namespace singleton::fencing
