// Which REST collection an object lives in, and the URL paths built from it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace singleton::kube {

struct Resource {
  std::string group;    // "" for the core group
  std::string version;  // "v1"
  std::string plural;   // "pods"
  bool namespaced = true;
};

inline const Resource kPods{"", "v1", "pods", true};
inline const Resource kServices{"", "v1", "services", true};
inline const Resource kEvents{"", "v1", "events", true};
inline const Resource kNodes{"", "v1", "nodes", false};
inline const Resource kNamespaces{"", "v1", "namespaces", false};
inline const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};

// A resourceVersion as the etcd revision it is in practice (one counter for every object of a cluster, growing with
// each write), or nullopt when it is not a plain decimal number. The API calls resourceVersions opaque, so callers
// use this only to skip work, with the safe path for nullopt.
std::optional<std::uint64_t> revisionOf(std::string_view resource_version);

// Percent-encodes a query or path component.
std::string urlEncode(const std::string& text);

// "/api/v1/namespaces/NS/pods", or "/api/v1/pods" across all namespaces when `ns` is empty.
std::string collectionPath(const Resource& resource, const std::string& ns);
// "/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME[/SUBRESOURCE]".
std::string objectPath(const Resource& resource, const std::string& ns, const std::string& name,
                       const std::string& subresource = "");

}  // namespace singleton::kube
