// One HTTP/1.1 connection of the Boost.Beast transport. Private to lib/kube.
//
// Each connection has its own io_context, run only by the thread that is using the connection for a call: a call
// starts an asynchronous operation and drives it to completion on its own thread. There is no background thread at
// all (memory: a client needs a handful of connections, not a pool of threads), and asynchronous operations are still
// what make deadlines and cancellation possible: a stop request posts a close to the io_context, which the calling
// thread runs, so the socket is only ever touched by one thread at a time.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "util/result.h"

namespace singleton::kube::detail {

// Where to connect, from ClusterConfig::server ("https://127.0.0.1:6443", "https://[::1]:6443/prefix").
struct ServerAddress {
  bool tls = true;
  std::string host;       // without brackets
  std::string port;       // "6443"; the scheme's default when the URL has none
  std::string authority;  // for the Host header, as the URL has it: "127.0.0.1:6443", "[::1]:6443", "api.example"
  std::string base_path;  // put before every request path: "" or "/prefix" (no trailing slash)
};

// A plain error message (the caller adds which config it came from) when `server` is not an http(s) URL.
util::Result<ServerAddress> parseServerAddress(const std::string& server);

// True for "127.0.0.1", "::1": names that must not be sent as SNI and are checked against the IP SANs.
bool isIpAddress(const std::string& host);

class BeastConnection {
 public:
  using ErrorCode = boost::system::error_code;
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  // `tls_context` must outlive the connection; it is unused for plain HTTP.
  BeastConnection(boost::asio::ssl::context& tls_context, bool tls);
  BeastConnection(const BeastConnection&) = delete;
  BeastConnection& operator=(const BeastConnection&) = delete;

  // While a StopScope lives, a stop request closes the connection on the thread running it, which fails the
  // operation in progress (or the next one). Destroying the scope disarms a close that was posted but has not run,
  // so a connection that completed its call can go back to the pool.
  class StopScope {
   public:
    StopScope(BeastConnection& connection, std::stop_token stop);
    ~StopScope();
    StopScope(const StopScope&) = delete;
    StopScope& operator=(const StopScope&) = delete;

   private:
    std::shared_ptr<std::atomic<bool>> armed_;
    std::optional<std::stop_callback<std::function<void()>>> callback_;
  };

  // TCP connect, then (for https) the TLS handshake. `verify_name` is the name or IP the server certificate must
  // carry; empty skips that check (insecure-skip-tls-verify). `sni` may be empty.
  ErrorCode connect(const std::string& host, const std::string& port, const std::string& verify_name,
                    const std::string& sni);

  // Runs one asynchronous operation on the calling thread until it completes. `start(handler)` initiates it.
  template <typename Start>
  ErrorCode run(Start&& start) {
    ErrorCode result;
    bool done = false;
    start([&result, &done](ErrorCode ec, auto&&...) {
      result = ec;
      done = true;
    });
    drive(done);
    if (!done) result = boost::asio::error::operation_aborted;
    return result;
  }

  // Calls `f` with the stream that carries HTTP: the TLS stream, or the TCP stream for plain HTTP.
  template <typename F>
  void withStream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(*plain_);
    }
  }

  boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  boost::beast::flat_buffer& buffer() { return buffer_; }

  // An idle connection is worth reusing only when nothing arrived on it since the last answer: a readable idle
  // socket means the server closed it (after a restart, an idle timeout) or sent something we cannot place.
  bool looksReusable();
  void close();

 private:
  void drive(const bool& done);

  boost::asio::io_context io_{1};  // one thread runs it; other threads only post to it
  std::optional<TlsStream> tls_;
  std::optional<boost::beast::tcp_stream> plain_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace singleton::kube::detail
