// Watch stream bytes at any chunk boundaries: the line splitter yields the same lines however the stream is cut, and
// every line goes through what the reflector does with it (JSON event, its object decoded as a Lease).
// Input: byte 0 picks the chunk sizes; the rest is the stream.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/lease.h"
#include "watch/line_splitter.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned seed = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<std::string> whole, chunked;
  singleton::watch::LineSplitter one, many;
  one.feed(stream, [&](std::string_view line) { whole.emplace_back(line); });
  std::size_t at = 0, step = 1;
  while (at < stream.size()) {
    step = (step * 31 + seed) % 17 + 1;
    const auto piece = stream.substr(at, step);
    many.feed(piece, [&](std::string_view line) { chunked.emplace_back(line); });
    at += piece.size();
  }
  if (whole != chunked || one.pending() != many.pending()) __builtin_trap();

  for (const auto& line : whole) {
    const auto event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!event.is_object()) continue;
    const auto object = event.find("object");
    if (object == event.end() || !object->is_object()) continue;
    (void)singleton::kube::leaseFromJson(*object);
  }
  return 0;
}
