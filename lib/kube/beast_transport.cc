// Notes on Boost.Beast 1.74 as used here:
// - tcp_stream's expiry closes the socket when it passes during an operation (error::timeout). send() sets one
//   deadline for connect, handshake, write and read; stream() re-arms it before every operation, so it measures
//   silence, not the length of a watch.
// - A response_parser<buffer_body> fills a buffer we lend it; async_read_some returns as soon as the parser has
//   taken some input, so each piece of a chunked watch reaches the caller when it arrives.
#include "kube/beast_transport.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "kube/beast_connection.h"
#include "kube/tls.h"

namespace singleton::kube::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using util::ErrorCode;
using Request = http::request<http::string_body>;

constexpr std::size_t kPieceSize = std::size_t{16} * 1024;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr const char* kDefaultUserAgent = "singleton-operator";

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string seconds(std::chrono::milliseconds duration) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3gs", static_cast<double>(duration.count()) / 1000.0);
  return buffer;
}

bool hasLineBreak(std::string_view text) { return text.find_first_of("\r\n") != std::string_view::npos; }

enum class Stage { kConnect, kWrite, kRead };

// How one request/answer exchange on a connection went.
struct Exchange {
  BeastConnection::ErrorCode error;
  Stage stage = Stage::kConnect;
  bool answered = false;  // some of the answer arrived, so the server saw the request: never send it again
  bool reusable = false;  // the answer is complete and the server keeps the connection open
};

// Writes `request` and reads the answer: its head into `response`, its body to `on_body` piece by piece as the pieces
// arrive (on_body returns false to stop reading). `arm` sets the connection's timer before each operation.
Exchange exchange(BeastConnection& connection, Request& request, HttpResponse& response,
                  const std::function<bool(std::string_view)>& on_body, const std::function<void()>& arm) {
  Exchange result;
  result.stage = Stage::kWrite;
  arm();
  result.error = connection.run([&](auto handler) {
    connection.withStream([&](auto& stream) { http::async_write(stream, request, std::move(handler)); });
  });
  if (result.error) return result;

  result.stage = Stage::kRead;
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.skip(request.method() == http::verb::head);  // its answer announces a body that is never sent
  // A watch lasts as long as the server keeps it open, and lists can be large. (Not boost::none: Boost 1.74 compares
  // Content-Length with the empty optional and refuses every sized body.)
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  arm();
  result.error = connection.run([&](auto handler) {
    connection.withStream(
        [&](auto& stream) { http::async_read_header(stream, connection.buffer(), parser, std::move(handler)); });
  });
  result.answered = parser.got_some();
  if (result.error) return result;

  const auto& head = parser.get();
  response.status = static_cast<int>(head.result_int());
  for (const auto& field : head) {
    const auto name = field.name_string();
    const auto text = field.value();
    std::string& value = response.headers[lower(std::string_view(name.data(), name.size()))];
    value += (value.empty() ? "" : ", ") + std::string(text.data(), text.size());
  }
  std::vector<char> piece(kPieceSize);
  while (!parser.is_done()) {
    parser.get().body().data = piece.data();
    parser.get().body().size = piece.size();
    arm();
    result.error = connection.run([&](auto handler) {
      connection.withStream(
          [&](auto& stream) { http::async_read_some(stream, connection.buffer(), parser, std::move(handler)); });
    });
    if (result.error == http::error::need_buffer) result.error = {};  // the piece is full: hand it over
    const std::size_t got = piece.size() - parser.get().body().size;
    if (got > 0 && !on_body(std::string_view(piece.data(), got))) {
      result.error = asio::error::operation_aborted;
      return result;
    }
    if (result.error) return result;
  }
  result.reusable = parser.keep_alive();
  return result;
}

class BeastTransport final : public Transport {
 public:
  BeastTransport(ClusterConfig config, ServerAddress address, std::shared_ptr<TlsSetup> tls, asio::ssl::context context,
                 std::string verify_name, std::string sni, std::size_t max_idle)
      : config_(std::move(config)),
        address_(std::move(address)),
        tls_(std::move(tls)),
        context_(std::move(context)),
        verify_name_(std::move(verify_name)),
        sni_(std::move(sni)),
        max_idle_(max_idle) {}

  util::Result<HttpResponse> send(const HttpRequest& request, std::stop_token stop) override;
  util::Result<HttpResponse> stream(const HttpRequest& request, const ChunkHandler& on_chunk,
                                    std::stop_token stop) override;
  std::string describe() const override { return config_.server; }

 private:
  util::Result<Request> build(const HttpRequest& request) const;
  Exchange open(BeastConnection& connection, const std::function<void()>& arm) const;
  std::unique_ptr<BeastConnection> takeIdle();
  void keepIdle(std::unique_ptr<BeastConnection> connection);
  util::Error failure(const Exchange& outcome, const HttpRequest& request, bool streaming,
                      const std::stop_token& stop) const;
  std::string what(const HttpRequest& request) const { return request.method + " " + config_.server + request.path; }

  ClusterConfig config_;
  ServerAddress address_;
  std::shared_ptr<TlsSetup> tls_;  // declared before context_, whose verify callback points at it
  asio::ssl::context context_;     // shared by all connections (OpenSSL allows concurrent SSL_new on one SSL_CTX)
  std::string verify_name_;        // what the server certificate must name; empty when verification is off
  std::string sni_;                // empty for an IP address
  std::size_t max_idle_;
  std::mutex idle_mutex_;
  std::vector<std::unique_ptr<BeastConnection>> idle_;  // kept-alive connections, most recently used last
};

util::Result<Request> BeastTransport::build(const HttpRequest& request) const {
  auto invalid = [&](const std::string& why) {
    return util::makeError(ErrorCode::kInvalidArgument,
                           "bad request " + request.method + " " + request.path + ": " + why);
  };
  if (request.path.empty() || request.path.front() != '/') return invalid("the path must start with /");
  if (hasLineBreak(request.method) || hasLineBreak(request.path)) return invalid("line break in the request line");
  Request message;
  message.version(11);
  message.method_string(request.method);
  message.target(address_.base_path + request.path);
  message.set(http::field::host, address_.authority);
  message.set(http::field::accept, "application/json");
  message.set(http::field::user_agent, kDefaultUserAgent);
  for (const auto& [name, value] : request.headers) {
    if (hasLineBreak(name) || hasLineBreak(value)) return invalid("line break in header " + name);
    message.set(name, value);
  }
  if (config_.token) {
    auto token = config_.token->token();
    if (!token.ok()) return std::move(token).takeError();
    if (hasLineBreak(*token)) return invalid("line break in the bearer token");
    message.set(http::field::authorization, "Bearer " + *token);
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
    message.set(http::field::content_type, request.content_type);
    message.body() = request.body;
    message.content_length(request.body.size());
  }
  return message;
}

Exchange BeastTransport::open(BeastConnection& connection, const std::function<void()>& arm) const {
  Exchange result;
  result.stage = Stage::kConnect;
  arm();
  result.error = connection.connect(address_.host, address_.port, verify_name_, sni_);
  return result;
}

std::unique_ptr<BeastConnection> BeastTransport::takeIdle() {
  std::lock_guard guard(idle_mutex_);
  while (!idle_.empty()) {
    std::unique_ptr<BeastConnection> connection = std::move(idle_.back());
    idle_.pop_back();
    if (connection->looksReusable()) return connection;
  }
  return nullptr;
}

void BeastTransport::keepIdle(std::unique_ptr<BeastConnection> connection) {
  connection->tcp().expires_never();
  std::lock_guard guard(idle_mutex_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(connection));
}

util::Error BeastTransport::failure(const Exchange& outcome, const HttpRequest& request, bool streaming,
                                    const std::stop_token& stop) const {
  const BeastConnection::ErrorCode& ec = outcome.error;
  if (stop.stop_requested()) return util::makeError(ErrorCode::kCancelled, what(request) + ": cancelled");
  if (ec == beast::error::timeout) {
    return util::makeError(
        ErrorCode::kTimeout,
        what(request) + ": " + (streaming ? "silent for " : "no answer within ") + seconds(request.timeout));
  }
  if (ec.category() == asio::error::get_ssl_category()) {
    return util::makeError(ErrorCode::kNetwork, tls_->describe(ec.value(), config_.server));
  }
  std::string message = what(request);
  switch (outcome.stage) {
    case Stage::kConnect:
      message += ": cannot connect: ";
      break;
    case Stage::kWrite:
      message += ": sending the request: ";
      break;
    case Stage::kRead:
      message += ": reading the answer: ";
      break;
  }
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    message += "the server closed the connection";
  } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
    message += "bad HTTP from the server (" + ec.message() + ")";
  } else {
    message += ec.message();
  }
  return util::makeError(ErrorCode::kNetwork, message);
}

util::Result<HttpResponse> BeastTransport::send(const HttpRequest& request, std::stop_token stop) {
  auto message = build(request);
  if (!message.ok()) return std::move(message).takeError();
  const auto deadline = std::chrono::steady_clock::now() + request.timeout;
  try {
    for (int attempt = 0;; ++attempt) {
      if (stop.stop_requested()) return util::makeError(ErrorCode::kCancelled, what(request) + ": cancelled");
      std::unique_ptr<BeastConnection> connection = attempt == 0 ? takeIdle() : nullptr;
      const bool reused = connection != nullptr;
      if (!connection) connection = std::make_unique<BeastConnection>(context_, address_.tls);
      HttpResponse response;
      Exchange outcome;
      {
        BeastConnection::StopScope scope(*connection, stop);
        auto arm = [&] { connection->tcp().expires_at(deadline); };
        if (!reused) outcome = open(*connection, arm);
        if (!outcome.error) {
          outcome = exchange(
              *connection, *message, response,
              [&](std::string_view piece) {
                response.body.append(piece);
                return true;
              },
              arm);
        }
      }
      if (!outcome.error) {
        if (outcome.reusable) keepIdle(std::move(connection));
        return response;
      }
      // A kept-alive connection that the server has closed since (a restart, an idle timeout) fails on first use,
      // typically with "Broken pipe" or an end of stream. Nothing of an answer arrived, so send once more on a new
      // connection. (Should the server have acted and died before answering, a repeated Lease update is still safe:
      // it carries its resourceVersion, and the repeat is answered with Conflict.)
      if (reused && attempt == 0 && !outcome.answered && outcome.error != beast::error::timeout &&
          !stop.stop_requested()) {
        continue;
      }
      return failure(outcome, request, false, stop);
    }
  } catch (const std::exception& e) {  // allocation failures and the like; the network reports through error codes
    return util::makeError(ErrorCode::kNetwork, what(request) + ": " + e.what());
  }
}

util::Result<HttpResponse> BeastTransport::stream(const HttpRequest& request, const ChunkHandler& on_chunk,
                                                  std::stop_token stop) {
  auto message = build(request);
  if (!message.ok()) return std::move(message).takeError();
  if (stop.stop_requested()) return util::makeError(ErrorCode::kCancelled, what(request) + ": cancelled");
  try {
    // A connection of its own, closed at the end: a watch holds its connection for minutes.
    BeastConnection connection(context_, address_.tls);
    BeastConnection::StopScope scope(connection, stop);
    auto arm = [&] { connection.tcp().expires_after(request.timeout); };
    HttpResponse response;
    std::optional<util::Error> handler_failure;
    auto on_body = [&](std::string_view piece) {
      if (response.status < 200 || response.status >= 300) {
        response.body.append(piece);
        return true;
      }
      try {
        on_chunk(piece);
        return true;
      } catch (const std::exception& e) {
        handler_failure = util::makeError(ErrorCode::kInternal, std::string("watch chunk handler threw: ") + e.what());
      } catch (...) {
        handler_failure = util::makeError(ErrorCode::kInternal, "watch chunk handler threw");
      }
      return false;
    };
    Exchange outcome = open(connection, arm);
    if (!outcome.error) outcome = exchange(connection, *message, response, on_body, arm);
    if (handler_failure) return *std::move(handler_failure);
    if (outcome.error) return failure(outcome, request, true, stop);
    return response;
  } catch (const std::exception& e) {
    return util::makeError(ErrorCode::kNetwork, what(request) + ": " + e.what());
  }
}

}  // namespace
}  // namespace singleton::kube::detail

namespace singleton::kube {

util::Result<std::shared_ptr<Transport>> makeBeastTransport(const ClusterConfig& config, TransportOptions options) {
  namespace asio = boost::asio;
  auto invalid = [&](const std::string& why) {
    return util::makeError(util::ErrorCode::kInvalidArgument,
                           config.origin + ": server \"" + config.server + "\": " + why);
  };
  auto address = detail::parseServerAddress(config.server);
  if (!address.ok()) return invalid(address.error().message);
  const std::string name = config.tls_server_name.empty() ? address->host : config.tls_server_name;
  auto tls = detail::TlsSetup::create(config, name);
  if (!tls.ok()) return std::move(tls).takeError();
  try {
    asio::ssl::context context(asio::ssl::context::tls_client);
    SSL_CTX* ctx = context.native_handle();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // idle pooled connections give their TLS buffers back
    const bool verify = !config.insecure_skip_tls_verify;
    context.set_verify_mode(verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    if (verify && config.ca_pem.empty()) context.set_default_verify_paths();
    (*tls)->apply(ctx);  // our CA only (when given), the client certificate, and readable verification failures
    return std::shared_ptr<Transport>(std::make_shared<detail::BeastTransport>(
        config, std::move(*address), std::move(*tls), std::move(context), verify ? name : "",
        detail::isIpAddress(name) ? "" : name, static_cast<std::size_t>(std::max(0, options.idle_connections))));
  } catch (const std::exception& e) {
    return invalid(std::string("TLS setup failed: ") + e.what());
  }
}

}  // namespace singleton::kube
