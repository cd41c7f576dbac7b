// Lease decoding: any JSON decodes to a Lease or a clean error, and what decodes survives a round trip.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "kube/lease.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto object = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return 0;
  auto lease = singleton::kube::leaseFromJson(object);
  if (!lease.ok()) return 0;
  auto again = singleton::kube::leaseFromJson(singleton::kube::leaseToJson(*lease));
  if (!again.ok() || !(again->spec == lease->spec) || again->name != lease->name) __builtin_trap();
  return 0;
}
