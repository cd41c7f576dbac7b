// What every transport test uses: a throwaway PKI, request builders and two server handlers.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "kube/config.h"
#include "kube/transport.h"
#include "tests/unit/kube/test_tls_server.h"

namespace singleton::kube::testing_support {

using singleton::testing::Identity;
using singleton::testing::TestConnection;
using singleton::testing::TestPki;
using singleton::testing::TestRequest;

struct Pki {
  Identity ca = TestPki::makeCa("test-ca");
  Identity other_ca = TestPki::makeCa("other-ca");
  Identity server = TestPki::makeLeaf("kube-apiserver", ca, "IP:127.0.0.1,DNS:kubernetes.default");
  Identity client = TestPki::makeLeaf("tester", ca, "");
};

inline const Pki& pki() {
  static const Pki instance;
  return instance;
}

inline HttpRequest get(const std::string& path, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  HttpRequest request;
  request.path = path;
  request.timeout = timeout;
  return request;
}

// The server trusted through our test CA.
inline ClusterConfig configFor(const std::string& url) {
  ClusterConfig config;
  config.server = url;
  config.ca_pem = pki().ca.cert_pem;
  config.ca_origin = "file /etc/test/ca.crt";
  config.origin = "test";
  return config;
}

// Answers with what it received: method, path, body and headers (lower-case names), and an X-Test header.
inline void echo(const TestRequest& request, TestConnection& connection) {
  nlohmann::json answer = {{"method", request.method}, {"path", request.path}, {"body", request.body}};
  for (const auto& [name, value] : request.headers) answer["headers"][name] = value;
  connection.respond(200, answer.dump(), {{"X-Test", "yes"}});
}

// Never answers.
inline void hang(const TestRequest&, TestConnection& connection) {
  connection.waitForPeerClose(std::chrono::seconds(5));
}

}  // namespace singleton::kube::testing_support
