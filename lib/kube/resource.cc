#include "kube/resource.h"

#include <charconv>

namespace singleton::kube {
namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

std::string groupVersionPath(const Resource& resource) {
  if (resource.group.empty()) return "/api/" + resource.version;
  return "/apis/" + resource.group + "/" + resource.version;
}

}  // namespace

std::optional<std::uint64_t> revisionOf(std::string_view resource_version) {
  std::uint64_t revision = 0;
  const char* end = resource_version.data() + resource_version.size();
  const auto [at, ec] = std::from_chars(resource_version.data(), end, revision);
  if (resource_version.empty() || ec != std::errc() || at != end) return std::nullopt;
  return revision;
}

std::string urlEncode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0x0F];
    }
  }
  return out;
}

std::string collectionPath(const Resource& resource, const std::string& ns) {
  std::string path = groupVersionPath(resource);
  if (resource.namespaced && !ns.empty()) path += "/namespaces/" + urlEncode(ns);
  return path + "/" + resource.plural;
}

std::string objectPath(const Resource& resource, const std::string& ns, const std::string& name,
                       const std::string& subresource) {
  std::string path = collectionPath(resource, ns) + "/" + urlEncode(name);
  if (!subresource.empty()) path += "/" + subresource;
  return path;
}

}  // namespace singleton::kube
