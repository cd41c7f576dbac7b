// TLS material for both transports, parsed once and applied to every new connection's SSL_CTX; and the decoding
// of OpenSSL's terse handshake errors into something a user can act on. Private to lib/kube.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "kube/config.h"
#include "util/result.h"

namespace singleton::kube::detail {

class TlsSetup {
 public:
  // Fails with kInvalidArgument naming the origin when a PEM block does not parse or the key does not fit the cert.
  // `host` is what the server certificate must name (for messages).
  static util::Result<std::shared_ptr<TlsSetup>> create(const ClusterConfig& config, const std::string& host);
  ~TlsSetup();
  TlsSetup(const TlsSetup&) = delete;
  TlsSetup& operator=(const TlsSetup&) = delete;

  // Trust exactly our CA bundle (if any), present our client certificate (if any), and record why a server
  // certificate was refused. Runs on cpprest's I/O threads for each new connection; never throws.
  void apply(SSL_CTX* ctx);

  // True when an OpenSSL error code (as cpprest reports it in http_exception::error_code) comes from the TLS layer.
  static bool isTlsError(long code);
  // "TLS with https://h:6443 failed: certificate verify failed: self-signed certificate in certificate chain
  // (trusting the CA from file /x/ca.crt)".
  std::string describe(long code, const std::string& server);

 private:
  TlsSetup() = default;
  static int verifyCertificate(X509_STORE_CTX* store_ctx, void* self);

  std::string host_;
  std::string ca_origin_;
  bool has_client_cert_ = false;
  std::vector<X509*> cas_;
  X509* cert_ = nullptr;
  std::vector<X509*> chain_;  // intermediates sent after cert_
  EVP_PKEY* key_ = nullptr;

  std::mutex mutex_;
  std::string last_verify_failure_;
};

}  // namespace singleton::kube::detail
