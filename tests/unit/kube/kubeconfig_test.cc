#include <gtest/gtest.h>

#include "kube/config.h"
#include "tests/unit/kube/test_files.h"

namespace singleton::kube {
namespace {

using testing::ScopedEnv;
using testing::TempDir;
using util::ErrorCode;

// The kubeconfig layer checks that PEM is PEM; the transport parses it (see cpprest_transport_test).
const std::string kCaPem = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
const std::string kCertPem = "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n";
const std::string kKeyPem = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";

std::string base64(const std::string& text) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < text.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(text[i]) << 16) | (static_cast<unsigned char>(text[i + 1]) << 8) |
                       static_cast<unsigned char>(text[i + 2]);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], kAlphabet[v & 63]};
  }
  if (i + 1 == text.size()) {
    const unsigned v = static_cast<unsigned char>(text[i]) << 16;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == text.size()) {
    const unsigned v = (static_cast<unsigned char>(text[i]) << 16) | (static_cast<unsigned char>(text[i + 1]) << 8);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// A kubeconfig with one context per way of authenticating.
std::string goodKubeconfig() {
  return R"(apiVersion: v1
kind: Config
current-context: token-ctx
clusters:
- name: data-cluster
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: )" +
         base64(kCaPem) + R"(
- name: file-cluster
  cluster:
    server: https://[::1]:6443
    certificate-authority: pki/ca.crt
    tls-server-name: kubernetes.default
- name: insecure-cluster
  cluster:
    server: https://10.0.0.1
    insecure-skip-tls-verify: true
- name: plain-cluster
  cluster:
    server: http://127.0.0.1:8080
contexts:
- name: token-ctx
  context: {cluster: data-cluster, user: token-user, namespace: team-a}
- name: token-file-ctx
  context: {cluster: file-cluster, user: token-file-user}
- name: cert-data-ctx
  context: {cluster: data-cluster, user: cert-data-user}
- name: cert-file-ctx
  context: {cluster: insecure-cluster, user: cert-file-user}
- name: anonymous-ctx
  context: {cluster: plain-cluster}
users:
- name: token-user
  user:
    token: abc.def
- name: token-file-user
  user:
    tokenFile: secrets/token
- name: cert-data-user
  user:
    client-certificate-data: )" +
         base64(kCertPem) + R"(
    client-key-data: )" +
         base64(kKeyPem) + R"(
- name: cert-file-user
  user:
    client-certificate: /ABS/client.crt
    client-key: client.key
)";
}

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("kube/pki/ca.crt", kCaPem);
    dir_.write("kube/secrets/token", "file-token\n");
    dir_.write("kube/client.key", kKeyPem);
    const std::string cert = dir_.write("elsewhere/client.crt", kCertPem);
    std::string text = goodKubeconfig();
    text.replace(text.find("/ABS/client.crt"), 15, cert);
    path_ = dir_.write("kube/config", text);
  }

  util::Result<ClusterConfig> load(const std::string& context = "") { return loadKubeconfig({path_, context}); }

  // Loads `text` from a file and expects one error whose message is exactly "kubeconfig <file>: <expected>".
  void expectError(const std::string& text, const std::string& expected, const std::string& context = "") {
    const std::string file = dir_.write("bad/config", text);
    auto config = loadKubeconfig({file, context});
    ASSERT_FALSE(config.ok()) << "loaded: " << text;
    EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(config.error().message, "kubeconfig " + file + ": " + expected);
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(KubeconfigTest, CurrentContextWithTokenAndCaData) {
  auto config = load();
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "https://127.0.0.1:6443");  // trailing slash dropped
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_NE(config->ca_origin.find("clusters[0].cluster.certificate-authority-data"), std::string::npos);
  EXPECT_FALSE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->default_namespace, "team-a");
  ASSERT_TRUE(config->token);
  EXPECT_EQ(config->token->token().value(), "abc.def");
  EXPECT_TRUE(config->client_cert_pem.empty());
  EXPECT_EQ(config->origin, "kubeconfig " + path_ + " (context token-ctx)");
}

TEST_F(KubeconfigTest, ExplicitContextTokenFileAndRelativeCaFile) {
  auto config = load("token-file-ctx");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "https://[::1]:6443");
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->ca_origin, "file " + dir_.path() + "/kube/pki/ca.crt");
  EXPECT_EQ(config->tls_server_name, "kubernetes.default");
  EXPECT_EQ(config->default_namespace, "default");
  ASSERT_TRUE(config->token);
  EXPECT_EQ(config->token->token().value(), "file-token");
}

TEST_F(KubeconfigTest, ClientCertificateData) {
  auto config = load("cert-data-ctx");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->client_cert_pem, kCertPem);
  EXPECT_EQ(config->client_key_pem, kKeyPem);
  EXPECT_FALSE(config->token);
}

TEST_F(KubeconfigTest, ClientCertificateFilesAbsoluteAndRelative) {
  auto config = load("cert-file-ctx");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->client_cert_pem, kCertPem);
  EXPECT_EQ(config->client_key_pem, kKeyPem);
  EXPECT_TRUE(config->insecure_skip_tls_verify);
  EXPECT_TRUE(config->ca_pem.empty());
}

TEST_F(KubeconfigTest, ContextWithoutUserIsAnonymous) {
  auto config = load("anonymous-ctx");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "http://127.0.0.1:8080");
  EXPECT_FALSE(config->token);
  EXPECT_TRUE(config->client_cert_pem.empty());
}

TEST_F(KubeconfigTest, RelativePathsResolveAgainstTheKubeconfigDirectoryNotTheWorkingDirectory) {
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path("/");
  auto config = loadKubeconfig({path_, "token-file-ctx"});
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->ca_pem, kCaPem);
}

TEST_F(KubeconfigTest, ParseKubeconfigUsesBaseDir) {
  auto config = parseKubeconfig(goodKubeconfig(), "token-file-ctx", dir_.path() + "/kube", "test");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->origin, "test (context token-file-ctx)");
}

TEST_F(KubeconfigTest, Base64WithLineBreaksAndWithoutPadding) {
  std::string wrapped = base64(kCaPem);
  wrapped.insert(20, "\n      ");
  while (!wrapped.empty() && wrapped.back() == '=') wrapped.pop_back();
  const std::string text =
      "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
      "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
      "    certificate-authority-data: |\n      " +
      wrapped + "\n";
  auto config = parseKubeconfig(text, "", "", "kubeconfig x");
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->ca_pem, kCaPem);
}

TEST_F(KubeconfigTest, KubeconfigEnvTakesTheFirstExistingFile) {
  ScopedEnv env;
  env.set("KUBECONFIG", dir_.path() + "/missing:" + path_ + ":" + dir_.path() + "/also-missing");
  auto config = loadKubeconfig({});
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->origin, "kubeconfig " + path_ + " (context token-ctx)");

  env.set("KUBECONFIG", dir_.path() + "/missing::" + dir_.path() + "/gone");
  config = loadKubeconfig({});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            "$KUBECONFIG: none of its files exist: " + dir_.path() + "/missing, " + dir_.path() + "/gone");
}

TEST_F(KubeconfigTest, HomeKubeConfigIsTheFallback) {
  ScopedEnv env;
  env.set("KUBECONFIG", std::nullopt);
  env.set("HOME", dir_.path());
  std::filesystem::create_directories(dir_.path() + "/.kube");
  std::filesystem::copy_file(path_, dir_.path() + "/.kube/config");
  auto config = loadKubeconfig({"", "anonymous-ctx"});
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "http://127.0.0.1:8080");
}

TEST_F(KubeconfigTest, LoadDefaultPrefersKubeconfigThenInCluster) {
  ScopedEnv env;
  env.set("KUBECONFIG", path_);
  env.set("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  env.set("KUBERNETES_SERVICE_PORT", "443");
  auto config = loadDefault({});
  ASSERT_TRUE(config.ok()) << config.error().describe();
  EXPECT_EQ(config->server, "https://127.0.0.1:6443");

  // Without a kubeconfig in sight, the pod's environment wins (its token file is missing here, hence the error).
  env.set("KUBECONFIG", std::nullopt);
  config = loadDefault({});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message.rfind("in-cluster config: service-account token:", 0), 0u) << config.error().message;
}

TEST_F(KubeconfigTest, MissingFile) {
  auto config = loadKubeconfig({dir_.path() + "/nope", ""});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(config.error().message, "kubeconfig " + dir_.path() + "/nope: No such file or directory");
}

TEST_F(KubeconfigTest, MalformedFiles) {
  const std::string cluster = "clusters: [{name: k, cluster: {server: 'https://h'}}]\n";
  const std::string context = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n";
  const std::string preamble = context + cluster;

  expectError("", "empty file");
  expectError("key: [unclosed", "invalid YAML: end of sequence flow not found (line 1)");
  expectError("- just\n- a list\n", "not a kubeconfig (expected a YAML mapping at the top)");
  expectError(cluster + "contexts: [{name: c, context: {cluster: k}}]\n",
              "current-context is not set and no context was given");
  expectError(preamble + "users: [{name: u, user: {}}]\n", "context \"dev\" not found", "dev");
  expectError("current-context: c\ncontexts: [{name: c, context: {cluster: c1}}]\n" + cluster,
              "context \"c\": cluster \"c1\" not found");
  expectError(preamble, "context \"c\": user \"u\" not found");
  expectError("current-context: c\ncontexts: [{name: c, context: {user: u}}]\n",
              "contexts[0].context.cluster: missing");
  expectError("current-context: c\ncontexts: {c: 1}\n", "contexts: expected a list");
  expectError(context + "clusters: [{name: k, cluster: {certificate-authority: ca}}]\nusers: [{name: u}]\n",
              "clusters[0].cluster.server: missing");
  expectError(context + "clusters: [{name: k, cluster: {server: [a]}}]\n",
              "clusters[0].cluster.server: expected a string");
  expectError(context + "clusters: [{name: k, cluster: {server: 'ftp://h'}}]\n",
              "clusters[0].cluster.server: \"ftp://h\" is not an http(s) URL");
  expectError(context + "clusters: [{name: k, cluster: {server: 'https://h', certificate-authority-data: '!!'}}]\n",
              "clusters[0].cluster.certificate-authority-data: invalid base64");
  expectError(context + "clusters: [{name: k, cluster: {server: 'https://h', certificate-authority-data: " +
                  base64("hello") + "}}]\n",
              "clusters[0].cluster.certificate-authority-data: not PEM (expected a \"CERTIFICATE-----\" block)");
  expectError(context + "clusters: [{name: k, cluster: {server: 'https://h', certificate-authority: nope.crt}}]\n",
              "clusters[0].cluster.certificate-authority: cannot read " + dir_.path() +
                  "/bad/nope.crt: No such file or directory");
  expectError(context + "clusters: [{name: k, cluster: {server: 'https://h', insecure-skip-tls-verify: maybe}}]\n",
              "clusters[0].cluster.insecure-skip-tls-verify: expected true or false");
  expectError(context +
                  "clusters: [{name: k, cluster: {server: 'https://h', insecure-skip-tls-verify: true, "
                  "certificate-authority-data: " +
                  base64(kCaPem) + "}}]\n",
              "clusters[0].cluster: certificate-authority and insecure-skip-tls-verify are both set; choose one");
  expectError(preamble + "users: [{name: x, user: {}}, {name: u, user: {client-key-data: 'a$b'}}]\n",
              "users[1].user.client-key-data: invalid base64");
  expectError(preamble + "users: [{name: u, user: {client-certificate-data: " + base64(kCertPem) + "}}]\n",
              "users[0].user: client-certificate given without client-key");
  expectError(preamble + "users: [{name: u, user: {client-key-data: " + base64(kKeyPem) + "}}]\n",
              "users[0].user: client-key given without client-certificate");
  expectError(preamble + "users: [{name: u, user: {client-certificate-data: " + base64(kCertPem) +
                  ", client-key-data: " + base64(kCertPem) + "}}]\n",
              "users[0].user.client-key-data: not PEM (expected a \"PRIVATE KEY-----\" block)");
  expectError(
      preamble + "users: [{name: u, user: {tokenFile: missing-token}}]\n",
      "users[0].user.tokenFile: bearer token: " + dir_.path() + "/bad/missing-token: No such file or directory");
  expectError(preamble + "users: [{name: u, user: {token: [1, 2]}}]\n", "users[0].user.token: expected a string");
  expectError(preamble + "users: [{name: u, user: {exec: {command: aws}}}]\n",
              "users[0].user.exec: exec credential plugins are not supported (user \"u\"); use a token, tokenFile or "
              "client certificate");
  expectError(preamble + "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
              "users[0].user.auth-provider: auth providers are not supported (user \"u\"); use a token, tokenFile or "
              "client certificate");
  expectError(
      preamble + "users: [{name: u, user: {username: a, password: b}}]\n",
      "users[0].user.username: basic authentication is not supported (removed in Kubernetes 1.19) (user \"u\")");
  expectError(preamble + "users: [{name: u, user: {as: admin}}]\n",
              "users[0].user.as: impersonation is not supported (user \"u\")");
}

}  // namespace
}  // namespace singleton::kube
