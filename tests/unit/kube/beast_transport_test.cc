// The Boost.Beast transport against a local server: TLS trust and client certificates, readable TLS errors, connection
// reuse (and recovery when the server closed a kept-alive connection), deadlines, cancellation, and streams delivered
// as they arrive, with an inactivity timeout that each chunk re-arms.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <utility>

#include "kube/beast_connection.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "tests/unit/kube/test_files.h"
#include "tests/unit/kube/test_tls_server.h"

namespace singleton::kube {
namespace {

using testing::Identity;
using testing::TestConnection;
using testing::TestPki;
using testing::TestRequest;
using testing::TestServer;
using util::ErrorCode;
using namespace std::chrono_literals;

struct Pki {
  Identity ca = TestPki::makeCa("test-ca");
  Identity other_ca = TestPki::makeCa("other-ca");
  Identity server = TestPki::makeLeaf("kube-apiserver", ca, "IP:127.0.0.1,DNS:kubernetes.default");
  Identity client = TestPki::makeLeaf("tester", ca, "");
};

const Pki& pki() {
  static const Pki instance;
  return instance;
}

HttpRequest get(const std::string& path, std::chrono::milliseconds timeout = 5s) {
  HttpRequest request;
  request.path = path;
  request.timeout = timeout;
  return request;
}

ClusterConfig configFor(const std::string& url) {
  ClusterConfig config;
  config.server = url;
  config.ca_pem = pki().ca.cert_pem;
  config.ca_origin = "file /etc/test/ca.crt";
  config.origin = "test";
  return config;
}

std::shared_ptr<Transport> make(const ClusterConfig& config) {
  auto transport = makeBeastTransport(config);
  EXPECT_TRUE(transport.ok()) << transport.error().describe();
  return transport.ok() ? *transport : nullptr;
}

void echo(const TestRequest& request, TestConnection& connection) {
  nlohmann::json answer = {{"method", request.method}, {"path", request.path}, {"body", request.body}};
  for (const auto& [name, value] : request.headers) answer["headers"][name] = value;
  connection.respond(200, answer.dump(), {{"X-Test", "yes"}});
}

void hang(const TestRequest&, TestConnection& connection) { connection.waitForPeerClose(5s); }

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

TEST(BeastTransport, TlsWithOurCaSendsTokenUserAgentHostAndBody) {
  TestServer server({&pki().server}, echo);
  ClusterConfig config = configFor(server.url());
  config.token = std::make_shared<StaticTokenSource>("secret-token");
  auto transport = make(config);
  ASSERT_TRUE(transport);

  HttpRequest request = get("/api/v1/namespaces/a%20b/pods?labelSelector=x%3Dy");
  request.method = "PUT";
  request.body = R"({"a":1})";
  request.content_type = "application/merge-patch+json";
  request.headers["User-Agent"] = "singleton-test/1";
  auto answer = transport->send(request);
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->headers["x-test"], "yes");
  const auto echoed = nlohmann::json::parse(answer->body);
  EXPECT_EQ(echoed["method"], "PUT");
  EXPECT_EQ(echoed["path"], "/api/v1/namespaces/a%20b/pods?labelSelector=x%3Dy");
  EXPECT_EQ(echoed["body"], R"({"a":1})");
  EXPECT_EQ(echoed["headers"]["authorization"], "Bearer secret-token");
  EXPECT_EQ(echoed["headers"]["user-agent"], "singleton-test/1");
  EXPECT_EQ(echoed["headers"]["content-type"], "application/merge-patch+json");
  EXPECT_EQ(echoed["headers"]["accept"], "application/json");
  EXPECT_EQ(echoed["headers"]["host"], "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(transport->describe(), server.url());
}

TEST(BeastTransport, ServerPathPrefixIsKept) {
  TestServer server({&pki().server}, echo);
  auto answer = make(configFor(server.url() + "/k8s/clusters/c-1/"))->send(get("/api/v1/pods"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  EXPECT_EQ(nlohmann::json::parse(answer->body)["path"], "/k8s/clusters/c-1/api/v1/pods");
}

TEST(BeastTransport, ReusesOneConnectionForSequentialRequests) {
  TestServer server({&pki().server}, echo);
  auto transport = make(configFor(server.url()));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(transport->send(get("/x")).ok());
  EXPECT_EQ(server.connections(), 1);
}

TEST(BeastTransport, ConcurrentRequestsFromSeveralThreads) {
  TestServer server({&pki().server}, echo);
  auto transport = make(configFor(server.url()));
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (transport->send(get("/x")).ok()) ++succeeded;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(succeeded, 100);
  EXPECT_LE(server.connections(), 4);
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

TEST(BeastTransport, TokenIsReadForEveryRequest) {
  TestServer server({&pki().server}, echo);
  testing::TempDir dir;
  const std::string token_file = dir.write("token", "one");
  ClusterConfig config = configFor(server.url());
  config.token = std::make_shared<FileTokenSource>(token_file);
  auto transport = make(config);
  auto first = transport->send(get("/x"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(nlohmann::json::parse(first->body)["headers"]["authorization"], "Bearer one");
  dir.write("token", "two-rotated");
  auto second = transport->send(get("/x"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(nlohmann::json::parse(second->body)["headers"]["authorization"], "Bearer two-rotated");
}

TEST(BeastTransport, WrongCaFailsWithAReadableMessage) {
  TestServer server({&pki().server}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem = pki().other_ca.cert_pem;
  config.ca_origin = "file /home/me/.kube/wrong-ca.crt";
  auto answer = make(config)->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kNetwork);
  const std::string& message = answer.error().message;
  EXPECT_NE(message.find("TLS with " + server.url() + " failed: certificate verify failed"), std::string::npos)
      << message;
  EXPECT_NE(message.find("file /home/me/.kube/wrong-ca.crt"), std::string::npos) << message;
  EXPECT_NE(message.find("local issuer"), std::string::npos) << message;  // OpenSSL's own reason
}

TEST(BeastTransport, SystemCasAreUsedWhenNoCaIsGiven) {
  TestServer server({&pki().server}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem.clear();
  config.ca_origin.clear();
  auto answer = make(config)->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("trusting the system CAs"), std::string::npos) << answer.error().message;
}

TEST(BeastTransport, HostNameMismatchIsExplained) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  auto answer = make(configFor(server.url()))->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("not valid for \"127.0.0.1\" (it names DNS:elsewhere.example)"),
            std::string::npos)
      << answer.error().message;
}

TEST(BeastTransport, TlsServerNameOverridesTheNameChecked) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  ClusterConfig config = configFor(server.url());
  config.tls_server_name = "elsewhere.example";
  auto answer = make(config)->send(get("/x"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  // The Host header still names the server we connect to, as client-go does.
  EXPECT_EQ(nlohmann::json::parse(answer->body)["headers"]["host"], "127.0.0.1:" + std::to_string(server.port()));
}

TEST(BeastTransport, InsecureSkipVerifyAcceptsAnyCertificate) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().other_ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem.clear();
  config.insecure_skip_tls_verify = true;
  ASSERT_TRUE(make(config)->send(get("/x")).ok());
}

TEST(BeastTransport, ClientCertificate) {
  TestServer server({&pki().server, &pki().ca}, echo);
  ClusterConfig config = configFor(server.url());
  config.client_cert_pem = pki().client.cert_pem;
  config.client_key_pem = pki().client.key_pem;
  auto answer = make(config)->send(get("/x"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();

  // With TLS 1.3 the server refuses after the client's side of the handshake is done: a TLS alert or a reset.
  auto refused = make(configFor(server.url()))->send(get("/x"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNetwork) << refused.error().describe();
}

TEST(BeastTransport, UnreadableTlsMaterialAndBadUrlsAreRefusedUpFront) {
  ClusterConfig config;
  config.server = "https://127.0.0.1:1";
  config.origin = "kubeconfig /k";
  config.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
  config.ca_origin = "file /x/ca.crt";
  auto transport = makeBeastTransport(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(transport.error().message.find("CA bundle from file /x/ca.crt"), std::string::npos)
      << transport.error().message;

  config.ca_pem.clear();
  config.client_cert_pem = pki().client.cert_pem;
  config.client_key_pem = pki().server.key_pem;  // someone else's key
  transport = makeBeastTransport(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().message, "client key from kubeconfig /k: does not belong to the client certificate");

  config = {};
  config.origin = "kubeconfig /k";
  config.server = "not a url";
  transport = makeBeastTransport(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().message, "kubeconfig /k: server \"not a url\": not an http(s) URL");
}

TEST(BeastTransport, ConnectionRefused) {
  int port;
  {
    TestServer server({}, echo);
    port = server.port();
  }
  ClusterConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  auto answer = make(config)->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kNetwork);
  EXPECT_TRUE(answer.error().retryable());
  EXPECT_NE(answer.error().message.find("cannot connect: Connection refused"), std::string::npos)
      << answer.error().message;
}

TEST(BeastTransport, SendDeadline) {
  TestServer server({&pki().server}, hang);
  auto transport = make(configFor(server.url()));
  const auto start = std::chrono::steady_clock::now();
  auto answer = transport->send(get("/slow", 300ms));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kTimeout);
  EXPECT_NE(answer.error().message.find("no answer within 0.3s"), std::string::npos) << answer.error().message;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 1s);
}

TEST(BeastTransport, SendCancel) {
  TestServer server({&pki().server}, hang);
  auto transport = make(configFor(server.url()));
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  auto answer = transport->send(get("/slow", 10s), stop.get_token());
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kCancelled);
  EXPECT_LT(took, 300ms);

  std::stop_source already;
  already.request_stop();
  EXPECT_EQ(transport->send(get("/x"), already.get_token()).error().code, ErrorCode::kCancelled);
}

TEST(BeastTransport, StreamDeliversEachChunkBeforeTheNextIsSent) {
  std::mutex mutex;
  std::condition_variable cv;
  int delivered = 0;
  TestServer server({&pki().server}, [&](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    for (int i = 1; i <= 3; ++i) {
      connection.chunk("{\"n\":" + std::to_string(i) + "}\n");
      // The next piece goes out only once the client has seen this one: a transport that buffered would hang.
      std::unique_lock lock(mutex);
      if (!cv.wait_for(lock, 3s, [&] { return delivered >= i; })) return;
    }
    connection.endChunked();
  });
  std::string received;
  auto answer = make(configFor(server.url()))
                    ->stream(get("/watch", 10s),
                             [&](std::string_view chunk) {
                               received += chunk;
                               std::lock_guard guard(mutex);
                               delivered = static_cast<int>(std::count(received.begin(), received.end(), '\n'));
                               cv.notify_all();
                             },
                             {});
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->body, "");
  EXPECT_EQ(received, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
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

TEST(BeastTransport, StreamErrorStatusReturnsTheBody) {
  TestServer server({&pki().server}, [](const TestRequest&, TestConnection& connection) {
    connection.respond(410, R"({"kind":"Status","reason":"Expired","code":410})");
  });
  bool called = false;
  auto answer = make(configFor(server.url()))->stream(get("/watch"), [&](std::string_view) { called = true; }, {});
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  EXPECT_EQ(answer->status, 410);
  EXPECT_EQ(classifyResponse(*answer).code, ErrorCode::kGone);
  EXPECT_FALSE(called);
}

TEST(BeastTransport, StreamSilenceTimesOut) {
  TestServer server({&pki().server}, [](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    connection.chunk("first\n");
    connection.waitForPeerClose(5s);
  });
  std::string received;
  const auto start = std::chrono::steady_clock::now();
  auto answer =
      make(configFor(server.url()))->stream(get("/watch", 400ms), [&](std::string_view c) { received += c; }, {});
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kTimeout) << answer.error().describe();
  EXPECT_NE(answer.error().message.find("silent for 0.4s"), std::string::npos) << answer.error().message;
  EXPECT_EQ(received, "first\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(BeastTransport, StreamStopClosesTheConnectionPromptly) {
  std::promise<bool> peer_closed;
  TestServer server({&pki().server}, [&](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    connection.chunk("hello\n");
    peer_closed.set_value(connection.waitForPeerClose(5s));
  });
  std::stop_source stop;
  std::promise<void> first_chunk;
  std::chrono::steady_clock::time_point stopped_at;
  std::thread stopper([&] {
    first_chunk.get_future().wait();
    std::this_thread::sleep_for(50ms);  // the watch is blocked reading
    stopped_at = std::chrono::steady_clock::now();
    stop.request_stop();
  });
  bool first = true;
  auto answer = make(configFor(server.url()))
                    ->stream(
                        get("/watch", 10s),
                        [&](std::string_view) {
                          if (std::exchange(first, false)) first_chunk.set_value();
                        },
                        stop.get_token());
  const auto returned_at = std::chrono::steady_clock::now();
  stopper.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kCancelled);
  EXPECT_LT(returned_at - stopped_at, 100ms);
  auto closed = peer_closed.get_future();
  ASSERT_EQ(closed.wait_for(3s), std::future_status::ready);
  EXPECT_TRUE(closed.get());
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

TEST(BeastTransport, ServerBreakingTheStreamIsANetworkError) {
  TestServer server({}, [](const TestRequest&, TestConnection& connection) {
    connection.startChunked();
    connection.chunk("partial");
    connection.write("zz\r\n");  // not a chunk header: the body is broken
  });
  ClusterConfig config;
  config.server = server.url();
  auto answer = make(config)->stream(get("/watch"), [](std::string_view) {}, {});
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kNetwork) << answer.error().describe();
  EXPECT_NE(answer.error().message.find("bad HTTP from the server"), std::string::npos) << answer.error().message;
}

// Two watches held open and requests in parallel: each call runs its own I/O, so none waits for another.
TEST(BeastTransport, TwoWatchesAndConcurrentRequests) {
  TestServer server({&pki().server}, [](const TestRequest& request, TestConnection& connection) {
    if (request.path != "/watch") return echo(request, connection);
    connection.startChunked();
    for (int i = 0; i < 200; ++i) {
      if (!connection.chunk("tick\n")) return;
      if (connection.waitForPeerClose(20ms)) return;
    }
    connection.endChunked();
  });
  auto transport = make(configFor(server.url()));
  std::stop_source stop;
  std::atomic<int> ticks[2] = {0, 0};
  std::vector<std::thread> watchers;
  for (int w = 0; w < 2; ++w) {
    watchers.emplace_back([&, w] {
      auto ended = transport->stream(
          get("/watch", 10s), [&](std::string_view) { ++ticks[w]; }, stop.get_token());
      EXPECT_FALSE(ended.ok());
    });
  }
  while (ticks[0] == 0 || ticks[1] == 0) std::this_thread::sleep_for(5ms);

  std::atomic<int> succeeded{0};
  std::vector<std::thread> senders;
  for (int s = 0; s < 3; ++s) {
    senders.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        if (transport->send(get("/x", 2s)).ok()) ++succeeded;
      }
    });
  }
  for (auto& sender : senders) sender.join();
  const int ticks_before = ticks[0] + ticks[1];
  std::this_thread::sleep_for(100ms);
  EXPECT_GT(ticks[0] + ticks[1], ticks_before);
  stop.request_stop();
  for (auto& watcher : watchers) watcher.join();
  EXPECT_EQ(succeeded, 60);
}

}  // namespace
}  // namespace singleton::kube
