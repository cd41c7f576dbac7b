// The Kubernetes API: typed Lease calls and generic JSON calls for any resource. Every call returns a classified
// error value (NotFound, Conflict, Gone, TooManyRequests with Retry-After, ...) and never throws.
#pragma once

#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include <nlohmann/json.hpp>

#include "kube/config.h"
#include "kube/lease.h"
#include "kube/resource.h"
#include "kube/transport.h"
#include "util/result.h"

namespace singleton::kube {

using Json = nlohmann::json;

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;  // "" = most recent (quorum read); "0" = any (from the watch cache)
  int limit = 0;                 // 0 = no paging
  std::string continue_token;
};

struct WatchOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;  // start after this version
  bool allow_bookmarks = true;
  std::chrono::seconds timeout{300};  // the server ends the watch after this (timeoutSeconds)
};

struct DeleteOptions {
  std::optional<int> grace_period_seconds;
  std::string propagation_policy;  // "Background", "Foreground", "Orphan" or "" for the default
  std::string precondition_uid;    // delete only this incarnation
  std::string precondition_resource_version;
};

struct ClientOptions {
  std::chrono::milliseconds request_timeout{10'000};
  std::string user_agent = "singleton-operator/0.1";
};

// Requests that a Client sends on this thread while a CancelScope lives are cancelled (kCancelled) when the scope's
// stop token is requested: the transport closes their connections, so a caller blocked on an unanswered request
// returns within milliseconds. The operator's workers run under the stop token of their leadership term, so a worker
// waiting on a stalled apiserver does not hold up the hand-over. Scopes nest; the innermost one applies. Watches take
// their stop token explicitly and ignore scopes.
class CancelScope {
 public:
  explicit CancelScope(std::stop_token stop);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

  // The innermost scope's token on this thread; an empty token (never stops) outside any scope.
  static std::stop_token current();

 private:
  std::stop_token previous_;
};

class Client {
 public:
  Client(std::shared_ptr<Transport> transport, ClientOptions options = {});

  // Generic JSON calls. `ns` is ignored for cluster-scoped resources.
  util::Result<Json> get(const Resource& resource, const std::string& ns, const std::string& name);
  util::Result<Json> list(const Resource& resource, const std::string& ns, const ListOptions& options = {});
  util::Result<Json> create(const Resource& resource, const std::string& ns, const Json& object);
  // PUT. Carries metadata.resourceVersion from `object`: a stale one answers Conflict.
  util::Result<Json> update(const Resource& resource, const std::string& ns, const Json& object,
                            const std::string& subresource = "");
  util::Result<Json> mergePatch(const Resource& resource, const std::string& ns, const std::string& name,
                                const Json& patch, const std::string& subresource = "");
  util::Result<Json> jsonPatch(const Resource& resource, const std::string& ns, const std::string& name,
                               const Json& patch_ops, const std::string& subresource = "");
  util::Status remove(const Resource& resource, const std::string& ns, const std::string& name,
                      const DeleteOptions& options = {});

  // Opens a watch and feeds raw body chunks to `on_chunk` until the server closes it, an error, or `stop`.
  // A non-2xx answer is returned as a classified error. (The watch layer splits lines and decodes events.)
  util::Status watch(const Resource& resource, const std::string& ns, const WatchOptions& options,
                     const ChunkHandler& on_chunk, std::stop_token stop);

  // Typed Lease calls.
  util::Result<Lease> getLease(const std::string& ns, const std::string& name);
  util::Result<Lease> createLease(const Lease& lease);
  // Compare-and-swap on lease.resource_version: Conflict when someone else wrote first.
  util::Result<Lease> updateLease(const Lease& lease);
  util::Status deleteLease(const std::string& ns, const std::string& name);

  // A raw request, for anything else (e.g. /readyz, /metrics); the answer's status is classified.
  util::Result<std::string> raw(const std::string& method, const std::string& path, const std::string& body = "");

  Transport& transport() { return *transport_; }

 private:
  util::Result<Json> call(const HttpRequest& request);

  std::shared_ptr<Transport> transport_;
  ClientOptions options_;
};

// Turns a non-2xx answer (with its metav1.Status body, if any) into a classified error: reason, message, HTTP
// status and Retry-After.
util::Error classifyResponse(const HttpResponse& response);

// Builds the production transport (cpprestsdk) for a config. Fails on unreadable TLS material.
struct TransportOptions {
  // Threads in cpprestsdk's shared pool; its default is 40, far more than a client needs (memory).
  int io_threads = 2;
  // Kept-alive connections the Beast transport keeps for reuse. Each thread that sends at once needs one; a returned
  // connection beyond this is closed, and the next request pays a new TLS handshake.
  int idle_connections = 4;
};
util::Result<std::shared_ptr<Transport>> makeTransport(const ClusterConfig& config, TransportOptions options = {});

}  // namespace singleton::kube
