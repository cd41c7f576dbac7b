#include <cstdlib>

#include "kube/config.h"
#include "kube/config_files.h"

namespace singleton::kube {
namespace {

util::Error fail(const std::string& what) {
  return util::makeError(util::ErrorCode::kInvalidArgument, "in-cluster config: " + what);
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

util::Result<ClusterConfig> loadInCluster(const InClusterPaths& paths) {
  std::string host = env("KUBERNETES_SERVICE_HOST");
  const std::string port = env("KUBERNETES_SERVICE_PORT");
  if (host.empty() || port.empty()) {
    return fail("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)");
  }
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";  // IPv6

  ClusterConfig config;
  config.server = "https://" + host + ":" + port;
  config.origin = "in-cluster";

  auto token = std::make_shared<FileTokenSource>(paths.token);
  if (auto first = token->token(); !first.ok()) return fail("service-account token: " + first.error().message);
  config.token = std::move(token);

  auto ca = detail::readFile(paths.ca);
  if (!ca.ok()) return fail("service-account CA: " + ca.error().message);
  if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return fail("service-account CA: " + paths.ca + ": not a PEM certificate bundle");
  }
  config.ca_pem = std::move(*ca);
  config.ca_origin = "file " + paths.ca;

  // Absent only when the pod opted out of the service-account mount in part; "default" is client-go's answer too.
  if (auto ns = detail::readFile(paths.namespace_file); ns.ok()) {
    const std::string trimmed = detail::trimSpace(*ns);
    if (!trimmed.empty()) config.default_namespace = trimmed;
  }
  return config;
}

util::Result<ClusterConfig> loadDefault(const KubeconfigOptions& options) {
  const char* kubeconfig_env = std::getenv("KUBECONFIG");
  const bool kubeconfig_given = !options.path.empty() || (kubeconfig_env && *kubeconfig_env);
  // A context names a kubeconfig entry, so asking for one rules out the in-cluster config.
  if (!kubeconfig_given && options.context.empty() && !env("KUBERNETES_SERVICE_HOST").empty()) {
    return loadInCluster();
  }
  return loadKubeconfig(options);
}

}  // namespace singleton::kube
