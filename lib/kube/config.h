// Where the apiserver is and how to authenticate: from a kubeconfig file or from inside a pod.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::kube {

// Supplies the bearer token for each request. In-cluster, the service-account token is re-read when its file
// changes (bound tokens rotate hourly); from a kubeconfig it is fixed or read from tokenFile the same way.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual util::Result<std::string> token() = 0;
};

// A token that never changes.
class StaticTokenSource final : public TokenSource {
 public:
  explicit StaticTokenSource(std::string token) : token_(std::move(token)) {}
  util::Result<std::string> token() override { return token_; }

 private:
  std::string token_;
};

// A token read from a file, re-read when the file's modification time or size changes, and at least every
// `max_age` so a rotated token is never used for long after it changed.
class FileTokenSource final : public TokenSource {
 public:
  explicit FileTokenSource(std::string path, const util::Clock& clock = util::systemClock(),
                           util::Millis max_age = std::chrono::minutes(1));
  util::Result<std::string> token() override;

 private:
  std::string path_;
  const util::Clock& clock_;
  util::Millis max_age_;
  std::mutex mutex_;
  std::string cached_;
  long long cached_mtime_ns_ = -1;
  long long cached_size_ = -1;
  util::MonoTime read_at_{};
};

struct ClusterConfig {
  std::string server;  // "https://127.0.0.1:6443", no trailing slash
  // Trust: a CA bundle as PEM text (from certificate-authority-data or a file we read). Empty: system CAs only.
  std::string ca_pem;
  std::string ca_origin;  // where ca_pem came from, for TLS error messages ("file /x/ca.crt", "kubeconfig data")
  bool insecure_skip_tls_verify = false;  // only ever true when the kubeconfig itself says so
  std::string tls_server_name;
  // Client certificate authentication, PEM text.
  std::string client_cert_pem;
  std::string client_key_pem;
  // Bearer token authentication (token, tokenFile or in-cluster service account); null when not used.
  std::shared_ptr<TokenSource> token;
  // Basic auth is deliberately unsupported (removed from Kubernetes in 1.19).
  std::string default_namespace = "default";  // the context's namespace, or the pod's namespace in-cluster
  std::string origin;                         // "kubeconfig /path (context ctx)" or "in-cluster", for messages
};

struct KubeconfigOptions {
  std::string path;     // empty: $KUBECONFIG (first entry), then ~/.kube/config
  std::string context;  // empty: current-context
};

// Parses a kubeconfig. Every missing or malformed field is an kInvalidArgument error naming the field and file.
util::Result<ClusterConfig> loadKubeconfig(const KubeconfigOptions& options);
// Parses kubeconfig text (relative file paths resolve against `base_dir`).
util::Result<ClusterConfig> parseKubeconfig(const std::string& yaml_text, const std::string& context,
                                            const std::string& base_dir, const std::string& origin);

struct InClusterPaths {
  std::string token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string namespace_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
};

// From KUBERNETES_SERVICE_HOST/PORT and the service-account files.
util::Result<ClusterConfig> loadInCluster(const InClusterPaths& paths = {});

// What client-go does: an explicit kubeconfig path, else $KUBECONFIG, else in-cluster, else ~/.kube/config.
util::Result<ClusterConfig> loadDefault(const KubeconfigOptions& options);

}  // namespace singleton::kube
