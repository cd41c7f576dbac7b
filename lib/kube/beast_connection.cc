#include "kube/beast_connection.h"

#include <poll.h>

#include <string_view>

#include <openssl/err.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

namespace singleton::kube::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

bool isPort(std::string_view text) {
  if (text.empty() || text.size() > 5) return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return value > 0 && value <= 65535;
}

}  // namespace

util::Result<ServerAddress> parseServerAddress(const std::string& server) {
  auto bad = [](const std::string& why) { return util::makeError(util::ErrorCode::kInvalidArgument, why); };
  ServerAddress address;
  std::string_view rest = server;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    address.tls = false;
    rest.remove_prefix(7);
  } else {
    return bad("not an http(s) URL");
  }
  const std::size_t path_start = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (path.find_first_of("?#") != std::string_view::npos) return bad("a query or fragment is not supported");
  if (authority.find('@') != std::string_view::npos) return bad("user info in the URL is not supported");
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);

  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {  // IPv6 literal
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("no closing ] in the host");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the host");
      port = after.substr(1);
    }
  } else if (const std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return bad("empty port");
  }
  if (host.empty()) return bad("no host");
  if (!port.empty() && !isPort(port)) return bad("bad port \"" + std::string(port) + "\"");

  address.host = std::string(host);
  address.port = port.empty() ? (address.tls ? "443" : "80") : std::string(port);
  address.authority = std::string(authority);
  address.base_path = std::string(path);
  return address;
}

bool isIpAddress(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

BeastConnection::BeastConnection(asio::ssl::context& tls_context, bool tls) {
  if (tls) {
    tls_.emplace(io_, tls_context);
  } else {
    plain_.emplace(io_);
  }
}

BeastConnection::StopScope::StopScope(BeastConnection& connection, std::stop_token stop)
    : armed_(std::make_shared<std::atomic<bool>>(true)) {
  BeastConnection* target = &connection;
  std::shared_ptr<std::atomic<bool>> armed = armed_;
  // Runs on the thread that requests the stop, so it only posts: the close happens on the connection's own thread.
  callback_.emplace(std::move(stop), std::function<void()>([target, armed] {
                      asio::post(target->io_, [target, armed] {
                        if (*armed) target->close();
                      });
                    }));
}

BeastConnection::StopScope::~StopScope() {
  callback_.reset();  // waits for a callback running on another thread, so nothing is posted after this
  *armed_ = false;
}

BeastConnection::ErrorCode BeastConnection::connect(const std::string& host, const std::string& port,
                                                    const std::string& verify_name, const std::string& sni) {
  ErrorCode ec;
  // A synchronous lookup: an asynchronous one would start a resolver thread for every io_context. An IP address (the
  // usual apiserver address) needs no lookup at all; a name is looked up only when a new connection is opened.
  tcp::resolver resolver(io_);
  const auto endpoints = resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
  if (ec) return ec;
  ec = run([&](auto handler) { tcp().async_connect(endpoints, std::move(handler)); });
  if (ec) return ec;
  // Requests are small writes answered at once; Nagle's algorithm would only add delay.
  tcp().socket().set_option(tcp::no_delay(true), ec);
  if (!tls_) return {};

  SSL* ssl = tls_->native_handle();
  if (!sni.empty() && SSL_set_tlsext_host_name(ssl, sni.c_str()) != 1) {
    return ErrorCode(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  }
  if (!verify_name.empty()) {
    tls_->set_verify_mode(asio::ssl::verify_peer, ec);
    if (!ec) tls_->set_verify_callback(asio::ssl::host_name_verification(verify_name), ec);
    if (ec) return ec;
  }
  return run([&](auto handler) { tls_->async_handshake(asio::ssl::stream_base::client, std::move(handler)); });
}

void BeastConnection::drive(const bool& done) {
  io_.restart();  // the previous call left it stopped once it ran out of work
  while (!done) {
    // Returns 0 only without outstanding work, which the pending operation is; run() treats it as a failure.
    if (io_.run_one() == 0) return;
  }
}

bool BeastConnection::looksReusable() {
  auto& socket = tcp().socket();
  if (!socket.is_open() || buffer_.size() != 0) return false;
  pollfd events{socket.native_handle(), POLLIN, 0};
  return ::poll(&events, 1, 0) == 0;
}

void BeastConnection::close() {
  ErrorCode ignored;
  tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp().close();
}

}  // namespace singleton::kube::detail
