#include "controller/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include "util/log.h"

namespace singleton::controller {
namespace {

// A bounded queue, so a flood cannot exhaust memory (beyond it, connections are closed at once).
constexpr std::size_t kMaxPending = 64;
constexpr std::size_t kMaxHeaderBytes = std::size_t{8} * 1024;
// A whole request must arrive within this, and a response must drain within it.
constexpr auto kIoDeadline = std::chrono::seconds(5);

const log::Logger& logger() {
  static const log::Logger l{"http"};
  return l;
}

util::Error invalid(const std::string& message) { return util::makeError(util::ErrorCode::kInvalidArgument, message); }

std::string errnoText(int err) { return std::strerror(err); }

const char* reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

int remainingMillis(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Reads until the end of the request head ("\r\n\r\n"). A GET has no body worth reading.
// Gives up early when `wake_fd` becomes readable (the server is stopping).
util::Result<std::string> readHead(int fd, int wake_fd, std::chrono::steady_clock::time_point deadline) {
  std::string head;
  char buffer[2048];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() > kMaxHeaderBytes) return invalid("request head too large");
    pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int ready = ::poll(p, 2, remainingMillis(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return util::makeError(util::ErrorCode::kTimeout, "request not received in time");
    if (p[1].revents != 0) return util::makeError(util::ErrorCode::kCancelled, "server stopping");
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return util::makeError(util::ErrorCode::kNetwork, "connection closed before the request ended");
    head.append(buffer, static_cast<std::size_t>(n));
  }
  return head;
}

void writeAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, remainingMillis(deadline)) > 0) continue;
    }
    return;  // the client went away or is too slow; nothing to tell it
  }
}

std::string renderResponse(const HttpServer::Response& response, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " + reasonPhrase(response.status) + "\r\n";
  out += "Content-Type: " + response.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  if (response.status == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += response.body;
  return out;
}

HttpServer::Response textResponse(int status, std::string body) {
  return HttpServer::Response{status, std::move(body) + "\n", "text/plain; charset=utf-8"};
}

// The request line: "GET /path?query HTTP/1.1".
util::Result<HttpServer::Request> parseRequestLine(std::string_view head) {
  const std::string_view line = head.substr(0, head.find("\r\n"));
  const auto first = line.find(' ');
  const auto second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos) return invalid("malformed request line");
  if (line.substr(second + 1).rfind("HTTP/1.", 0) != 0) return invalid("not HTTP/1.x");
  HttpServer::Request request;
  request.method = std::string(line.substr(0, first));
  const std::string_view target = line.substr(first + 1, second - first - 1);
  if (target.empty() || target[0] != '/') return invalid("request target must be a path");
  const auto question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  return request;
}

// A socket bound and listening on `address`. An empty host listens on all interfaces: IPv6 dual-stack when the
// kernel has IPv6, else IPv4.
util::Result<int> listenOn(const BindAddress& address) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = AF_UNSPEC;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  const int rc = ::getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) return invalid(address.str() + ": " + ::gai_strerror(rc));
  std::string last_error = "no usable address";
  int fd = -1;
  // AI_PASSIVE with no host lists IPv4's 0.0.0.0 first on glibc; prefer "::", which also takes IPv4.
  std::vector<addrinfo*> candidates;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (address.host.empty() && a->ai_family == AF_INET6)
      candidates.insert(candidates.begin(), a);
    else
      candidates.push_back(a);
  }
  for (addrinfo* a : candidates) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = errnoText(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6 && address.host.empty()) {
      const int zero = 0;
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) break;
    last_error = errnoText(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) return util::makeError(util::ErrorCode::kNetwork, "listen on " + address.str() + ": " + last_error);
  return fd;
}

int boundPort(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return 0;
  if (storage.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  if (storage.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

}  // namespace

std::string BindAddress::str() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

util::Result<BindAddress> parseBindAddress(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return invalid("\"" + std::string(text) + "\" is not HOST:PORT or :PORT");
  }
  BindAddress address;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of("[]:") != std::string_view::npos) {
    return invalid("\"" + std::string(text) + "\": an IPv6 host goes in brackets, e.g. [::1]:8080");
  }
  address.host = std::string(host);
  const auto parsed = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (port.empty() || parsed.ec != std::errc() || parsed.ptr != port.data() + port.size() || address.port < 0 ||
      address.port > 65535) {
    return invalid("\"" + std::string(text) + "\": port must be a number from 0 to 65535");
  }
  return address;
}

HttpServer::HttpServer(std::string name, HttpServerOptions options)
    : name_(std::move(name)), workers_count_(std::max(options.workers, 1)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::handle(std::string path, Handler handler) { routes_[std::move(path)] = std::move(handler); }

util::Status HttpServer::start(std::string_view bind_address) {
  auto address = parseBindAddress(bind_address);
  if (!address.ok()) return std::move(address).takeError();
  auto fd = listenOn(*address);
  if (!fd.ok()) return std::move(fd).takeError();
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    ::close(*fd);
    return util::makeError(util::ErrorCode::kInternal, "pipe: " + errnoText(errno));
  }
  listen_fd_ = *fd;
  port_ = boundPort(listen_fd_);
  for (int i = 0; i < workers_count_; ++i) workers_.emplace_back([this] { workLoop(); });
  acceptor_ = std::thread([this] { acceptLoop(); });
  logger().info("serving", {.values = {{"server", name_}, {"address", address->host + ":" + std::to_string(port_)}}});
  return {};
}

void HttpServer::stop() {
  if (!acceptor_.joinable()) return;
  {
    std::lock_guard guard(mutex_);
    stopping_ = true;
  }
  const char byte = 0;
  while (::write(wake_pipe_[1], &byte, 1) < 0 && errno == EINTR) {
  }
  acceptor_.join();
  ready_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
  for (int fd : pending_) ::close(fd);
  pending_.clear();
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
  listen_fd_ = wake_pipe_[0] = wake_pipe_[1] = -1;
}

void HttpServer::acceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      logger().error("poll failed; no longer serving", {.err = errnoText(errno), .values = {{"server", name_}}});
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // the client gave up already, or we are short of descriptors for a moment
    std::unique_lock guard(mutex_);
    if (pending_.size() >= kMaxPending) {
      guard.unlock();
      ::close(fd);
      continue;
    }
    pending_.push_back(fd);
    guard.unlock();
    ready_.notify_one();
  }
}

void HttpServer::workLoop() {
  for (;;) {
    int fd = -1;
    {
      std::unique_lock guard(mutex_);
      ready_.wait(guard, [this] { return stopping_ || !pending_.empty(); });
      // Connections accepted before stop() are still answered; stop() closes what is left after the workers end.
      if (pending_.empty()) return;
      fd = pending_.front();
      pending_.pop_front();
    }
    serve(fd);
    // Half-close first, so the client reads our whole answer before it sees the connection end.
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }
}

void HttpServer::serve(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + kIoDeadline;
  auto head = readHead(fd, wake_pipe_[0], deadline);
  if (!head.ok()) {
    if (head.error().code == util::ErrorCode::kInvalidArgument) {
      writeAll(fd, renderResponse(textResponse(431, head.error().message), false), deadline);
    }
    return;
  }
  auto request = parseRequestLine(*head);
  if (!request.ok()) {
    writeAll(fd, renderResponse(textResponse(400, request.error().message), false), deadline);
    return;
  }
  const bool head_only = request->method == "HEAD";
  Response response;
  if (request->method != "GET" && !head_only) {
    response = textResponse(405, "method not allowed");
  } else if (auto route = routes_.find(request->path); route == routes_.end()) {
    response = textResponse(404, "not found");
  } else {
    try {
      response = route->second(*request);
    } catch (const std::exception& e) {
      logger().error("handler failed", {.err = e.what(), .values = {{"server", name_}, {"path", request->path}}});
      response = textResponse(500, "internal error");
    }
  }
  writeAll(fd, renderResponse(response, head_only), deadline);
}

}  // namespace singleton::controller
