// kubeconfig YAML: any text parses to a config or one readable error, never an exception or a crash.
#include <cstdint>
#include <string>

#include "kube/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = singleton::kube::parseKubeconfig(text, "", "/nonexistent", "fuzz");
  if (!config.ok() && config.error().message.empty()) __builtin_trap();
  return 0;
}
