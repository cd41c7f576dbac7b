#include "support/fenced_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace singleton::testing {

FencedStore::FencedStore(bool fenced) : fenced_(fenced) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("fenced store: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { acceptLoop(); });
}

FencedStore::~FencedStore() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  {
    std::lock_guard guard(mutex_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  for (int fd : connections_) ::close(fd);
  ::close(listen_fd_);
}

void FencedStore::acceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    std::lock_guard guard(mutex_);
    connections_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void FencedStore::serve(int fd) {
  std::string buffer;
  char chunk[512];
  while (!stopping_) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return;
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
      const std::string reply = answer(buffer.substr(0, nl)) + "\n";
      buffer.erase(0, nl + 1);
      if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return;
    }
  }
}

std::string FencedStore::answer(const std::string& request) {
  std::lock_guard guard(mutex_);
  if (request == "R") return "V " + value_;
  if (request.rfind("W ", 0) == 0) {
    const auto space = request.find(' ', 2);
    if (space == std::string::npos) return "ERROR bad write";
    const long long token = std::stoll(request.substr(2, space - 2));
    if (fenced_ && token < highest_) {
      ++refused_;
      return "REFUSED " + std::to_string(highest_);
    }
    highest_ = std::max(highest_, token);
    value_ = request.substr(space + 1);
    ++accepted_;
    return "OK";
  }
  return "ERROR unknown request";
}

}  // namespace singleton::testing
