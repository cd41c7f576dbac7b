// The contract every kube::Transport keeps, run against each of them (cpprestsdk, the library's default, and
// Boost.Beast, the shipped binaries'): TLS trust and client certificates with readable errors, the token read for
// every request, deadlines, cancellation, connection reuse, and streams delivered chunk by chunk with a silence
// timeout. What only one transport does is tested in its own file (cpprest_transport_test.cc, beast_transport_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <thread>
#include <vector>

#include "kube/beast_transport.h"
#include "kube/client.h"
#include "tests/unit/kube/test_files.h"
#include "tests/unit/kube/transport_test_support.h"

namespace singleton::kube {
namespace {

using namespace testing_support;
using testing::TestServer;
using util::ErrorCode;
using namespace std::chrono_literals;

struct TransportKind {
  const char* name;
  util::Result<std::shared_ptr<Transport>> (*make)(const ClusterConfig& config);
  // At most this many connections for 100 sequential requests (cpprest pools a connection only once its request
  // context is released on an I/O thread, a moment after send() returns, so the next request may open a second).
  int sequential_connections;
};

// cpprestsdk's I/O pool is process-wide and sized once: two threads, as the library's callers use it.
util::Result<std::shared_ptr<Transport>> makeCpprest(const ClusterConfig& config) { return makeTransport(config, {2}); }
util::Result<std::shared_ptr<Transport>> makeBeast(const ClusterConfig& config) { return makeBeastTransport(config); }

const TransportKind kTransports[] = {{"Cpprest", makeCpprest, 2}, {"Beast", makeBeast, 1}};

class TransportContract : public ::testing::TestWithParam<TransportKind> {
 protected:
  std::shared_ptr<Transport> make(const ClusterConfig& config) {
    auto transport = GetParam().make(config);
    EXPECT_TRUE(transport.ok()) << transport.error().describe();
    return transport.ok() ? *transport : nullptr;
  }
};

TEST_P(TransportContract, TlsWithOurCaSendsTokenUserAgentAndBody) {
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

TEST_P(TransportContract, ReusesConnectionsForSequentialRequests) {
  TestServer server({&pki().server}, echo);
  auto transport = make(configFor(server.url()));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(transport->send(get("/x")).ok());
  EXPECT_LE(server.connections(), GetParam().sequential_connections);
}

TEST_P(TransportContract, ConcurrentRequestsFromSeveralThreads) {
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
}

TEST_P(TransportContract, TokenIsReadForEveryRequest) {
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

TEST_P(TransportContract, WrongCaFailsWithAReadableMessage) {
  TestServer server({&pki().server}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem = pki().other_ca.cert_pem;
  config.ca_origin = "file /home/me/.kube/wrong-ca.crt";
  auto transport = make(config);
  auto answer = transport->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kNetwork);
  const std::string& message = answer.error().message;
  EXPECT_NE(message.find("TLS with " + server.url() + " failed: certificate verify failed"), std::string::npos)
      << message;
  EXPECT_NE(message.find("file /home/me/.kube/wrong-ca.crt"), std::string::npos) << message;
  EXPECT_NE(message.find("local issuer"), std::string::npos) << message;  // OpenSSL's own reason

  auto stream = transport->stream(get("/watch"), [](std::string_view) {}, {});
  ASSERT_FALSE(stream.ok());
  EXPECT_NE(stream.error().message.find("certificate verify failed"), std::string::npos) << stream.error().message;
}

TEST_P(TransportContract, WithoutACaTheSystemCasAreTrustedAndTheErrorSaysSo) {
  // The server's CA is in no system store; the message names what was trusted.
  TestServer server({&pki().server}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem.clear();
  config.ca_origin.clear();
  auto answer = make(config)->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("trusting the system CAs"), std::string::npos) << answer.error().message;
}

TEST_P(TransportContract, HostNameMismatchIsExplained) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  auto answer = make(configFor(server.url()))->send(get("/x"));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("not valid for \"127.0.0.1\" (it names DNS:elsewhere.example)"),
            std::string::npos)
      << answer.error().message;
}

TEST_P(TransportContract, TlsServerNameOverridesTheNameChecked) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  ClusterConfig config = configFor(server.url());
  config.tls_server_name = "elsewhere.example";
  auto answer = make(config)->send(get("/x"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
}

TEST_P(TransportContract, InsecureSkipVerifyAcceptsAnyCertificate) {
  const Identity elsewhere = TestPki::makeLeaf("elsewhere", pki().other_ca, "DNS:elsewhere.example");
  TestServer server({&elsewhere}, echo);
  ClusterConfig config = configFor(server.url());
  config.ca_pem.clear();
  config.insecure_skip_tls_verify = true;
  ASSERT_TRUE(make(config)->send(get("/x")).ok());
}

TEST_P(TransportContract, ClientCertificate) {
  TestServer server({&pki().server, &pki().ca}, echo);
  ClusterConfig config = configFor(server.url());
  config.client_cert_pem = pki().client.cert_pem;
  config.client_key_pem = pki().client.key_pem;
  auto answer = make(config)->send(get("/x"));
  ASSERT_TRUE(answer.ok()) << answer.error().describe();

  // With TLS 1.3 the server refuses after the client's side of the handshake is done: a TLS alert or a reset
  // connection, depending on timing.
  auto refused = make(configFor(server.url()))->send(get("/x"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNetwork) << refused.error().describe();
}

TEST_P(TransportContract, UnreadableTlsMaterialAndBadUrlsAreRefusedUpFront) {
  ClusterConfig config;
  config.server = "https://127.0.0.1:1";
  config.origin = "kubeconfig /k";
  config.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
  config.ca_origin = "file /x/ca.crt";
  auto transport = GetParam().make(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(transport.error().message.find("CA bundle from file /x/ca.crt"), std::string::npos)
      << transport.error().message;

  config.ca_pem.clear();
  config.client_cert_pem = pki().client.cert_pem;
  config.client_key_pem = pki().server.key_pem;  // someone else's key
  transport = GetParam().make(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().message, "client key from kubeconfig /k: does not belong to the client certificate");

  config.client_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  EXPECT_FALSE(GetParam().make(config).ok());

  config = {};
  config.origin = "kubeconfig /k";
  config.server = "not a url";
  transport = GetParam().make(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_EQ(transport.error().code, ErrorCode::kInvalidArgument) << transport.error().describe();
}

TEST_P(TransportContract, ConnectionRefusedIsARetryableNetworkError) {
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
}

TEST_P(TransportContract, SendDeadline) {
  TestServer server({&pki().server}, hang);
  auto transport = make(configFor(server.url()));
  const auto start = std::chrono::steady_clock::now();
  auto answer = transport->send(get("/slow", 300ms));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kTimeout);
  EXPECT_NE(answer.error().message.find("no answer within"), std::string::npos) << answer.error().message;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);
}

TEST_P(TransportContract, SendCancel) {
  TestServer server({&pki().server}, hang);
  auto transport = make(configFor(server.url()));
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  auto answer = transport->send(get("/slow", 10s), stop.get_token());
  canceller.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().code, ErrorCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 300ms);

  std::stop_source already;
  already.request_stop();
  EXPECT_EQ(transport->send(get("/x"), already.get_token()).error().code, ErrorCode::kCancelled);
}

TEST_P(TransportContract, StreamDeliversEachChunkBeforeTheNextIsSent) {
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

TEST_P(TransportContract, StreamErrorStatusReturnsTheBody) {
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

TEST_P(TransportContract, StreamSilenceTimesOut) {
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
  EXPECT_NE(answer.error().message.find("silent for"), std::string::npos) << answer.error().message;
  EXPECT_EQ(received, "first\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_P(TransportContract, StreamStopClosesTheConnectionPromptly) {
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

TEST_P(TransportContract, ServerBreakingTheStreamIsANetworkError) {
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
}

// Two watches held open and requests in parallel: none may wait for another (on cpprest's two-thread pool, the
// transport never blocks an I/O thread; Beast runs each call's own I/O).
TEST_P(TransportContract, TwoWatchesAndConcurrentRequests) {
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
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> senders;
  for (int s = 0; s < 3; ++s) {
    senders.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        if (transport->send(get("/x", 2s)).ok()) ++succeeded;
      }
    });
  }
  for (auto& sender : senders) sender.join();
  const auto took = std::chrono::steady_clock::now() - start;
  const int ticks_before = ticks[0] + ticks[1];
  std::this_thread::sleep_for(100ms);
  EXPECT_GT(ticks[0] + ticks[1], ticks_before);  // the watches kept flowing throughout
  stop.request_stop();
  for (auto& watcher : watchers) watcher.join();
  EXPECT_EQ(succeeded, 60);
  EXPECT_LT(took, 5s);
}

INSTANTIATE_TEST_SUITE_P(EveryTransport, TransportContract, ::testing::ValuesIn(kTransports),
                         [](const ::testing::TestParamInfo<TransportKind>& kind) { return kind.param.name; });

}  // namespace
}  // namespace singleton::kube
