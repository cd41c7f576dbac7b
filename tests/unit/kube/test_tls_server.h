// A small HTTP/1.1 server on 127.0.0.1 (port 0) with optional TLS, and a throwaway PKI to go with it, for testing the
// real transport hermetically: certificates are made in memory, connections are counted, and a handler can stream a
// chunked body at its own pace.
#pragma once

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace singleton::testing {

// A key and a certificate, as PEM.
struct Identity {
  std::string cert_pem;
  std::string key_pem;
  std::shared_ptr<X509> cert;
  std::shared_ptr<EVP_PKEY> key;
};

class TestPki {
 public:
  // A self-signed CA.
  static Identity makeCa(const std::string& name) { return make(name, nullptr, true, ""); }
  // A certificate signed by `ca`; `san` like "IP:127.0.0.1,DNS:localhost" or "" for none.
  static Identity makeLeaf(const std::string& name, const Identity& ca, const std::string& san) {
    return make(name, &ca, false, san);
  }

 private:
  static void addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext) throw std::runtime_error("bad extension " + value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }

  static std::string pem(const std::function<int(BIO*)>& write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return out;
  }

  static Identity make(const std::string& name, const Identity* issuer, bool ca, const std::string& san) {
    static std::atomic<long> serial{1};
    std::shared_ptr<EVP_PKEY> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
    std::shared_ptr<X509> cert(X509_new(), X509_free);
    X509* x = cert.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key.get());
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
    X509* issuer_cert = issuer ? issuer->cert.get() : x;
    X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
    addExtension(x, issuer_cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    addExtension(x, issuer_cert, NID_key_usage,
                 ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyEncipherment");
    if (!ca) addExtension(x, issuer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
    if (!san.empty()) addExtension(x, issuer_cert, NID_subject_alt_name, san);
    X509_sign(x, issuer ? issuer->key.get() : key.get(), EVP_sha256());

    Identity id;
    id.cert = cert;
    id.key = key;
    id.cert_pem = pem([&](BIO* bio) { return PEM_write_bio_X509(bio, x); });
    id.key_pem =
        pem([&](BIO* bio) { return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
    return id;
  }
};

struct TestRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};

class TestConnection {
 public:
  TestConnection(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}

  bool write(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const int n = ssl_ ? SSL_write(ssl_, data.data() + done, static_cast<int>(data.size() - done))
                         : static_cast<int>(::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL));
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  void respond(int status, const std::string& body, const std::map<std::string, std::string>& headers = {}) {
    std::string head = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n";
    for (const auto& [name, value] : headers) head += name + ": " + value + "\r\n";
    write(head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }
  bool startChunked(int status = 200) {
    return write("HTTP/1.1 " + std::to_string(status) +
                 " X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  }
  bool chunk(const std::string& data) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return write(size + data + "\r\n");
  }
  bool endChunked() { return write("0\r\n\r\n"); }
  // Waits until the client closes the connection (true) or `timeout` passes (false).
  bool waitForPeerClose(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        char byte;
        const int n = ssl_ ? SSL_read(ssl_, &byte, 1) : static_cast<int>(::recv(fd_, &byte, 1, 0));
        if (n <= 0) return true;
      }
    }
    return false;
  }

  // Reads one request; false when the peer closed or sent garbage.
  bool readRequest(TestRequest& request) {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return false;
    }
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    std::size_t line_end = head.find("\r\n");
    const std::string first = head.substr(0, line_end);
    const auto space1 = first.find(' ');
    const auto space2 = first.find(' ', space1 + 1);
    if (space1 == std::string::npos || space2 == std::string::npos) return false;
    request = {};
    request.method = first.substr(0, space1);
    request.path = first.substr(space1 + 1, space2 - space1 - 1);
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      request.headers[name] = value;
    }
    const std::size_t length =
        request.headers.count("content-length") ? std::stoul(request.headers["content-length"]) : 0;
    while (buffer_.size() < length) {
      if (!fill()) return false;
    }
    request.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return true;
  }

 private:
  bool fill() {
    char data[4096];
    const int n = ssl_ ? SSL_read(ssl_, data, sizeof data) : static_cast<int>(::recv(fd_, data, sizeof data, 0));
    if (n <= 0) return false;
    buffer_.append(data, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  SSL* ssl_;
  std::string buffer_;
};

class TestServer {
 public:
  using Handler = std::function<void(const TestRequest&, TestConnection&)>;

  struct Options {
    const Identity* server_identity = nullptr;  // null: plain HTTP
    const Identity* client_ca = nullptr;        // set: require a client certificate signed by it
  };

  TestServer(Options options, Handler handler) : handler_(std::move(handler)) {
    // OpenSSL writes with plain write(): a close_notify to a client that already left would raise SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    if (options.server_identity) {
      ctx_ = SSL_CTX_new(TLS_server_method());
      SSL_CTX_use_certificate(ctx_, options.server_identity->cert.get());
      SSL_CTX_use_PrivateKey(ctx_, options.server_identity->key.get());
      if (options.client_ca) {
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), options.client_ca->cert.get());
        SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      }
    }
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("cannot listen");
    }
    socklen_t length = sizeof address;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    {
      std::lock_guard guard(mutex_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& thread : threads_) thread.join();
    if (ctx_) SSL_CTX_free(ctx_);
  }

  std::string url() const { return std::string(ctx_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void acceptLoop() {
    while (!stopping_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++connections_;
      std::lock_guard guard(mutex_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    SSL* ssl = nullptr;
    if (ctx_) {
      ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) <= 0) {
        ERR_clear_error();
        SSL_free(ssl);
        ::close(fd);
        return;
      }
    }
    TestConnection connection(fd, ssl);
    TestRequest request;
    while (!stopping_ && connection.readRequest(request)) handler_(request, connection);
    if (ssl) {
      SSL_shutdown(ssl);
      SSL_free(ssl);
    }
    ERR_clear_error();
    std::lock_guard guard(mutex_);
    ::close(fd);
    fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  }

  Handler handler_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

}  // namespace singleton::testing
