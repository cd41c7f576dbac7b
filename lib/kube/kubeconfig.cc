// kubeconfig parsing. Every problem becomes one kInvalidArgument error "<origin>: <field path>: <what is wrong>",
// with the field written as a user would look for it in the file (users[0].user.client-key-data).
#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "kube/config.h"
#include "kube/config_files.h"

namespace singleton::kube {
namespace {

using util::ErrorCode;

class Parser {
 public:
  Parser(const std::string& base_dir, const std::string& origin) : base_dir_(base_dir), origin_(origin) {}

  util::Result<ClusterConfig> parse(const std::string& yaml_text, const std::string& context_name);

 private:
  util::Error fail(const std::string& what) const {
    return util::makeError(ErrorCode::kInvalidArgument, origin_ + ": " + what);
  }
  util::Error fail(const std::string& field, const std::string& why) const { return fail(field + ": " + why); }

  // A named entry of contexts/clusters/users: {name: x, <kind>: {...}}. Sets `path` to e.g. "users[2].user".
  // `referrer` prefixes the not-found message ("context \"dev\": ").
  util::Result<YAML::Node> findNamed(const YAML::Node& root, const std::string& list, const std::string& kind,
                                     const std::string& name, const std::string& referrer, std::string& path) const;
  // A string field: nullopt when absent or null, an error when it is not a scalar.
  util::Result<std::optional<std::string>> string(const YAML::Node& map, const std::string& key,
                                                  const std::string& path) const;
  // PEM text from KEY-data (base64) or KEY (a file path), data first as in client-go. nullopt when neither is set.
  util::Result<std::optional<std::string>> pem(const YAML::Node& map, const std::string& key, const std::string& path,
                                               const std::string& pem_marker, std::string* origin) const;

  util::Status cluster(const YAML::Node& node, const std::string& path, ClusterConfig& out) const;
  util::Status user(const YAML::Node& node, const std::string& path, const std::string& name, ClusterConfig& out) const;

  std::string base_dir_;
  std::string origin_;
};

util::Result<YAML::Node> Parser::findNamed(const YAML::Node& root, const std::string& list, const std::string& kind,
                                           const std::string& name, const std::string& referrer,
                                           std::string& path) const {
  const YAML::Node entries = root[list];
  if (entries && !entries.IsNull() && !entries.IsSequence()) return fail(list, "expected a list");
  if (entries && entries.IsSequence()) {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const std::string entry_path = list + "[" + std::to_string(i) + "]";
      const YAML::Node entry = entries[i];
      if (!entry.IsMap()) return fail(entry_path, "expected a mapping with name and " + kind);
      auto entry_name = string(entry, "name", entry_path);
      if (!entry_name.ok()) return std::move(entry_name).takeError();
      if (entry_name->value_or("") != name) continue;
      path = entry_path + "." + kind;
      const YAML::Node body = entry[kind];
      if (!body || body.IsNull()) return YAML::Node(YAML::NodeType::Map);
      if (!body.IsMap()) return fail(path, "expected a mapping");
      return body;
    }
  }
  return fail(referrer + kind + " \"" + name + "\" not found");
}

util::Result<std::optional<std::string>> Parser::string(const YAML::Node& map, const std::string& key,
                                                        const std::string& path) const {
  const YAML::Node node = map[key];
  if (!node || node.IsNull()) return std::optional<std::string>();
  if (!node.IsScalar()) return fail(path.empty() ? key : path + "." + key, "expected a string");
  return std::optional<std::string>(node.Scalar());
}

util::Result<std::optional<std::string>> Parser::pem(const YAML::Node& map, const std::string& key,
                                                     const std::string& path, const std::string& pem_marker,
                                                     std::string* origin) const {
  std::string text;
  std::string field;
  auto data = string(map, key + "-data", path);
  if (!data.ok()) return std::move(data).takeError();
  if (*data && !(*data)->empty()) {
    field = path + "." + key + "-data";
    auto decoded = detail::decodeBase64(**data);
    if (!decoded) return fail(field, "invalid base64");
    text = std::move(*decoded);
    if (origin) *origin = field + " in " + origin_;
  } else {
    auto file = string(map, key, path);
    if (!file.ok()) return std::move(file).takeError();
    if (!*file || (*file)->empty()) return std::optional<std::string>();
    field = path + "." + key;
    const std::string resolved = detail::resolvePath(**file, base_dir_);
    auto read = detail::readFile(resolved);
    if (!read.ok()) return fail(field, "cannot read " + read.error().message);
    text = std::move(*read);
    if (origin) *origin = "file " + resolved;
  }
  if (text.find("-----BEGIN ") == std::string::npos || text.find(pem_marker) == std::string::npos) {
    return fail(field, "not PEM (expected a \"" + pem_marker + "\" block)");
  }
  return std::optional<std::string>(std::move(text));
}

util::Status Parser::cluster(const YAML::Node& node, const std::string& path, ClusterConfig& out) const {
  auto server = string(node, "server", path);
  if (!server.ok()) return std::move(server).takeError();
  if (!*server || (*server)->empty()) return fail(path + ".server", "missing");
  out.server = **server;
  if (out.server.rfind("https://", 0) != 0 && out.server.rfind("http://", 0) != 0) {
    return fail(path + ".server", "\"" + out.server + "\" is not an http(s) URL");
  }
  while (out.server.size() > 8 && out.server.back() == '/') out.server.pop_back();

  if (const YAML::Node insecure = node["insecure-skip-tls-verify"]; insecure && !insecure.IsNull()) {
    bool value = false;
    if (!insecure.IsScalar() || !YAML::convert<bool>::decode(insecure, value)) {
      return fail(path + ".insecure-skip-tls-verify", "expected true or false");
    }
    out.insecure_skip_tls_verify = value;
  }
  auto ca = pem(node, "certificate-authority", path, "CERTIFICATE-----", &out.ca_origin);
  if (!ca.ok()) return std::move(ca).takeError();
  if (*ca) out.ca_pem = std::move(**ca);
  if (out.insecure_skip_tls_verify && !out.ca_pem.empty()) {
    // As client-go: trusting a CA and trusting nothing at once is a mistake worth pointing out.
    return fail(path, "certificate-authority and insecure-skip-tls-verify are both set; choose one");
  }

  auto server_name = string(node, "tls-server-name", path);
  if (!server_name.ok()) return std::move(server_name).takeError();
  out.tls_server_name = server_name->value_or("");
  if (node["proxy-url"] && !node["proxy-url"].IsNull()) return fail(path + ".proxy-url", "proxies are not supported");
  return {};
}

util::Status Parser::user(const YAML::Node& node, const std::string& path, const std::string& name,
                          ClusterConfig& out) const {
  const std::string who = " (user \"" + name + "\")";
  if (node["exec"] && !node["exec"].IsNull()) {
    return fail(path + ".exec",
                "exec credential plugins are not supported" + who + "; use a token, tokenFile or client certificate");
  }
  if (node["auth-provider"] && !node["auth-provider"].IsNull()) {
    return fail(path + ".auth-provider",
                "auth providers are not supported" + who + "; use a token, tokenFile or client certificate");
  }
  if (node["username"] || node["password"]) {
    return fail(path + ".username", "basic authentication is not supported (removed in Kubernetes 1.19)" + who);
  }
  for (const char* key : {"as", "as-groups", "as-user-extra"}) {
    if (node[key] && !node[key].IsNull()) return fail(path + "." + key, "impersonation is not supported" + who);
  }

  auto cert = pem(node, "client-certificate", path, "CERTIFICATE-----", nullptr);
  if (!cert.ok()) return std::move(cert).takeError();
  auto key = pem(node, "client-key", path, "PRIVATE KEY-----", nullptr);
  if (!key.ok()) return std::move(key).takeError();
  if (cert->has_value() != key->has_value()) {
    return fail(path, cert->has_value() ? "client-certificate given without client-key"
                                        : "client-key given without client-certificate");
  }
  if (*cert) {
    out.client_cert_pem = std::move(**cert);
    out.client_key_pem = std::move(**key);
  }

  auto token = string(node, "token", path);
  if (!token.ok()) return std::move(token).takeError();
  auto token_file = string(node, "tokenFile", path);
  if (!token_file.ok()) return std::move(token_file).takeError();
  if (*token && !(*token)->empty()) {
    out.token = std::make_shared<StaticTokenSource>(**token);
  } else if (*token_file && !(*token_file)->empty()) {
    const std::string resolved = detail::resolvePath(**token_file, base_dir_);
    auto source = std::make_shared<FileTokenSource>(resolved);
    if (auto first = source->token(); !first.ok()) return fail(path + ".tokenFile", first.error().message);
    out.token = std::move(source);
  }
  return {};
}

util::Result<ClusterConfig> Parser::parse(const std::string& yaml_text, const std::string& context_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return fail("invalid YAML: " + e.msg + " (line " + std::to_string(e.mark.line + 1) + ")");
  }
  if (!root || root.IsNull()) return fail("empty file");
  if (!root.IsMap()) return fail("not a kubeconfig (expected a YAML mapping at the top)");

  std::string context = context_name;
  if (context.empty()) {
    auto current = string(root, "current-context", "");
    if (!current.ok()) return std::move(current).takeError();
    if (!*current || (*current)->empty()) return fail("current-context is not set and no context was given");
    context = **current;
  }

  std::string context_path;
  auto context_node = findNamed(root, "contexts", "context", context, "", context_path);
  if (!context_node.ok()) return std::move(context_node).takeError();
  auto cluster_name = string(*context_node, "cluster", context_path);
  if (!cluster_name.ok()) return std::move(cluster_name).takeError();
  if (!*cluster_name || (*cluster_name)->empty()) return fail(context_path + ".cluster", "missing");
  auto user_name = string(*context_node, "user", context_path);
  if (!user_name.ok()) return std::move(user_name).takeError();
  auto ns = string(*context_node, "namespace", context_path);
  if (!ns.ok()) return std::move(ns).takeError();

  ClusterConfig config;
  config.origin = origin_ + " (context " + context + ")";
  if (*ns && !(*ns)->empty()) config.default_namespace = **ns;

  std::string cluster_path;
  const std::string referrer = "context \"" + context + "\": ";
  auto cluster_node = findNamed(root, "clusters", "cluster", **cluster_name, referrer, cluster_path);
  if (!cluster_node.ok()) return std::move(cluster_node).takeError();
  if (auto s = cluster(*cluster_node, cluster_path, config); !s.ok()) return std::move(s).takeError();

  // A context without a user is legal: anonymous access, or a server that needs no authentication.
  if (*user_name && !(*user_name)->empty()) {
    std::string user_path;
    auto user_node = findNamed(root, "users", "user", **user_name, referrer, user_path);
    if (!user_node.ok()) return std::move(user_node).takeError();
    if (auto s = user(*user_node, user_path, **user_name, config); !s.ok()) return std::move(s).takeError();
  }
  return config;
}

std::string homeDirectory() {
  const char* home = std::getenv("HOME");
  return home ? home : "";
}

}  // namespace

util::Result<ClusterConfig> parseKubeconfig(const std::string& yaml_text, const std::string& context,
                                            const std::string& base_dir, const std::string& origin) {
  try {
    return Parser(base_dir, origin).parse(yaml_text, context);
  } catch (const std::exception& e) {  // yaml-cpp throws on shapes we did not foresee
    return util::makeError(ErrorCode::kInvalidArgument, origin + ": " + e.what());
  }
}

util::Result<ClusterConfig> loadKubeconfig(const KubeconfigOptions& options) {
  std::string path = options.path;
  if (path.empty()) {
    const char* env = std::getenv("KUBECONFIG");
    if (env && *env) {
      // client-go merges the list; we take the first file that exists, which is what almost everyone means.
      std::string tried;
      std::string_view list = env;
      while (path.empty() && !list.empty()) {
        const auto colon = list.find(':');
        const std::string entry(list.substr(0, colon));
        list = colon == std::string_view::npos ? std::string_view() : list.substr(colon + 1);
        if (entry.empty()) continue;
        if (detail::isRegularFile(entry)) path = entry;
        tried += (tried.empty() ? "" : ", ") + entry;
      }
      if (path.empty()) {
        return util::makeError(ErrorCode::kInvalidArgument, "$KUBECONFIG: none of its files exist: " + tried);
      }
    } else {
      const std::string home = homeDirectory();
      if (home.empty()) return util::makeError(ErrorCode::kInvalidArgument, "no kubeconfig: $HOME is not set");
      path = home + "/.kube/config";
    }
  }

  const std::string origin = "kubeconfig " + path;
  auto text = detail::readFile(path);
  if (!text.ok()) return util::makeError(ErrorCode::kInvalidArgument, "kubeconfig " + text.error().message);
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  const std::string base_dir = (ec ? std::filesystem::path(path) : absolute).parent_path().string();
  return parseKubeconfig(*text, options.context, base_dir, origin);
}

}  // namespace singleton::kube
