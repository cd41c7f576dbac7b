#include <gtest/gtest.h>

#include "kube/config.h"
#include "tests/unit/kube/test_files.h"

namespace singleton::kube {
namespace {

using testing::ScopedEnv;
using testing::TempDir;

const std::string kCaPem = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";

class InClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    paths_.token = dir_.write("sa/token", "token-1\n");
    paths_.ca = dir_.write("sa/ca.crt", kCaPem);
    paths_.namespace_file = dir_.write("sa/namespace", "team-b");
    env_.set("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    env_.set("KUBERNETES_SERVICE_PORT", "443");
  }

  TempDir dir_;
  ScopedEnv env_;
  InClusterPaths paths_;
};

TEST_F(InClusterTest, ReadsEnvironmentAndServiceAccountFiles) {
  auto config = loadInCluster(paths_);
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->ca_origin, "file " + paths_.ca);
  EXPECT_FALSE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->default_namespace, "team-b");
  EXPECT_EQ(config->origin, "in-cluster");
  ASSERT_TRUE(config->token);
  EXPECT_EQ(config->token->token().value(), "token-1");
}

TEST_F(InClusterTest, Ipv6HostIsBracketed) {
  env_.set("KUBERNETES_SERVICE_HOST", "fd00:10:96::1");
  env_.set("KUBERNETES_SERVICE_PORT", "6443");
  auto config = loadInCluster(paths_);
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "https://[fd00:10:96::1]:6443");
}

TEST_F(InClusterTest, TokenRotationIsPickedUp) {
  auto config = loadInCluster(paths_);
  ASSERT_TRUE(config.ok());
  dir_.write("sa/token", "token-2-which-is-longer\n");
  EXPECT_EQ(config->token->token().value(), "token-2-which-is-longer");
}

TEST_F(InClusterTest, MissingNamespaceFileMeansDefault) {
  paths_.namespace_file = dir_.path() + "/none";
  auto config = loadInCluster(paths_);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->default_namespace, "default");
}

TEST_F(InClusterTest, MissingEnvironment) {
  env_.set("KUBERNETES_SERVICE_PORT", std::nullopt);
  auto config = loadInCluster(paths_);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(config.error().message,
            "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a "
            "pod?)");
}

TEST_F(InClusterTest, MissingOrEmptyFilesNameTheFile) {
  InClusterPaths paths = paths_;
  paths.token = dir_.path() + "/sa/nope";
  auto config = loadInCluster(paths);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            "in-cluster config: service-account token: bearer token: " + paths.token + ": No such file or directory");

  paths = paths_;
  paths.token = dir_.write("sa/empty", "\n");
  config = loadInCluster(paths);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            "in-cluster config: service-account token: bearer token: " + paths.token + ": empty token file");

  paths = paths_;
  paths.ca = dir_.path() + "/sa/no-ca";
  config = loadInCluster(paths);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            "in-cluster config: service-account CA: " + paths.ca + ": No such file or directory");

  paths = paths_;
  paths.ca = dir_.write("sa/garbage", "not a certificate");
  config = loadInCluster(paths);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            "in-cluster config: service-account CA: " + paths.ca + ": not a PEM certificate bundle");
}

}  // namespace
}  // namespace singleton::kube
