// Notes on cpprestsdk 2.10 (see docs/cpprestsdk.md in the shared docs):
// - All its I/O is asynchronous on one process-wide pool; nothing here blocks a pool thread: callers wait on their
//   own thread, so even a small pool serves many concurrent watches and requests.
// - A pplx task whose exception nobody observes raises SIGTRAP, so every continuation takes the task and catches.
// - Its client timeout is an inactivity timer, and there is no per-request deadline: send() waits for the answer
//   with its own deadline and cancels the request (closing the connection) when it passes.
#include "kube/cpprest_transport.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

#include <cpprest/http_client.h>
#include <pplx/threadpool.h>
// cpprest's U(x) string macro would rewrite a template parameter named U inside fmt (spdlog's formatter, which
// util/log.h includes).
#undef U

#include "kube/client.h"
#include "kube/tls.h"
#include "util/duration.h"
#include "util/log.h"

namespace singleton::kube::detail {
namespace {

namespace http = web::http;
namespace http_client = web::http::client;
using util::ErrorCode;

const log::Logger kLog("transport");

// Our own deadline governs requests; cpprest's inactivity timer on the request client is only a backstop.
constexpr auto kBackstopTimeout = std::chrono::hours(1);
// How long a transport being destroyed waits for its cancelled requests' continuations. Cancelling closes the
// connection, so they finish in milliseconds; the bound only keeps a wedged pool from hanging shutdown.
constexpr auto kDrainTimeout = std::chrono::milliseconds(5000);
constexpr std::size_t kReadSize = std::size_t{64} * 1024;
constexpr const char* kDefaultUserAgent = "singleton-operator";

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string describeRequest(const HttpRequest& request, const std::string& server) {
  return request.method + " " + server + request.path;
}

void copyHeaders(const http::http_response& from, HttpResponse& to) {
  to.status = from.status_code();
  for (const auto& [name, value] : from.headers()) to.headers[lower(name)] = value;
}

// Counts the sends whose cpprest continuations are still alive. A send that times out or is stopped returns at once,
// leaving its cancelled continuation queued on cpprest's pool, whose threads are never joined; the transport's
// destructor waits for those, so that nothing of ours outlives it (and LeakSanitizer sees no task at exit).
class InFlight {
 public:
  void add() {
    std::lock_guard guard(mutex_);
    ++count_;
  }
  void remove() {
    {
      std::lock_guard guard(mutex_);
      --count_;
    }
    idle_.notify_all();
  }
  bool waitUntilIdle(std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, limit, [this] { return count_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  int count_ = 0;
};

// Handed from cpprest's continuation to the caller waiting in send(). The continuations co-own it, so it dies with
// the last of them.
struct Outcome {
  explicit Outcome(std::shared_ptr<InFlight> tracker) : in_flight(std::move(tracker)) { in_flight->add(); }
  Outcome(const Outcome&) = delete;
  Outcome& operator=(const Outcome&) = delete;
  ~Outcome() { in_flight->remove(); }

  std::shared_ptr<InFlight> in_flight;
  std::mutex mutex;
  std::condition_variable_any cv;
  bool done = false;
  HttpResponse response;
  std::exception_ptr failure;

  void finish(HttpResponse answer, std::exception_ptr error) {
    {
      std::lock_guard guard(mutex);
      response = std::move(answer);
      failure = std::move(error);
      done = true;
    }
    cv.notify_all();
  }
};

class CpprestTransport final : public Transport {
 public:
  CpprestTransport(ClusterConfig config, std::shared_ptr<TlsSetup> tls, const web::uri& base)
      : config_(std::move(config)),
        tls_(std::move(tls)),
        base_(base),
        client_(std::make_unique<http_client::http_client>(base_, clientConfig(kBackstopTimeout))) {}
  CpprestTransport(const CpprestTransport&) = delete;
  CpprestTransport& operator=(const CpprestTransport&) = delete;
  ~CpprestTransport() override {
    if (!in_flight_->waitUntilIdle(kDrainTimeout)) {
      kLog.warn("cancelled requests still pending at shutdown; leaving them to cpprest's pool",
                {.values = {{"server", config_.server}, {"waited", util::formatDuration(kDrainTimeout)}}});
    }
  }

  util::Result<HttpResponse> send(const HttpRequest& request, std::stop_token stop) override;
  util::Result<HttpResponse> stream(const HttpRequest& request, const ChunkHandler& on_chunk,
                                    std::stop_token stop) override;
  std::string describe() const override { return config_.server; }

 private:
  http_client::http_client_config clientConfig(std::chrono::milliseconds timeout) const;
  std::shared_ptr<http_client::http_client> streamClient(std::chrono::milliseconds timeout);
  util::Result<http::http_request> build(const HttpRequest& request);
  util::Error translate(const std::exception_ptr& failure, const HttpRequest& request, bool streaming);

  ClusterConfig config_;
  std::shared_ptr<TlsSetup> tls_;
  web::uri base_;
  std::unique_ptr<http_client::http_client> client_;  // one client, so connections are pooled and reused
  std::shared_ptr<InFlight> in_flight_ = std::make_shared<InFlight>();
  std::mutex streams_mutex_;
  // Streams get their own clients because cpprest's inactivity timeout is per client; there is one per distinct
  // timeout, which in practice means one.
  std::map<std::chrono::milliseconds, std::shared_ptr<http_client::http_client>> stream_clients_;
};

http_client::http_client_config CpprestTransport::clientConfig(std::chrono::milliseconds timeout) const {
  http_client::http_client_config config;
  config.set_timeout(timeout);
  config.set_validate_certificates(!config_.insecure_skip_tls_verify);
  // The closure owns the TlsSetup, and cpprest keeps the config as long as any of its connections lives.
  std::shared_ptr<TlsSetup> tls = tls_;
  config.set_ssl_context_callback([tls](boost::asio::ssl::context& context) { tls->apply(context.native_handle()); });
  return config;
}

std::shared_ptr<http_client::http_client> CpprestTransport::streamClient(std::chrono::milliseconds timeout) {
  std::lock_guard guard(streams_mutex_);
  auto& client = stream_clients_[timeout];
  if (!client) client = std::make_shared<http_client::http_client>(base_, clientConfig(timeout));
  return client;
}

util::Result<http::http_request> CpprestTransport::build(const HttpRequest& request) {
  try {
    http::http_request message(request.method);
    message.set_request_uri(web::uri(request.path));
    auto& headers = message.headers();
    headers.add("Accept", "application/json");
    headers.add("User-Agent", kDefaultUserAgent);
    for (const auto& [name, value] : request.headers) headers[name] = value;
    // cpprest takes the TLS name for SNI and the certificate check from the Host header.
    if (!config_.tls_server_name.empty()) headers["Host"] = config_.tls_server_name;
    if (config_.token) {
      auto token = config_.token->token();
      if (!token.ok()) return std::move(token).takeError();
      headers["Authorization"] = "Bearer " + *token;
    }
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
      // Bytes, not std::string: cpprest reads a string body through a char/unsigned char type pun (UBSan flags it).
      message.set_body(std::vector<unsigned char>(request.body.begin(), request.body.end()));
      headers.set_content_type(request.content_type);
    }
    return message;
  } catch (const std::exception& e) {
    return util::makeError(ErrorCode::kInvalidArgument,
                           "bad request " + request.method + " " + request.path + ": " + e.what());
  }
}

util::Error CpprestTransport::translate(const std::exception_ptr& failure, const HttpRequest& request, bool streaming) {
  const std::string what = describeRequest(request, config_.server);
  try {
    std::rethrow_exception(failure);
  } catch (const http::http_exception& e) {
    const int code = e.error_code().value();
    if (code == ECANCELED) return util::makeError(ErrorCode::kCancelled, what + ": cancelled");
    if (code == ETIMEDOUT) {
      return util::makeError(ErrorCode::kTimeout, what + ": " + (streaming ? "silent for " : "no answer within ") +
                                                      util::formatDuration(request.timeout));
    }
    if (TlsSetup::isTlsError(code)) return util::makeError(ErrorCode::kNetwork, tls_->describe(code, config_.server));
    std::string message = what + ": " + e.what();
    // cpprest reports a refused connection as EHOSTUNREACH, so strerror would mislead.
    if (code == EHOSTUNREACH) {
      message += " (connection refused or host unreachable)";
    } else if (code > 0 && code < 4096) {
      message += std::string(" (") + std::strerror(code) + ")";
    }
    return util::makeError(ErrorCode::kNetwork, message);
  } catch (const pplx::task_canceled&) {
    return util::makeError(ErrorCode::kCancelled, what + ": cancelled");
  } catch (const std::exception& e) {
    return util::makeError(ErrorCode::kNetwork, what + ": " + e.what());
  } catch (...) {
    return util::makeError(ErrorCode::kInternal, what + ": unknown failure");
  }
}

util::Result<HttpResponse> CpprestTransport::send(const HttpRequest& request, std::stop_token stop) {
  auto message = build(request);
  if (!message.ok()) return std::move(message).takeError();
  if (stop.stop_requested()) return translate(std::make_exception_ptr(pplx::task_canceled()), request, false);

  pplx::cancellation_token_source cancel;
  auto outcome = std::make_shared<Outcome>(in_flight_);
  try {
    client_->request(*message, cancel.get_token()).then([outcome](pplx::task<http::http_response> answered) {
      try {
        http::http_response response = answered.get();
        HttpResponse head;
        copyHeaders(response, head);
        response.extract_vector().then([outcome, head](pplx::task<std::vector<unsigned char>> read) mutable {
          try {
            const std::vector<unsigned char> body = read.get();
            head.body.assign(body.begin(), body.end());
            outcome->finish(std::move(head), nullptr);
          } catch (...) {
            outcome->finish({}, std::current_exception());
          }
        });
      } catch (...) {
        outcome->finish({}, std::current_exception());
      }
    });
  } catch (...) {
    return translate(std::current_exception(), request, false);
  }

  std::unique_lock lock(outcome->mutex);
  const auto deadline = std::chrono::steady_clock::now() + request.timeout;
  if (!outcome->cv.wait_until(lock, stop, deadline, [&] { return outcome->done; })) {
    lock.unlock();
    cancel.cancel();  // closes the connection; the continuation still finishes into `outcome`, which it co-owns
    const std::string what = describeRequest(request, config_.server);
    if (stop.stop_requested()) return util::makeError(ErrorCode::kCancelled, what + ": cancelled");
    return util::makeError(ErrorCode::kTimeout, what + ": no answer within " + util::formatDuration(request.timeout));
  }
  if (outcome->failure) return translate(outcome->failure, request, false);
  return std::move(outcome->response);
}

util::Result<HttpResponse> CpprestTransport::stream(const HttpRequest& request, const ChunkHandler& on_chunk,
                                                    std::stop_token stop) {
  auto message = build(request);
  if (!message.ok()) return std::move(message).takeError();
  auto client = streamClient(request.timeout);

  pplx::cancellation_token_source cancel;
  std::stop_callback on_stop(stop, [&cancel] { cancel.cancel(); });
  // Leaving early must close the connection, or the server would keep filling a body nobody reads.
  bool completed = false;
  struct CloseUnlessCompleted {
    pplx::cancellation_token_source& cancel;
    const bool& completed;
    ~CloseUnlessCompleted() {
      if (!completed) cancel.cancel();
    }
  } close_guard{cancel, completed};

  try {
    http::http_response response = client->request(*message, cancel.get_token()).get();
    HttpResponse head;
    copyHeaders(response, head);
    if (head.status < 200 || head.status >= 300) {
      const std::vector<unsigned char> body = response.extract_vector().get();
      head.body.assign(body.begin(), body.end());
      completed = true;
      return head;
    }

    // Wait for one byte, then take whatever else has arrived: a fixed-size read would hold events back until the
    // buffer filled.
    auto buffer = response.body().streambuf();
    std::vector<unsigned char> piece(kReadSize);
    for (;;) {
      if (buffer.getc().get() == decltype(buffer)::traits::eof()) break;
      const std::size_t wanted = std::clamp<std::size_t>(buffer.in_avail(), 1, piece.size());
      const std::size_t got = buffer.getn(piece.data(), wanted).get();  // available, so it completes at once
      if (got == 0) break;
      try {
        on_chunk(std::string_view(reinterpret_cast<const char*>(piece.data()), got));
      } catch (const std::exception& e) {
        return util::makeError(ErrorCode::kInternal, std::string("watch chunk handler threw: ") + e.what());
      }
    }
    response.content_ready().get();  // rethrows the error that ended the body, if one did
    completed = true;
    return head;
  } catch (...) {
    if (stop.stop_requested()) {
      return util::makeError(ErrorCode::kCancelled, describeRequest(request, config_.server) + ": cancelled");
    }
    return translate(std::current_exception(), request, true);
  }
}

}  // namespace

int initializeIoThreads(int threads) {
  static std::once_flag once;
  static int size = 0;
  std::call_once(once, [threads] {
    const int wanted = std::max(threads, 1);
    try {
      crossplat::threadpool::initialize_with_threads(static_cast<std::size_t>(wanted));
      size = wanted;
    } catch (const std::exception& e) {
      kLog.warn("cpprestsdk's I/O pool was started before ours could be sized; it keeps its 40 threads",
                {.err = e.what(), .values = {{"wanted", wanted}}});
    }
  });
  return size;
}

util::Result<std::shared_ptr<Transport>> makeCpprestTransport(const ClusterConfig& config) {
  auto invalid = [&](const std::string& why) {
    return util::makeError(ErrorCode::kInvalidArgument, config.origin + ": server \"" + config.server + "\": " + why);
  };
  try {
    const web::uri base(config.server);
    if (base.scheme() != "https" && base.scheme() != "http") return invalid("not an http(s) URL");
    if (base.host().empty()) return invalid("no host");
    std::string host = config.tls_server_name.empty() ? base.host() : config.tls_server_name;
    auto tls = TlsSetup::create(config, host);
    if (!tls.ok()) return std::move(tls).takeError();
    return std::shared_ptr<Transport>(std::make_shared<CpprestTransport>(config, std::move(*tls), base));
  } catch (const std::exception& e) {
    return invalid(e.what());
  }
}

}  // namespace singleton::kube::detail

namespace singleton::kube {

util::Result<std::shared_ptr<Transport>> makeTransport(const ClusterConfig& config, TransportOptions options) {
  // Before the first client: cpprest starts its 40-thread default pool on first use, and cannot shrink it later.
  detail::initializeIoThreads(options.io_threads);
  return detail::makeCpprestTransport(config);
}

}  // namespace singleton::kube
