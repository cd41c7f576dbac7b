#include "kube/client.h"

#include <utility>

#include "kube/object.h"

namespace singleton::kube {
namespace {

using util::ErrorCode;

constexpr const char* kJson = "application/json";
constexpr const char* kMergePatch = "application/merge-patch+json";
constexpr const char* kJsonPatch = "application/json-patch+json";
// A watch's silence is bounded by its timeoutSeconds; allow the server this much beyond it to close the watch.
constexpr std::chrono::seconds kWatchGrace{30};

HttpRequest makeRequest(std::string method, std::string path, std::string body = "", std::string content_type = kJson) {
  HttpRequest request;
  request.method = std::move(method);
  request.path = std::move(path);
  request.body = std::move(body);
  request.content_type = std::move(content_type);
  return request;
}

// Appends "name=value" to a query, skipping empty values.
void addParam(std::string& query, const char* name, const std::string& value) {
  if (value.empty()) return;
  query += query.empty() ? '?' : '&';
  query += name;
  query += '=';
  query += urlEncode(value);
}

thread_local std::stop_token t_cancel_scope;  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

}  // namespace

CancelScope::CancelScope(std::stop_token stop) : previous_(std::exchange(t_cancel_scope, std::move(stop))) {}

CancelScope::~CancelScope() { t_cancel_scope = std::move(previous_); }

std::stop_token CancelScope::current() { return t_cancel_scope; }

Client::Client(std::shared_ptr<Transport> transport, ClientOptions options)
    : transport_(std::move(transport)), options_(std::move(options)) {}

util::Result<Json> Client::call(const HttpRequest& request) {
  HttpRequest full = request;
  full.timeout = options_.request_timeout;
  full.headers.emplace("User-Agent", options_.user_agent);
  auto answer = transport_->send(full, CancelScope::current());
  if (!answer.ok()) return std::move(answer).takeError();
  if (answer->status < 200 || answer->status >= 300) return classifyResponse(*answer);
  if (answer->body.empty()) return Json::object();
  Json parsed = Json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    util::Error error =
        util::makeError(ErrorCode::kBadResponse, request.method + " " + request.path +
                                                     ": the answer is not JSON: " + answer->body.substr(0, 120));
    error.http_status = answer->status;
    return error;
  }
  return parsed;
}

util::Result<Json> Client::get(const Resource& resource, const std::string& ns, const std::string& name) {
  return call(makeRequest("GET", objectPath(resource, ns, name)));
}

util::Result<Json> Client::list(const Resource& resource, const std::string& ns, const ListOptions& options) {
  std::string query;
  addParam(query, "labelSelector", options.label_selector);
  addParam(query, "fieldSelector", options.field_selector);
  addParam(query, "resourceVersion", options.resource_version);
  if (options.limit > 0) addParam(query, "limit", std::to_string(options.limit));
  addParam(query, "continue", options.continue_token);
  auto answer = call(makeRequest("GET", collectionPath(resource, ns) + query));
  if (answer.ok() && !(answer->is_object() && answer->contains("items"))) {
    return util::makeError(ErrorCode::kBadResponse, "list " + collectionPath(resource, ns) + ": no items in answer");
  }
  return answer;
}

util::Result<Json> Client::create(const Resource& resource, const std::string& ns, const Json& object) {
  if (!object.is_object()) return util::makeError(ErrorCode::kInvalidArgument, "create: object is not a JSON object");
  const std::string where = ns.empty() ? metaString(object, "namespace") : ns;
  return call(makeRequest("POST", collectionPath(resource, where), object.dump(), kJson));
}

util::Result<Json> Client::update(const Resource& resource, const std::string& ns, const Json& object,
                                  const std::string& subresource) {
  const std::string name = metaString(object, "name");
  if (name.empty()) return util::makeError(ErrorCode::kInvalidArgument, "update: object has no metadata.name");
  const std::string where = ns.empty() ? metaString(object, "namespace") : ns;
  return call(makeRequest("PUT", objectPath(resource, where, name, subresource), object.dump(), kJson));
}

util::Result<Json> Client::mergePatch(const Resource& resource, const std::string& ns, const std::string& name,
                                      const Json& patch, const std::string& subresource) {
  if (!patch.is_object()) return util::makeError(ErrorCode::kInvalidArgument, "merge patch is not a JSON object");
  return call(makeRequest("PATCH", objectPath(resource, ns, name, subresource), patch.dump(), kMergePatch));
}

util::Result<Json> Client::jsonPatch(const Resource& resource, const std::string& ns, const std::string& name,
                                     const Json& patch_ops, const std::string& subresource) {
  if (!patch_ops.is_array()) {
    return util::makeError(ErrorCode::kInvalidArgument, "JSON patch is not an array of operations");
  }
  return call(makeRequest("PATCH", objectPath(resource, ns, name, subresource), patch_ops.dump(), kJsonPatch));
}

util::Status Client::remove(const Resource& resource, const std::string& ns, const std::string& name,
                            const DeleteOptions& options) {
  Json body = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
  if (options.grace_period_seconds) body["gracePeriodSeconds"] = *options.grace_period_seconds;
  if (!options.propagation_policy.empty()) body["propagationPolicy"] = options.propagation_policy;
  if (!options.precondition_uid.empty()) body["preconditions"]["uid"] = options.precondition_uid;
  if (!options.precondition_resource_version.empty()) {
    body["preconditions"]["resourceVersion"] = options.precondition_resource_version;
  }
  auto answer = call(makeRequest("DELETE", objectPath(resource, ns, name), body.dump(), kJson));
  if (!answer.ok()) return std::move(answer).takeError();
  return {};
}

util::Status Client::watch(const Resource& resource, const std::string& ns, const WatchOptions& options,
                           const ChunkHandler& on_chunk, std::stop_token stop) {
  std::string query = "?watch=1";
  addParam(query, "resourceVersion", options.resource_version);
  if (options.allow_bookmarks) addParam(query, "allowWatchBookmarks", "true");
  addParam(query, "timeoutSeconds", std::to_string(options.timeout.count()));
  addParam(query, "labelSelector", options.label_selector);
  addParam(query, "fieldSelector", options.field_selector);

  HttpRequest request = makeRequest("GET", collectionPath(resource, ns) + query);
  request.timeout = options.timeout + kWatchGrace;
  request.headers.emplace("User-Agent", options_.user_agent);
  auto answer = transport_->stream(request, on_chunk, std::move(stop));
  if (!answer.ok()) return std::move(answer).takeError();
  if (answer->status < 200 || answer->status >= 300) return classifyResponse(*answer);
  return {};
}

util::Result<Lease> Client::getLease(const std::string& ns, const std::string& name) {
  auto object = get(kLeases, ns, name);
  if (!object.ok()) return std::move(object).takeError();
  return leaseFromJson(*object);
}

util::Result<Lease> Client::createLease(const Lease& lease) {
  Json object = leaseToJson(lease);
  object["metadata"].erase("resourceVersion");  // the server refuses a create that names a version
  auto created = create(kLeases, lease.ns, object);
  if (!created.ok()) return std::move(created).takeError();
  return leaseFromJson(*created);
}

util::Result<Lease> Client::updateLease(const Lease& lease) {
  // Without a version the PUT would overwrite whatever is there: never what a lock wants.
  if (lease.resource_version.empty()) {
    return util::makeError(ErrorCode::kInvalidArgument,
                           "updateLease " + lease.ns + "/" + lease.name + ": no resource_version to compare with");
  }
  auto updated = update(kLeases, lease.ns, leaseToJson(lease));
  if (!updated.ok()) return std::move(updated).takeError();
  return leaseFromJson(*updated);
}

util::Status Client::deleteLease(const std::string& ns, const std::string& name) { return remove(kLeases, ns, name); }

util::Result<std::string> Client::raw(const std::string& method, const std::string& path, const std::string& body) {
  HttpRequest request = makeRequest(method, path, body);
  request.timeout = options_.request_timeout;
  request.headers.emplace("User-Agent", options_.user_agent);
  auto answer = transport_->send(request, CancelScope::current());
  if (!answer.ok()) return std::move(answer).takeError();
  if (answer->status < 200 || answer->status >= 300) return classifyResponse(*answer);
  return std::move(answer->body);
}

}  // namespace singleton::kube
