#include "container_spec.h"
#include "kube/object.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace singleton::sim {
namespace {

util::Error invalid(const std::string& message) { return util::makeError(util::ErrorCode::kInvalidArgument, message); }

void setEnv(EnvList& env, const std::string& name, std::string value) {
  for (auto& [key, old] : env) {
    if (key == name) {
      old = std::move(value);
      return;
    }
  }
  env.emplace_back(name, std::move(value));
}

// metadata.labels['key'] style paths: the key, or nullopt when `path` is not `prefix['...']`.
std::optional<std::string> bracketKey(const std::string& path, const std::string& prefix) {
  if (path.size() < prefix.size() + 4 || path.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string rest = path.substr(prefix.size());
  if (rest.size() < 4 || rest.front() != '[' || rest.back() != ']') return std::nullopt;
  const char quote = rest[1];
  if ((quote != '\'' && quote != '"') || rest[rest.size() - 2] != quote) return std::nullopt;
  return rest.substr(2, rest.size() - 4);
}

util::Result<std::string> fieldRef(const Json& pod, const std::string& path, const EnvFacts& facts) {
  const Json& metadata = objectField(pod, "metadata");
  const Json& spec = objectField(pod, "spec");
  if (path == "metadata.name") return stringField(metadata, "name");
  if (path == "metadata.namespace") return stringField(metadata, "namespace");
  if (path == "metadata.uid") return stringField(metadata, "uid");
  if (path == "spec.nodeName") return stringField(spec, "nodeName");
  if (path == "spec.serviceAccountName") return serviceAccountName(pod);
  if (path == "status.podIP") return facts.pod_ip;
  if (path == "status.hostIP") return facts.host_ip;
  if (auto key = bracketKey(path, "metadata.labels")) return stringField(objectField(metadata, "labels"), key->c_str());
  if (auto key = bracketKey(path, "metadata.annotations")) {
    return stringField(objectField(metadata, "annotations"), key->c_str());
  }
  return invalid("fieldRef " + path + " is not supported by singleton-sim-kubelet");
}

int intField(const Json& object, const char* name, int fallback) {
  const Json* value = field(object, name);
  return value != nullptr && value->is_number_integer() ? value->get<int>() : fallback;
}

}  // namespace

bool hostExecutable(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool isProcessContainer(const Json& container, const ExecutableCheck& executable) {
  const Json& command = arrayField(container, "command");
  if (command.empty() || !command[0].is_string()) return false;
  const std::string path = command[0].get<std::string>();
  return !path.empty() && path.front() == '/' && executable(path);
}

bool isProcessPod(const Json& pod, const ExecutableCheck& executable) {
  const Json& containers = arrayField(objectField(pod, "spec"), "containers");
  return std::any_of(containers.begin(), containers.end(),
                     [&](const Json& container) { return isProcessContainer(container, executable); });
}

std::string expandVars(const std::string& text, const EnvList& env) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] == '(') {
      const std::size_t close = text.find(')', i + 2);
      if (close != std::string::npos) {
        const std::string name = text.substr(i + 2, close - i - 2);
        const auto it = std::find_if(env.begin(), env.end(), [&](const auto& entry) { return entry.first == name; });
        if (it != env.end()) {
          out += it->second;
          i = close;
          continue;
        }
      }
    }
    out += text[i];
  }
  return out;
}

util::Result<EnvList> containerEnv(const Json& pod, const Json& container, const EnvFacts& facts) {
  EnvList env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOSTNAME", kube::nameOf(pod)},
      {"HOME", "/root"},
  };
  if (!facts.service_host.empty()) {
    const std::string address = facts.service_host + ":" + facts.service_port;
    setEnv(env, "KUBERNETES_SERVICE_HOST", facts.service_host);
    setEnv(env, "KUBERNETES_SERVICE_PORT", facts.service_port);
    setEnv(env, "KUBERNETES_SERVICE_PORT_HTTPS", facts.service_port);
    setEnv(env, "KUBERNETES_PORT", "tcp://" + address);
    setEnv(env, "KUBERNETES_PORT_443_TCP", "tcp://" + address);
    setEnv(env, "KUBERNETES_PORT_443_TCP_PROTO", "tcp");
    setEnv(env, "KUBERNETES_PORT_443_TCP_ADDR", facts.service_host);
    setEnv(env, "KUBERNETES_PORT_443_TCP_PORT", facts.service_port);
  }
  if (!arrayField(container, "envFrom").empty()) {
    return invalid("envFrom is not supported by singleton-sim-kubelet");
  }
  for (const Json& entry : arrayField(container, "env")) {
    const std::string name = stringField(entry, "name");
    if (name.empty()) continue;
    const Json* from = field(entry, "valueFrom");
    if (from == nullptr || from->is_null()) {
      setEnv(env, name, expandVars(stringField(entry, "value"), env));
      continue;
    }
    const Json* ref = field(*from, "fieldRef");
    if (ref == nullptr) {
      std::string kind = from->is_object() && !from->empty() ? from->begin().key() : "valueFrom";
      return invalid("env " + name + ": " + kind + " is not supported by singleton-sim-kubelet");
    }
    auto value = fieldRef(pod, stringField(*ref, "fieldPath"), facts);
    if (!value.ok()) return invalid("env " + name + ": " + value.error().message);
    setEnv(env, name, std::move(*value));
  }
  return env;
}

std::vector<std::string> containerArgv(const Json& container, const EnvList& env) {
  std::vector<std::string> argv;
  for (const char* list : {"command", "args"}) {
    for (const Json& item : arrayField(container, list)) {
      if (item.is_string()) argv.push_back(expandVars(item.get<std::string>(), env));
    }
  }
  if (arrayField(container, "command").empty()) argv.clear();
  return argv;
}

util::Result<std::optional<Probe>> readinessProbe(const Json& container) {
  const Json* spec = field(container, "readinessProbe");
  if (spec == nullptr || spec->is_null()) return std::optional<Probe>();
  Probe probe;
  probe.initial_delay_seconds = std::max(0, intField(*spec, "initialDelaySeconds", 0));
  probe.period_seconds = std::max(1, intField(*spec, "periodSeconds", 10));
  probe.timeout_seconds = std::max(1, intField(*spec, "timeoutSeconds", 1));
  probe.success_threshold = std::max(1, intField(*spec, "successThreshold", 1));
  probe.failure_threshold = std::max(1, intField(*spec, "failureThreshold", 3));

  auto resolvePort = [&](const Json& handler) -> util::Result<int> {
    const Json* port = field(handler, "port");
    if (port != nullptr && port->is_number_integer()) return port->get<int>();
    if (port != nullptr && port->is_string()) {
      const std::string name = port->get<std::string>();
      for (const Json& declared : arrayField(container, "ports")) {
        if (stringField(declared, "name") == name) return intField(declared, "containerPort", 0);
      }
      return invalid("readinessProbe: no container port named " + name);
    }
    return invalid("readinessProbe: no port");
  };

  if (const Json* exec = field(*spec, "exec"); exec != nullptr) {
    probe.kind = Probe::Kind::kExec;
    for (const Json& item : arrayField(*exec, "command")) {
      if (item.is_string()) probe.command.push_back(item.get<std::string>());
    }
    if (probe.command.empty()) return invalid("readinessProbe: exec without a command");
  } else if (const Json* http = field(*spec, "httpGet"); http != nullptr) {
    probe.kind = Probe::Kind::kHttpGet;
    const std::string scheme = stringField(*http, "scheme");
    if (!scheme.empty() && scheme != "HTTP")
      return invalid("readinessProbe: httpGet scheme " + scheme + " unsupported");
    const std::string path = stringField(*http, "path");
    if (!path.empty()) probe.path = path.front() == '/' ? path : "/" + path;
    auto port = resolvePort(*http);
    if (!port.ok()) return std::move(port).takeError();
    probe.port = *port;
  } else if (const Json* tcp = field(*spec, "tcpSocket"); tcp != nullptr) {
    probe.kind = Probe::Kind::kTcpSocket;
    auto port = resolvePort(*tcp);
    if (!port.ok()) return std::move(port).takeError();
    probe.port = *port;
  } else {
    return invalid("readinessProbe: only exec, httpGet and tcpSocket are supported");
  }
  if ((probe.kind != Probe::Kind::kExec) && (probe.port <= 0 || probe.port > 65535)) {
    return invalid("readinessProbe: port " + std::to_string(probe.port) + " out of range");
  }
  return std::optional<Probe>(std::move(probe));
}

util::Millis restartDelay(int restarts, util::Millis base, util::Millis cap) {
  if (restarts <= 0) return util::Millis(0);
  util::Millis delay = base;
  for (int i = 1; i < restarts && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

bool shouldRestart(const std::string& restart_policy, int exit_code) {
  if (restart_policy == "Never") return false;
  if (restart_policy == "OnFailure") return exit_code != 0;
  return true;
}

int terminationGraceSeconds(const Json& pod) {
  const int from_deletion = intField(objectField(pod, "metadata"), "deletionGracePeriodSeconds", -1);
  if (from_deletion >= 0) return from_deletion;
  const int from_spec = intField(objectField(pod, "spec"), "terminationGracePeriodSeconds", -1);
  return from_spec >= 0 ? from_spec : 30;
}

std::string serviceAccountName(const Json& pod) {
  const Json& spec = objectField(pod, "spec");
  std::string name = stringField(spec, "serviceAccountName");
  if (name.empty()) name = stringField(spec, "serviceAccount");
  return name.empty() ? "default" : name;
}

bool automountToken(const Json& pod) {
  const Json* value = field(objectField(pod, "spec"), "automountServiceAccountToken");
  return value == nullptr || !value->is_boolean() || value->get<bool>();
}

}  // namespace singleton::sim
