// The Beast transport's response parsing, from a fake server: whatever bytes come back on the socket (a broken status
// line, bad chunking, a lying Content-Length, garbage, a close half-way), send() and stream() return an answer or an
// error value, and the client's classification of the answer never crashes.
// Input: byte 0 picks send() or stream(); the rest is the whole answer the server writes before closing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "kube/beast_transport.h"
#include "kube/client.h"

namespace {

// One listening socket and thread for the whole run: every connection gets the current input as its answer (a
// transport that retries on a new connection gets the same bytes again).
struct FakeServer {
  int fd = -1;
  int port = 0;
  std::mutex mutex;
  std::string answer;
  FakeServer() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 4) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    port = ntohs(addr.sin_port);
    std::thread([this] {
      while (true) serveOne();
    }).detach();
  }
  void setAnswer(std::string text) {
    std::lock_guard guard(mutex);
    answer = std::move(text);
  }
  // Accepts one connection, reads the request head, writes the answer and closes.
  void serveOne() {
    const int conn = ::accept(fd, nullptr, nullptr);
    if (conn < 0) return;
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(conn, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      request.append(buffer, static_cast<std::size_t>(n));
    }
    std::string reply;
    {
      std::lock_guard guard(mutex);
      reply = answer;
    }
    (void)!::send(conn, reply.data(), reply.size(), MSG_NOSIGNAL);
    ::shutdown(conn, SHUT_WR);
    ::close(conn);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static FakeServer server;
  static const std::shared_ptr<singleton::kube::Transport> transport = [] {
    singleton::kube::ClusterConfig config;
    config.server = "http://127.0.0.1:" + std::to_string(server.port);
    singleton::kube::TransportOptions options;
    options.idle_connections = 0;  // a new connection per request: the server closes each one
    auto made = singleton::kube::makeBeastTransport(config, options);
    if (!made.ok()) std::abort();
    return *made;
  }();
  if (size == 0) return 0;
  const bool streamed = (data[0] & 1) != 0;
  server.setAnswer(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  singleton::kube::HttpRequest request;
  request.path = "/api/v1/namespaces/default/pods";
  request.timeout = std::chrono::milliseconds(2000);
  if (streamed) {
    std::size_t bytes = 0;
    (void)transport->stream(
        request, [&](std::string_view chunk) { bytes += chunk.size(); }, std::stop_token{});
  } else {
    auto response = transport->send(request);
    if (response.ok() && (response->status < 200 || response->status >= 300)) {
      (void)singleton::kube::classifyResponse(*response);
    }
  }
  return 0;
}
