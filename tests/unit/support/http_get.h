// A plain-socket HTTP/1.1 client for the operator's endpoint tests: no client library, so a test sees exactly the
// bytes the server sends.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace singleton::testing {

struct HttpAnswer {
  int status = 0;  // 0: could not connect or no answer
  std::string head;
  std::string body;
};

// Sends the pieces as they are to 127.0.0.1:port, `gap` apart, and reads until the server closes the connection.
inline HttpAnswer rawHttp(int port, const std::vector<std::string>& pieces,
                          std::chrono::milliseconds gap = std::chrono::milliseconds(0)) {
  HttpAnswer answer;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return answer;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return answer;
  }
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (i > 0) std::this_thread::sleep_for(gap);
    ::send(fd, pieces[i].data(), pieces[i].size(), MSG_NOSIGNAL);
  }
  std::string all;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    all.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return answer;
  answer.status = std::stoi(all.substr(9, 3));
  answer.head = all.substr(0, end);
  answer.body = all.substr(end + 4);
  return answer;
}

inline HttpAnswer rawHttp(int port, const std::string& request_text) {
  return rawHttp(port, std::vector<std::string>{request_text});
}

inline HttpAnswer httpGet(int port, const std::string& path, const std::string& method = "GET") {
  return rawHttp(port, method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n");
}

}  // namespace singleton::testing
