#include "election/identity.h"

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <random>

namespace singleton::election {

std::string uniqueIdentity() {
  std::array<char, 256> host{};
  std::string name = ::gethostname(host.data(), host.size() - 1) == 0 ? std::string(host.data()) : "";
  if (name.empty()) name = "unknown";
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string suffix;
  for (int i = 0; i < 4; ++i) {
    const unsigned int r = random();
    for (int j = 0; j < 4; ++j) suffix.push_back(kHex[(r >> (4 * j)) & 0xf]);
  }
  return name + "_" + suffix;
}

std::string defaultIdentity() {
  const char* pod = std::getenv("POD_NAME");  // NOLINT(concurrency-mt-unsafe): read at start-up
  if (pod != nullptr && *pod != '\0') return pod;
  return uniqueIdentity();
}

}  // namespace singleton::election
