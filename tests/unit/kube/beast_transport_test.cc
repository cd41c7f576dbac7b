// What the Boost.Beast transport does beyond the contract every transport keeps (transport_contract_test.cc): its URL
// parsing and path prefix, recovery when the server closed a kept-alive connection (and the one resend), the Host
// header under tls-server-name, its error texts, a stream timeout that each chunk re-arms, and a throwing handler.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <utility>

#include "kube/beast_connection.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "tests/unit/kube/transport_test_support.h"

namespace singleton::kube {
namespace {

using namespace testing_support;
using testing::TestServer;
using util::ErrorCode;
using namespace std::chrono_literals;

std::shared_ptr<Transport> make(const ClusterConfig& config) {
  auto transport = makeBeastTransport(config);
  EXPECT_TRUE(transport.ok()) << transport.error().describe();
  return transport.ok() ? *transport : nullptr;
}

// A plain HTTP server that drops kept-alive connections the way a restarting apiserver does. kAfterAnswer: closes
// each connection right after its first answer (the client sees it closed while idle). kOnSecondRequest: reads the
// second request on a connection and closes it unanswered (the client learns only once it has sent).
class DroppingServer {
 public:
  enum class Mode { kAfterAnswer, kOnSecondRequest };

  explicit DroppingServer(Mode mode) : mode_(mode) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 16) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length)) {
      throw std::runtime_error("cannot listen");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~DroppingServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_; }

 private:
  // One connection at a time is all the tests need.
  void serve() {
    for (;;) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++connections_;
      std::string pending;
      for (int request = 1;; ++request) {
        if (!readRequest(fd, pending)) break;
        if (mode_ == Mode::kOnSecondRequest && request == 2) break;
        const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
        if (mode_ == Mode::kAfterAnswer) break;
      }
      ::close(fd);
    }
  }
  static bool readRequest(int fd, std::string& pending) {
    std::size_t end;
    while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
      char data[4096];
      const ssize_t n = ::recv(fd, data, sizeof data, 0);
      if (n <= 0) return false;
      pending.append(data, static_cast<std::size_t>(n));
    }
    std::size_t body = 0;
    const std::size_t at = pending.find("Content-Length: ");
    if (at != std::string::npos && at < end) body = std::stoul(pending.substr(at + 16));
    while (pending.size() < end + 4 + body) {
      char data[4096];
      const ssize_t n = ::recv(fd, data, sizeof data, 0);
      if (n <= 0) return false;
      pending.append(data, static_cast<std::size_t>(n));
    }
    pending.erase(0, end + 4 + body);
    return true;
  }

  Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(BeastServerAddress, Parses) {
  auto address = detail::parseServerAddress("https://127.0.0.1:6443");
  ASSERT_TRUE(address.ok());
  EXPECT_TRUE(address->tls);
  EXPECT_EQ(address->host, "127.0.0.1");
  EXPECT_EQ(address->port, "6443");
  EXPECT_EQ(address->authority, "127.0.0.1:6443");
  EXPECT_EQ(address->base_path, "");

  address = detail::parseServerAddress("https://[::1]:6443/k8s/clusters/c-1/");
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(address->host, "::1");
  EXPECT_EQ(address->authority, "[::1]:6443");
  EXPECT_EQ(address->base_path, "/k8s/clusters/c-1");

  address = detail::parseServerAddress("http://api.example");
  ASSERT_TRUE(address.ok());
  EXPECT_FALSE(address->tls);
  EXPECT_EQ(address->port, "80");
  EXPECT_EQ(detail::parseServerAddress("https://api.example")->port, "443");

  for (const char* bad : {"127.0.0.1:6443", "ftp://x", "https://", "https://:6443", "https://h:0", "https://h:x",
                          "https://h:", "https://[::1", "https://u@h", "https://h/p?q=1"}) {
    EXPECT_FALSE(detail::parseServerAddress(bad).ok()) << bad;
  }
  EXPECT_TRUE(detail::isIpAddress("127.0.0.1"));
  EXPECT_TRUE(detail::isIpAddress("::1"));
  EXPECT_FALSE(detail::isIpAddress("kubernetes.default"));
}

TEST(BeastTransport, ServerPathPrefixIsKept) {
  TestServer server({&pki().server}, echo);
  auto answer = make(configFor(server.url() + "/k8s/clusters/c-1/"))->send(get("/api/v1/pods"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  EXPECT_EQ(nlohmann::json::parse(answer->body)["path"], "/k8s/clusters/c-1/api/v1/pods");
}

TEST(BeastTransport, ReconnectsWhenTheServerClosedAnIdleConnection) {
  DroppingServer server(DroppingServer::Mode::kAfterAnswer);
  ClusterConfig config;
  config.server = server.url();
  auto transport = make(config);
  for (int i = 0; i < 3; ++i) {
    auto answer = transport->send(get("/x"));
    ASSERT_TRUE(answer.ok()) << answer.error().describe();
    EXPECT_EQ(answer->body, "ok");
  }
  EXPECT_EQ(server.connections(), 3);
}

TEST(BeastTransport, ResendsOnceWhenAReusedConnectionDiesUnanswered) {
  DroppingServer server(DroppingServer::Mode::kOnSecondRequest);
  ClusterConfig config;
  config.server = server.url();
  auto transport = make(config);
  HttpRequest put = get("/lease");
  put.method = "PUT";
  put.body = "{}";
  for (int i = 0; i < 3; ++i) {
    auto answer = transport->send(put);
    ASSERT_TRUE(answer.ok()) << i << ": " << answer.error().describe();
    EXPECT_EQ(answer->status, 200);
  }
  EXPECT_EQ(server.connections(), 3);  // the second and third requests each found their connection dead
}

TEST(BeastTransport, TlsServerNameKeepsTheHostHeader) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  ClusterConfig config = configFor(server.url());
  config.tls_server_name = "elsewhere.example";
  auto answer = make(config)->send(get("/x"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  // The Host header still names the server we connect to, as client-go does.
  EXPECT_EQ(nlohmann::json::parse(answer->body)["headers"]["host"], "127.0.0.1:" + std::to_string(server.port()));
}

TEST(BeastTransport, ErrorsNameTheUrlAndTheCause) {
  ClusterConfig config;
  config.origin = "kubeconfig /k";
  config.server = "not a url";
  auto transport = makeBeastTransport(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().message, "kubeconfig /k: server \"not a url\": not an http(s) URL");

  int port;
  {
    TestServer server({}, echo);
    port = server.port();
  }
  config = {};
  config.server = "http://127.0.0.1:" + std::to_string(port);
  auto answer = make(config)->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("cannot connect: Connection refused"), std::string::npos)
      << answer.error().message;
}

TEST(BeastTransport, StreamTimeoutIsSilenceNotLength) {
  TestServer server({&pki().server}, [](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    for (int i = 0; i < 8; ++i) {
      connection.chunk("tick\n");
      std::this_thread::sleep_for(150ms);
    }
    connection.endChunked();
  });
  std::string received;
  auto answer = make(configFor(server.url()))
                    ->stream(get("/watch", 400ms), [&](std::string_view chunk) { received += chunk; }, {});
  ASSERT_TRUE(answer.ok()) << answer.error().describe();  // 1.2 s in all, never 400 ms silent
  EXPECT_EQ(std::count(received.begin(), received.end(), '\n'), 8);
}

TEST(BeastTransport, ChunkHandlerExceptionEndsTheStream) {
  TestServer server({&pki().server}, [](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    connection.chunk("hello\n");
    connection.waitForPeerClose(5s);
  });
  auto answer = make(configFor(server.url()))
                    ->stream(get("/watch", 10s), [](std::string_view) { throw std::runtime_error("boom"); }, {});
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kInternal);
  EXPECT_EQ(answer.error().message, "watch chunk handler threw: boom");
}

}  // namespace
}  // namespace singleton::kube
