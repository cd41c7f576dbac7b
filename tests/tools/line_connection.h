// One line-per-request TCP connection to a test server on 127.0.0.1 (the fenced store of the fenced-register tests):
// send a line, read the answer line. Shared by singleton-fenced-client and the tests that read the store.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>

namespace singleton::testing {

class LineConnection {
 public:
  // `answer_timeout_seconds` bounds each wait for an answer; a connection that times out is closed.
  LineConnection(int port, int answer_timeout_seconds) : port_(port), timeout_seconds_(answer_timeout_seconds) {}
  ~LineConnection() { reset(); }
  LineConnection(const LineConnection&) = delete;
  LineConnection& operator=(const LineConnection&) = delete;

  // Sends one line and reads one answer line; nullopt when the connection failed (the outcome is unknown). Connects
  // (again) on demand.
  std::optional<std::string> call(const std::string& line) {
    if (fd_ < 0 && !connectNow()) return std::nullopt;
    const std::string request = line + "\n";
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      reset();
      return std::nullopt;
    }
    std::string answer;
    char c = 0;
    while (true) {
      if (::recv(fd_, &c, 1, 0) <= 0) {
        reset();
        return std::nullopt;
      }
      if (c == '\n') return answer;
      answer.push_back(c);
    }
  }

 private:
  bool connectNow() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval timeout{timeout_seconds_, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      reset();
      return false;
    }
    return true;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int port_;
  int timeout_seconds_;
  int fd_ = -1;
};

}  // namespace singleton::testing
