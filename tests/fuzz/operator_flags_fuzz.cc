// The operator's command line: any arguments give Options or one readable line, never a crash.
// Input: arguments separated by NUL bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "operator/app/options.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args(1);  // without the program name, as main() passes them
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.emplace_back();
    } else {
      args.back().push_back(static_cast<char>(data[i]));
    }
  }
  singleton::op::Environment env;
  env.hostname = "fuzz-host";
  env.instance_suffix = "abcde";
  auto options = singleton::op::parseOptions(args, env);
  if (!options.ok() && (options.error().message.empty() || options.error().message.find('\n') != std::string::npos))
    __builtin_trap();
  return 0;
}
