#include "support/fake_cluster.h"

#include <sstream>

#include "support/percent_decode.h"
#include "util/time_format.h"

namespace singleton::testing {
namespace {

using Json = nlohmann::json;
using kube::HttpResponse;

const std::string kPodsCollection = "/pods";
const std::string kWorkloadsCollection = "singleton.dev/singletonworkloads";

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

HttpResponse status(int code, const std::string& reason, const std::string& message) {
  const Json body = {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", code < 300 ? "Success" : "Failure"},
                     {"reason", reason}, {"message", message}, {"code", code}};
  return {code, body.dump(), {}};
}

HttpResponse ok(int code, const Json& object) { return {code, object.dump(), {}}; }

std::string meta(const Json& object, const char* field) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  const Json& m = object["metadata"];
  return m.contains(field) && m[field].is_string() ? m[field].get<std::string>() : "";
}

std::string label(const Json& object, const std::string& key) {
  if (!object.contains("metadata") || !object["metadata"].contains("labels")) return "";
  const Json& labels = object["metadata"]["labels"];
  return labels.is_object() && labels.contains(key) && labels[key].is_string() ? labels[key].get<std::string>() : "";
}

// The apiserver we test on (1.20, Debian build) refuses empty strings anywhere in a custom resource.
bool hasEmptyString(const Json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>().empty();
  if (value.is_object() || value.is_array()) {
    for (const Json& item : value) {
      if (hasEmptyString(item)) return true;
    }
  }
  return false;
}

}  // namespace

std::optional<FakeCluster::Target> FakeCluster::parse(const std::string& full_path) {
  Target target;
  const auto question = full_path.find('?');
  const std::string path = full_path.substr(0, question);
  if (question != std::string::npos) {
    for (const std::string& pair : split(full_path.substr(question + 1), '&')) {
      const auto eq = pair.find('=');
      target.query[singleton::testing::percentDecode(pair.substr(0, eq))] =
          eq == std::string::npos ? "" : singleton::testing::percentDecode(pair.substr(eq + 1));
    }
  }
  std::vector<std::string> segments;
  for (const std::string& s : split(path, '/')) {
    if (!s.empty()) segments.push_back(singleton::testing::percentDecode(s));
  }
  std::size_t i = 0;
  std::string group;
  if (segments.size() >= 2 && segments[0] == "api") {
    i = 2;
  } else if (segments.size() >= 3 && segments[0] == "apis") {
    group = segments[1];
    i = 3;
  } else {
    return std::nullopt;
  }
  if (segments.size() >= i + 3 && segments[i] == "namespaces") {
    target.ns = segments[i + 1];
    i += 2;
  }
  if (i >= segments.size()) return std::nullopt;
  target.collection = group + "/" + segments[i];
  if (i + 1 < segments.size()) target.name = segments[i + 1];
  if (i + 2 < segments.size()) target.subresource = segments[i + 2];
  return target;
}

bool FakeCluster::matches(const std::string& selector, const Json& object) {
  for (const std::string& term : split(selector, ',')) {
    if (term.empty()) continue;
    if (const auto ne = term.find("!="); ne != std::string::npos) {
      if (label(object, term.substr(0, ne)) == term.substr(ne + 2)) return false;
    } else if (const auto eq = term.find('='); eq != std::string::npos) {
      const std::size_t value_at = term.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1;
      if (label(object, term.substr(0, eq)) != term.substr(value_at)) return false;
    } else if (term.front() == '!') {
      if (!label(object, term.substr(1)).empty()) return false;
    } else if (label(object, term).empty()) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> FakeCluster::reads() const {
  std::lock_guard lock(mutex_);
  return reads_;
}

util::Result<HttpResponse> FakeCluster::send(const kube::HttpRequest& request, std::stop_token) {
  const auto target = parse(request.path);
  if (!target) return status(404, "NotFound", "no such path " + request.path);
  std::lock_guard lock(mutex_);
  if (request.method == "GET") {
    reads_.push_back(request.path);
    return handleLocked(request, *target);
  }

  ++writes_seen_;
  const bool fail = fail_at_ > 0 && writes_seen_ == fail_at_;
  Answer answer = fail && !fail_after_apply_ ? Answer(status(fail_status_, "InternalError", "injected failure"))
                                             : handleLocked(request, *target);
  if (fail) {
    fail_at_ = 0;
    answer = status(fail_status_, "InternalError", "injected failure");
  }
  writes_.push_back({request.method, request.path, answer.ok() ? answer->status : 0, request.body});
  return answer;
}

FakeCluster::Answer FakeCluster::handleLocked(const kube::HttpRequest& request, const Target& target) {
  auto& collection = objects_[target.collection];
  const std::string key = target.ns + "/" + target.name;
  if (request.method == "GET") {
    if (target.name.empty()) return ok(200, listLocked(target));
    const auto it = collection.find(key);
    if (it == collection.end()) return status(404, "NotFound", target.name + " not found");
    return ok(200, it->second);
  }
  if (request.method == "POST" || request.method == "PUT") {
    const Json body = Json::parse(request.body, nullptr, false);
    if (!body.is_object()) return status(400, "BadRequest", "body is not a JSON object");
    return request.method == "POST" ? createLocked(target, body) : updateLocked(target, body);
  }
  if (request.method == "PATCH") return patchLocked(target, request);
  if (request.method == "DELETE") return removeLocked(target, request.body);
  return status(405, "MethodNotAllowed", request.method);
}

FakeCluster::Answer FakeCluster::createLocked(const Target& target, Json object) {
  const std::string name = meta(object, "name");
  if (name.empty()) return status(422, "Invalid", "metadata.name is required");
  if (objects_[target.collection].contains(target.ns + "/" + name)) {
    return status(409, "AlreadyExists", name + " already exists");
  }
  Json& metadata = object["metadata"];
  if (!target.ns.empty()) metadata["namespace"] = target.ns;
  metadata["uid"] = "uid-" + std::to_string(++uids_);
  metadata["creationTimestamp"] = util::formatTime(clock_.wallNow());
  metadata["generation"] = 1;
  if (target.collection == kWorkloadsCollection) object.erase("status");  // status is a subresource
  if (auto refused = refuseLocked(target.collection, object)) return *refused;
  return ok(201, commitLocked(target.collection, target.ns, std::move(object), "ADDED"));
}

FakeCluster::Answer FakeCluster::updateLocked(const Target& target, Json object) {
  const auto it = objects_[target.collection].find(target.ns + "/" + target.name);
  if (it == objects_[target.collection].end()) return status(404, "NotFound", target.name + " not found");
  const Json& stored = it->second;
  const std::string version = meta(object, "resourceVersion");
  if (!version.empty() && version != meta(stored, "resourceVersion")) {
    return status(409, "Conflict", "the object has been modified; please apply your changes to the latest version");
  }
  Json next = stored;
  if (target.subresource == "status") {
    next["status"] = object.value("status", Json::object());
  } else {
    next = object;
    for (const char* field : {"uid", "creationTimestamp", "generation", "deletionTimestamp"}) {
      if (stored["metadata"].contains(field)) next["metadata"][field] = stored["metadata"][field];
    }
    if (target.collection == kWorkloadsCollection) {
      if (stored.contains("status")) next["status"] = stored["status"];
      if (next.value("spec", Json()) != stored.value("spec", Json())) {
        next["metadata"]["generation"] = stored["metadata"].value("generation", 1) + 1;
      }
    }
  }
  if (auto refused = refuseLocked(target.collection, next)) return *refused;
  return ok(200, commitLocked(target.collection, target.ns, std::move(next), "MODIFIED"));
}

FakeCluster::Answer FakeCluster::patchLocked(const Target& target, const kube::HttpRequest& request) {
  const auto it = objects_[target.collection].find(target.ns + "/" + target.name);
  if (it == objects_[target.collection].end()) return status(404, "NotFound", target.name + " not found");
  const Json& stored = it->second;
  const Json patch = Json::parse(request.body, nullptr, false);
  if (patch.is_discarded()) return status(400, "BadRequest", "patch is not JSON");
  Json patched = stored;
  if (request.content_type == "application/merge-patch+json") {
    if (!patch.is_object()) return status(400, "BadRequest", "merge patch is not an object");
    patched.merge_patch(patch);
  } else if (request.content_type == "application/json-patch+json") {
    try {
      patched = stored.patch(patch);
    } catch (const Json::exception& e) {
      return status(422, "Invalid", std::string("json patch: ") + e.what());
    }
  } else {
    return status(415, "UnsupportedMediaType", request.content_type);
  }
  for (const char* field : {"uid", "name", "namespace"}) {
    if (meta(patched, field) != meta(stored, field))
      return status(422, "Invalid", std::string(field) + " is immutable");
  }
  const std::string version = meta(patched, "resourceVersion");
  if (version != meta(stored, "resourceVersion")) return status(409, "Conflict", "resourceVersion precondition");
  Json next = stored;
  if (target.subresource == "status") {
    next["status"] = patched.value("status", Json::object());
  } else {
    next = patched;
    if (target.collection == kWorkloadsCollection) {
      if (stored.contains("status")) {
        next["status"] = stored["status"];
      } else {
        next.erase("status");
      }
      if (next.value("spec", Json()) != stored.value("spec", Json())) {
        next["metadata"]["generation"] = stored["metadata"].value("generation", 1) + 1;
      }
    }
  }
  if (auto refused = refuseLocked(target.collection, next)) return *refused;
  return ok(200, commitLocked(target.collection, target.ns, std::move(next), "MODIFIED"));
}

std::optional<HttpResponse> FakeCluster::refuseLocked(const std::string& collection, const Json& object) {
  if (collection != kWorkloadsCollection || !hasEmptyString(object)) return std::nullopt;
  violations_.push_back("a SingletonWorkload write with an empty string: " + object.dump());
  return status(422, "Invalid", "must be of type string: \"null\"");
}

FakeCluster::Answer FakeCluster::removeLocked(const Target& target, const std::string& body) {
  const std::string key = target.ns + "/" + target.name;
  const auto it = objects_[target.collection].find(key);
  if (it == objects_[target.collection].end()) return status(404, "NotFound", target.name + " not found");
  const Json options = Json::parse(body.empty() ? "{}" : body, nullptr, false);
  if (options.is_object() && options.contains("preconditions")) {
    const Json& pre = options["preconditions"];
    if (pre.contains("uid") && pre["uid"] != meta(it->second, "uid")) {
      return status(409, "Conflict", "Precondition failed: UID in precondition does not match");
    }
  }
  if (graceful_pods_ && target.collection == kPodsCollection) {
    if (meta(it->second, "deletionTimestamp").empty()) {
      Json next = it->second;
      next["metadata"]["deletionTimestamp"] = util::formatTime(clock_.wallNow() + std::chrono::seconds(30));
      next["metadata"]["deletionGracePeriodSeconds"] = 30;
      return ok(200, commitLocked(target.collection, target.ns, std::move(next), "MODIFIED"));
    }
    return ok(200, it->second);
  }
  removeCascadeLocked(target.collection, key);
  return status(200, "", "deleted");
}

void FakeCluster::removeCascadeLocked(const std::string& collection, const std::string& key) {
  auto& objects = objects_[collection];
  const auto it = objects.find(key);
  if (it == objects.end()) return;
  Json gone = std::move(it->second);
  objects.erase(it);
  gone["metadata"]["resourceVersion"] = std::to_string(++version_);
  const std::string ns = meta(gone, "namespace");
  history_.push_back({version_, collection, ns, "DELETED", gone});
  checkInvariantsLocked();
  changed_.notify_all();
  // Garbage collection of dependents (immediate here; a real cluster gets there eventually).
  const std::string uid = meta(gone, "uid");
  std::vector<std::pair<std::string, std::string>> dependents;
  for (const auto& [other_collection, others] : objects_) {
    for (const auto& [other_key, object] : others) {
      const Json refs = object["metadata"].value("ownerReferences", Json::array());
      for (const Json& ref : refs) {
        if (ref.value("uid", "") == uid) dependents.emplace_back(other_collection, other_key);
      }
    }
  }
  for (const auto& [c, k] : dependents) removeCascadeLocked(c, k);
}

Json FakeCluster::listLocked(const Target& target) const {
  Json items = Json::array();
  if (const auto it = objects_.find(target.collection); it != objects_.end()) {
    const auto selector = target.query.find("labelSelector");
    for (const auto& [key, object] : it->second) {
      if (!target.ns.empty() && meta(object, "namespace") != target.ns) continue;
      if (selector != target.query.end() && !matches(selector->second, object)) continue;
      items.push_back(object);
    }
  }
  return {{"apiVersion", "v1"},
          {"kind", "List"},
          {"metadata", {{"resourceVersion", std::to_string(version_)}}},
          {"items", std::move(items)}};
}

Json FakeCluster::commitLocked(const std::string& collection, const std::string& ns, Json object,
                               const std::string& type) {
  object["metadata"]["resourceVersion"] = std::to_string(++version_);
  objects_[collection][ns + "/" + meta(object, "name")] = object;
  history_.push_back({version_, collection, ns, type, object});
  checkInvariantsLocked();
  changed_.notify_all();
  return object;
}

void FakeCluster::checkInvariantsLocked() {
  std::map<std::string, std::vector<const Json*>> leaders;  // by ns/workload
  for (const auto& [key, pod] : objects_[kPodsCollection]) {
    const std::string workload = label(pod, "singleton.dev/workload");
    if (!workload.empty() && label(pod, "singleton.dev/role") == "leader") {
      leaders[meta(pod, "namespace") + "/" + workload].push_back(&pod);
    }
  }
  for (const auto& [workload, pods] : leaders) {
    if (pods.size() > 1) {
      std::string names;
      for (const Json* pod : pods) names += " " + meta(*pod, "name");
      violations_.push_back("two leaders in " + workload + " at version " + std::to_string(version_) + ":" + names);
    }
    const Json& pod = *pods.front();
    const Json annotations = pod["metadata"].value("annotations", Json::object());
    const std::string token_text = annotations.value("singleton.dev/fencing-token", "");
    if (token_text.empty()) continue;
    const long long token = std::stoll(token_text);
    LeaderSeen& last = last_leader_[workload];
    const std::string uid = meta(pod, "uid");
    if ((uid != last.uid && token <= last.token) || token < last.token) {
      violations_.push_back("leader " + meta(pod, "name") + " of " + workload + " carries token " + token_text +
                            " after token " + std::to_string(last.token));
    }
    last = {uid, std::max(token, last.token)};
  }
}

util::Result<HttpResponse> FakeCluster::stream(const kube::HttpRequest& request, const kube::ChunkHandler& on_chunk,
                                               std::stop_token stop) {
  const auto target = parse(request.path);
  if (!target) return HttpResponse{404, status(404, "NotFound", request.path).body, {}};
  const auto from = target->query.find("resourceVersion");
  const long long start = from == target->query.end() || from->second.empty() ? -1 : std::stoll(from->second);
  const auto selector = target->query.find("labelSelector");
  std::unique_lock lock(mutex_);
  std::size_t next = 0;
  if (start < 0) {
    next = history_.size();
  } else {
    while (next < history_.size() && history_[next].version <= start) ++next;
  }
  while (!stop.stop_requested()) {
    while (next < history_.size()) {
      const Change change = history_[next++];
      if (change.collection != target->collection || (!target->ns.empty() && change.ns != target->ns)) continue;
      if (selector != target->query.end() && !matches(selector->second, change.object)) continue;
      const std::string line = Json{{"type", change.type}, {"object", change.object}}.dump() + "\n";
      lock.unlock();
      on_chunk(line);
      lock.lock();
    }
    changed_.wait(lock, stop, [&] { return next < history_.size(); });
  }
  return util::makeError(util::ErrorCode::kCancelled, "stopped");
}

FakeCluster::Json FakeCluster::put(const kube::Resource& resource, Json object) {
  std::lock_guard lock(mutex_);
  const std::string ns = meta(object, "namespace");
  const std::string collection = collectionOf(resource);
  const auto existing = objects_[collection].find(ns + "/" + meta(object, "name"));
  if (meta(object, "uid").empty()) {
    object["metadata"]["uid"] =
        existing != objects_[collection].end() ? meta(existing->second, "uid") : "uid-" + std::to_string(++uids_);
  }
  if (!object["metadata"].contains("generation")) object["metadata"]["generation"] = 1;
  const bool exists = existing != objects_[collection].end();
  return commitLocked(collection, ns, std::move(object), exists ? "MODIFIED" : "ADDED");
}

std::optional<FakeCluster::Json> FakeCluster::get(const kube::Resource& resource, const std::string& ns,
                                                  const std::string& name) const {
  std::lock_guard lock(mutex_);
  const auto collection = objects_.find(collectionOf(resource));
  if (collection == objects_.end()) return std::nullopt;
  const auto it = collection->second.find(ns + "/" + name);
  if (it == collection->second.end()) return std::nullopt;
  return it->second;
}

std::vector<FakeCluster::Json> FakeCluster::list(const kube::Resource& resource, const std::string& ns) const {
  std::lock_guard lock(mutex_);
  std::vector<Json> out;
  const auto collection = objects_.find(collectionOf(resource));
  if (collection == objects_.end()) return out;
  for (const auto& [key, object] : collection->second) {
    if (ns.empty() || meta(object, "namespace") == ns) out.push_back(object);
  }
  return out;
}

bool FakeCluster::modify(const kube::Resource& resource, const std::string& ns, const std::string& name,
                         const std::function<void(Json&)>& change) {
  std::lock_guard lock(mutex_);
  const std::string collection = collectionOf(resource);
  const auto it = objects_[collection].find(ns + "/" + name);
  if (it == objects_[collection].end()) return false;
  Json next = it->second;
  change(next);
  commitLocked(collection, ns, std::move(next), "MODIFIED");
  return true;
}

void FakeCluster::erase(const kube::Resource& resource, const std::string& ns, const std::string& name) {
  std::lock_guard lock(mutex_);
  removeCascadeLocked(collectionOf(resource), ns + "/" + name);
}

std::string FakeCluster::resourceVersion() const {
  std::lock_guard lock(mutex_);
  return std::to_string(version_);
}

std::vector<FakeCluster::Write> FakeCluster::writes() const {
  std::lock_guard lock(mutex_);
  return writes_;
}

int FakeCluster::writeCount() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(writes_.size());
}

int FakeCluster::writeCount(const std::string& part) const {
  std::lock_guard lock(mutex_);
  int count = 0;
  for (const Write& w : writes_) count += w.path.find(part) != std::string::npos ? 1 : 0;
  return count;
}

void FakeCluster::failWrite(int nth, int status_code, bool after_apply) {
  std::lock_guard lock(mutex_);
  fail_at_ = writes_seen_ + nth;
  fail_status_ = status_code;
  fail_after_apply_ = after_apply;
}

std::vector<std::string> FakeCluster::violations() const {
  std::lock_guard lock(mutex_);
  return violations_;
}

void FakeCluster::clearViolations() {
  std::lock_guard lock(mutex_);
  violations_.clear();
  last_leader_.clear();
}

}  // namespace singleton::testing
