#include "controller/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "support/http_get.h"

namespace singleton::controller {
namespace {

using namespace std::chrono_literals;
using testing::httpGet;
using testing::rawHttp;

TEST(BindAddressTest, ParsesGoStyleAddresses) {
  struct Case {
    const char* text;
    const char* host;
    int port;
  } cases[] = {
      {":8080", "", 8080},         {"127.0.0.1:0", "127.0.0.1", 0},
      {"[::1]:9090", "::1", 9090}, {"localhost:65535", "localhost", 65535},
      {"[::]:1", "::", 1},
  };
  for (const auto& c : cases) {
    auto a = parseBindAddress(c.text);
    ASSERT_TRUE(a.ok()) << c.text << ": " << a.error().message;
    EXPECT_EQ(a->host, c.host) << c.text;
    EXPECT_EQ(a->port, c.port) << c.text;
  }
  EXPECT_EQ(parseBindAddress("[::1]:80")->str(), "[::1]:80");
  EXPECT_EQ(parseBindAddress(":80")->str(), ":80");
}

TEST(BindAddressTest, RejectsMalformedAddresses) {
  for (const char* text : {"8080", "", ":", ":http", ":65536", ":-1", "::1:80", "host:80x", "[::1:80"}) {
    auto a = parseBindAddress(text);
    ASSERT_FALSE(a.ok()) << text;
    EXPECT_EQ(a.error().code, util::ErrorCode::kInvalidArgument) << text;
  }
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.handle("/healthz", [](const HttpServer::Request&) { return HttpServer::Response{200, "ok\n"}; });
    server_.handle("/echo", [](const HttpServer::Request& r) {
      return HttpServer::Response{200, r.method + " " + r.path + " ? " + r.query, "text/x-echo"};
    });
    server_.handle("/throws",
                   [](const HttpServer::Request&) -> HttpServer::Response { throw std::runtime_error("boom"); });
    ASSERT_TRUE(server_.start("127.0.0.1:0").ok());
    ASSERT_GT(server_.port(), 0) << "port 0 reports the port the kernel chose";
  }

  HttpServer server_{"test"};
};

TEST_F(HttpServerTest, ServesRoutesWithLengthAndConnectionClose) {
  auto a = httpGet(server_.port(), "/healthz");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "ok\n");
  EXPECT_NE(a.head.find("Content-Length: 3\r\n"), std::string::npos) << a.head;
  EXPECT_NE(a.head.find("Connection: close"), std::string::npos) << a.head;
  EXPECT_NE(a.head.find("Content-Type: text/plain; charset=utf-8"), std::string::npos) << a.head;

  auto echo = httpGet(server_.port(), "/echo?x=1&y=2");
  EXPECT_EQ(echo.status, 200);
  EXPECT_EQ(echo.body, "GET /echo ? x=1&y=2") << "the query is split off the path";
  EXPECT_NE(echo.head.find("Content-Type: text/x-echo"), std::string::npos);
}

TEST_F(HttpServerTest, UnknownPathIs404AndOtherMethodsAre405) {
  EXPECT_EQ(httpGet(server_.port(), "/nope").status, 404);
  EXPECT_EQ(httpGet(server_.port(), "/healthz/").status, 404) << "exact paths only";
  auto post = httpGet(server_.port(), "/healthz", "POST");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.head.find("Allow: GET, HEAD"), std::string::npos);
}

TEST_F(HttpServerTest, HeadHasTheHeadersButNoBody) {
  auto a = httpGet(server_.port(), "/healthz", "HEAD");
  EXPECT_EQ(a.status, 200);
  EXPECT_NE(a.head.find("Content-Length: 3"), std::string::npos);
  EXPECT_EQ(a.body, "");
}

TEST_F(HttpServerTest, AThrowingHandlerAnswers500AndTheServerGoesOn) {
  EXPECT_EQ(httpGet(server_.port(), "/throws").status, 500);
  EXPECT_EQ(httpGet(server_.port(), "/healthz").status, 200);
}

TEST_F(HttpServerTest, MalformedRequestsAre400AndOversizedHeads431) {
  EXPECT_EQ(rawHttp(server_.port(), "GARBAGE\r\n\r\n").status, 400);
  EXPECT_EQ(rawHttp(server_.port(), "GET healthz HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(rawHttp(server_.port(), "GET /healthz SPDY/3\r\n\r\n").status, 400);
  const std::string huge = "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(20'000, 'a') + "\r\n\r\n";
  EXPECT_EQ(rawHttp(server_.port(), huge).status, 431);
  EXPECT_EQ(httpGet(server_.port(), "/healthz").status, 200);
}

TEST_F(HttpServerTest, RequestsSplitAcrossPacketsAreAssembled) {
  auto a = rawHttp(server_.port(), {"GE", "T /echo?q HTTP/1.1\r\nHo", "st: x\r\n\r", "\n"}, 20ms);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "GET /echo ? q");
}

TEST_F(HttpServerTest, ServesConcurrentClients) {
  constexpr int kClients = 16;
  constexpr int kRequestsEach = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      for (int j = 0; j < kRequestsEach; ++j) {
        if (httpGet(server_.port(), "/healthz").status == 200) ++ok;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, kClients * kRequestsEach);
}

TEST_F(HttpServerTest, AStalledClientDoesNotBlockOthers) {
  // Connects and sends half a request, then waits: the other workers still answer.
  std::thread stalled([&] { rawHttp(server_.port(), "GET /healthz HTTP/1.1\r\n"); });
  std::this_thread::sleep_for(50ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(httpGet(server_.port(), "/healthz").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  const auto stopping = std::chrono::steady_clock::now();
  server_.stop();  // drops the stalled connection at once, without waiting for its read deadline
  stalled.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 2s);
}

TEST_F(HttpServerTest, StopClosesTheListenerAndIsIdempotent) {
  const int port = server_.port();
  server_.stop();
  EXPECT_EQ(httpGet(port, "/healthz").status, 0) << "nothing listens after stop";
  server_.stop();
}

TEST(HttpServerBindTest, APortInUseIsAnErrorNamingTheAddress) {
  HttpServer first("first");
  ASSERT_TRUE(first.start("127.0.0.1:0").ok());
  HttpServer second("second");
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  auto s = second.start(address);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(address), std::string::npos) << s.error().message;
  EXPECT_FALSE(HttpServer("bad").start("nonsense").ok());
}

TEST(HttpServerBindTest, AllInterfacesIncludeLoopback) {
  HttpServer server("all");
  server.handle("/x", [](const HttpServer::Request&) { return HttpServer::Response{200, "x"}; });
  ASSERT_TRUE(server.start(":0").ok());
  EXPECT_EQ(httpGet(server.port(), "/x").status, 200) << "\":port\" also answers on 127.0.0.1";
}

TEST(HttpServerBindTest, OneWorkerServesRequestsInTurn) {
  HttpServer server("one", HttpServerOptions{.workers = 1});
  server.handle("/x", [](const HttpServer::Request&) { return HttpServer::Response{200, "x"}; });
  ASSERT_TRUE(server.start("127.0.0.1:0").ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(httpGet(server.port(), "/x").status, 200);
  // A client that never finishes its request holds the only worker until it gives up or leaves; the next is served.
  auto slow = rawHttp(server.port(), {"GET /x HTTP/1.1\r\n", "\r\n"}, 20ms);
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(httpGet(server.port(), "/x").status, 200);
}

TEST(HttpServerBindTest, StopWithoutStartIsHarmless) {
  HttpServer server("never");
  server.stop();
  EXPECT_EQ(server.port(), 0);
}

}  // namespace
}  // namespace singleton::controller
