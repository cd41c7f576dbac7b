// SingletonWorkload decoding: any JSON decodes to a Workload or a clean error (the schema is the first line of
// defence; this is the second, for objects written before a schema change or by a broken client).
#include <cstdint>

#include <nlohmann/json.hpp>

#include "operator/workload/workload.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto object = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return 0;
  (void)singleton::op::Workload::fromJson(object);
  return 0;
}
