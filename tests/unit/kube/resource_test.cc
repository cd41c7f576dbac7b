#include "kube/resource.h"

#include <gtest/gtest.h>

namespace singleton::kube {
namespace {

TEST(UrlEncode, KeepsUnreservedAndEscapesTheRest) {
  EXPECT_EQ(urlEncode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
  EXPECT_EQ(urlEncode("app=web,tier in (a,b)"), "app%3Dweb%2Ctier%20in%20%28a%2Cb%29");
  EXPECT_EQ(urlEncode("a/b?c&d#e%"), "a%2Fb%3Fc%26d%23e%25");
  EXPECT_EQ(urlEncode("\xC3\xA9"), "%C3%A9");  // UTF-8 bytes, upper-case hex
  EXPECT_EQ(urlEncode(""), "");
}

TEST(ResourcePaths, CoreGroup) {
  EXPECT_EQ(collectionPath(kPods, "default"), "/api/v1/namespaces/default/pods");
  EXPECT_EQ(collectionPath(kPods, ""), "/api/v1/pods");
  EXPECT_EQ(objectPath(kPods, "kube-system", "coredns-1"), "/api/v1/namespaces/kube-system/pods/coredns-1");
  EXPECT_EQ(objectPath(kPods, "ns", "p", "status"), "/api/v1/namespaces/ns/pods/p/status");
}

TEST(ResourcePaths, NamedGroup) {
  EXPECT_EQ(collectionPath(kLeases, "default"), "/apis/coordination.k8s.io/v1/namespaces/default/leases");
  EXPECT_EQ(objectPath(kLeases, "default", "my-lock"),
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/my-lock");
  const Resource custom{"example.com", "v1alpha1", "singletons", true};
  EXPECT_EQ(objectPath(custom, "a", "b", "status"), "/apis/example.com/v1alpha1/namespaces/a/singletons/b/status");
}

TEST(ResourcePaths, ClusterScopedIgnoresNamespace) {
  EXPECT_EQ(collectionPath(kNodes, "default"), "/api/v1/nodes");
  EXPECT_EQ(objectPath(kNamespaces, "ignored", "kube-system"), "/api/v1/namespaces/kube-system");
}

TEST(ResourcePaths, NamesAreEncoded) {
  EXPECT_EQ(objectPath(kLeases, "n s", "a/b"), "/apis/coordination.k8s.io/v1/namespaces/n%20s/leases/a%2Fb");
}

}  // namespace
}  // namespace singleton::kube
