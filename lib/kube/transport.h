// The HTTP transport: the only place that knows which HTTP library we use (cpprestsdk by default, Boost.Beast for the
// lean binaries). Everything above it speaks HttpRequest/HttpResponse, so the library can be swapped without touching
// the API layer, and unit tests can fake it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "util/result.h"

namespace singleton::kube {

struct HttpRequest {
  std::string method = "GET";
  std::string path;  // path and query, e.g. "/api/v1/namespaces/default/pods?labelSelector=a%3Db"
  std::string body;
  std::string content_type = "application/json";
  std::chrono::milliseconds timeout{30'000};        // for streams: the longest silence tolerated between chunks
  std::map<std::string, std::string> headers = {};  // extra headers (User-Agent, Accept); the transport adds auth
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // keys lower-cased
};

// Called with each piece of a streamed body as it arrives. Pieces split anywhere, also inside a line.
using ChunkHandler = std::function<void(std::string_view chunk)>;

class Transport {
 public:
  virtual ~Transport() = default;

  // One request, whole answer. Any HTTP status is a successful round trip; errors are network-level only
  // (kNetwork, kTimeout, kCancelled).
  virtual util::Result<HttpResponse> send(const HttpRequest& request, std::stop_token stop = {}) = 0;

  // A long-lived request (watch). For a 2xx answer the body goes to `on_chunk` as it arrives and the returned
  // response has an empty body; otherwise the whole body is returned and `on_chunk` is not called. Returns when
  // the server ends the body, the connection fails, or `stop` is requested (kCancelled).
  virtual util::Result<HttpResponse> stream(const HttpRequest& request, const ChunkHandler& on_chunk,
                                            std::stop_token stop) = 0;

  // The server's base URL, for messages.
  virtual std::string describe() const = 0;
};

}  // namespace singleton::kube
