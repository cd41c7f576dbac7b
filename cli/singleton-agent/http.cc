#include "cli/singleton-agent/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace singleton::cli {
namespace {

const char* reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

void writeAll(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

util::Result<std::unique_ptr<TinyHttpServer>> TinyHttpServer::listen(const std::string& host, int port,
                                                                     Handler handler) {
  auto bad = [&](const std::string& what) {
    return util::makeError(util::ErrorCode::kInvalidArgument,
                           "--listen " + host + ":" + std::to_string(port) + ": " + what + ": " + std::strerror(errno));
  };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const std::string ip = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    errno = EINVAL;
    return bad("not an IPv4 address");
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return bad("socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    auto e = bad("bind");
    ::close(fd);
    return e;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return std::unique_ptr<TinyHttpServer>(new TinyHttpServer(fd, ntohs(addr.sin_port), std::move(handler)));
}

TinyHttpServer::TinyHttpServer(int fd, int port, Handler handler)
    : fd_(fd), port_(port), handler_(std::move(handler)), thread_([this](std::stop_token stop) { loop(stop); }) {}

TinyHttpServer::~TinyHttpServer() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void TinyHttpServer::loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    serve(client);
    ::close(client);
  }
}

void TinyHttpServer::serve(int client) {
  // Read the request head (at most 8 KiB, within 1 s); only its first line matters.
  std::string head;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return;
    pollfd p{client, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return;
    const ssize_t n = ::recv(client, buf, sizeof buf, 0);
    if (n <= 0) return;
    head.append(buf, static_cast<std::size_t>(n));
  }
  const std::string line = head.substr(0, head.find("\r\n"));
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  HttpAnswer answer;
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    answer = {400, "text/plain", "bad request\n"};
  } else if (line.substr(0, sp1) != "GET") {
    answer = {405, "text/plain", "only GET\n"};
  } else {
    std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    answer = handler_(path);
  }
  writeAll(client, "HTTP/1.1 " + std::to_string(answer.status) + " " + reasonPhrase(answer.status) +
                       "\r\nContent-Type: " + answer.content_type + "\r\nContent-Length: " +
                       std::to_string(answer.body.size()) + "\r\nConnection: close\r\n\r\n" + answer.body);
}

}  // namespace singleton::cli
