#include "kube/tls.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>

namespace singleton::kube::detail {
namespace {

// Without a callback OpenSSL would prompt on the terminal for an encrypted key's pass phrase.
int noPassphrase(char*, int, int, void*) { return -1; }

std::string lastOpensslError() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : "error " + std::to_string(code);
}

util::Error badPem(const std::string& what, const std::string& origin, const std::string& why) {
  return util::makeError(util::ErrorCode::kInvalidArgument, what + " from " + origin + ": " + why);
}

// Every certificate in a PEM bundle. Text outside the blocks (comments) is ignored, as OpenSSL does.
bool readCertificates(const std::string& pem, std::vector<X509*>& out, std::string& why) {
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) {
    why = "out of memory";
    return false;
  }
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, noPassphrase, nullptr)) out.push_back(cert);
  BIO_free(bio);
  const unsigned long code = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE;
  if (code != 0 && !clean_end) {
    why = "certificate " + std::to_string(out.size() + 1) + " does not parse: " + lastOpensslError();
    return false;
  }
  ERR_clear_error();
  if (out.empty()) {
    why = "no certificate in it";
    return false;
  }
  return true;
}

std::string subjectName(X509* cert) {
  if (!cert) return "?";
  char buffer[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buffer, sizeof buffer);
  return buffer;
}

// "DNS:kubernetes, IP:127.0.0.1", or the subject when there is no subjectAltName.
std::string certificateNames(X509* cert) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return subjectName(cert);
  std::string out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    std::string item;
    if (name->type == GEN_DNS) {
      const ASN1_STRING* dns = name->d.dNSName;
      item = "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)), ASN1_STRING_length(dns));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const unsigned char* bytes = ASN1_STRING_get0_data(ip);
      char buffer[64];
      if (ASN1_STRING_length(ip) == 4) {
        std::snprintf(buffer, sizeof buffer, "%u.%u.%u.%u", bytes[0], bytes[1], bytes[2], bytes[3]);
        item = std::string("IP:") + buffer;
      } else {
        item = "IP:(IPv6)";
      }
    }
    if (!item.empty()) out += (out.empty() ? "" : ", ") + item;
  }
  GENERAL_NAMES_free(names);
  return out.empty() ? subjectName(cert) : out;
}

// OpenSSL's atexit cleanup frees its global state while cpprestsdk's I/O threads (never joined) may still use it,
// and orphans their per-thread error queues and random generators. The process is ending: let the kernel reclaim it.
// Takes effect only if this is OpenSSL's first initialisation, hence called before any other OpenSSL use.
void initializeOpensslWithoutAtexitCleanup() {
  static const bool initialized = OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr) == 1;
  (void)initialized;
}

}  // namespace

util::Result<std::shared_ptr<TlsSetup>> TlsSetup::create(const ClusterConfig& config, const std::string& host) {
  initializeOpensslWithoutAtexitCleanup();
  std::shared_ptr<TlsSetup> setup(new TlsSetup());
  setup->host_ = host;
  setup->ca_origin_ = config.ca_origin.empty() ? "the kubeconfig" : config.ca_origin;
  std::string why;
  if (!config.ca_pem.empty() && !readCertificates(config.ca_pem, setup->cas_, why)) {
    return badPem("CA bundle", setup->ca_origin_, why);
  }
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return badPem("client certificate", config.origin, "a certificate and a key are needed together");
  }
  if (!config.client_cert_pem.empty()) {
    setup->has_client_cert_ = true;
    std::vector<X509*> chain;
    if (!readCertificates(config.client_cert_pem, chain, why)) return badPem("client certificate", config.origin, why);
    setup->cert_ = chain.front();
    setup->chain_.assign(chain.begin() + 1, chain.end());

    ERR_clear_error();
    BIO* bio = BIO_new_mem_buf(config.client_key_pem.data(), static_cast<int>(config.client_key_pem.size()));
    setup->key_ = bio ? PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr) : nullptr;
    BIO_free(bio);
    if (!setup->key_) {
      return badPem("client key", config.origin,
                    "does not parse (encrypted keys are not supported): " + lastOpensslError());
    }
    if (X509_check_private_key(setup->cert_, setup->key_) != 1) {
      ERR_clear_error();
      return badPem("client key", config.origin, "does not belong to the client certificate");
    }
  }
  return setup;
}

TlsSetup::~TlsSetup() {
  for (X509* cert : cas_) X509_free(cert);
  for (X509* cert : chain_) X509_free(cert);
  X509_free(cert_);
  EVP_PKEY_free(key_);
}

void TlsSetup::apply(SSL_CTX* ctx) {
  if (!cas_.empty()) {
    // Only our CA: cpprest loaded the system CAs too, and client-go trusts exactly the kubeconfig's CA.
    X509_STORE* store = X509_STORE_new();
    if (store) {
      for (X509* cert : cas_) X509_STORE_add_cert(store, cert);
      SSL_CTX_set_cert_store(ctx, store);
    }
  }
  if (cert_ && key_) {
    SSL_CTX_use_certificate(ctx, cert_);
    for (X509* cert : chain_) SSL_CTX_add1_chain_cert(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key_);
  }
  // Wraps verification (cpprest's host-name check included) so a refusal can be explained later.
  SSL_CTX_set_cert_verify_callback(ctx, &TlsSetup::verifyCertificate, this);
  ERR_clear_error();
}

int TlsSetup::verifyCertificate(X509_STORE_CTX* store_ctx, void* self_ptr) {
  const int ok = X509_verify_cert(store_ctx);
  if (ok > 0) return ok;
  auto* self = static_cast<TlsSetup*>(self_ptr);
  const int error = X509_STORE_CTX_get_error(store_ctx);
  std::string detail;
  // The chain itself was fine when OpenSSL has no reason of its own: then cpprest's host-name check refused it.
  if (error == X509_V_OK || error == X509_V_ERR_UNSPECIFIED) {
    detail = "the server certificate is not valid for \"" + self->host_ + "\" (it names " +
             certificateNames(X509_STORE_CTX_get0_cert(store_ctx)) + ")";
  } else {
    detail = std::string(X509_verify_cert_error_string(error)) + " (certificate " +
             subjectName(X509_STORE_CTX_get_current_cert(store_ctx)) + ")";
  }
  std::lock_guard guard(self->mutex_);
  self->last_verify_failure_ = std::move(detail);
  return ok;
}

bool TlsSetup::isTlsError(long code) {
  if (code <= 0) return false;
  const auto packed = static_cast<unsigned long>(code);
  return ERR_GET_LIB(packed) == ERR_LIB_SSL && ERR_GET_REASON(packed) != 0;
}

std::string TlsSetup::describe(long code, const std::string& server) {
  const auto packed = static_cast<unsigned long>(code);
  const char* reason_text = ERR_reason_error_string(packed);
  std::string out = "TLS with " + server + " failed: " + (reason_text ? reason_text : "error " + std::to_string(code));
  const int reason = ERR_GET_REASON(packed);
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    std::lock_guard guard(mutex_);
    if (!last_verify_failure_.empty()) out += ": " + last_verify_failure_;
    last_verify_failure_.clear();
    out += cas_.empty() ? " (trusting the system CAs)" : " (trusting the CA from " + ca_origin_ + ")";
  } else if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
             reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA || reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN) {
    out += has_client_cert_ ? " (the server refused our client certificate)"
                            : " (the server wants a client certificate and none is configured)";
  }
  return out;
}

}  // namespace singleton::kube::detail
