#include "support/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>

namespace singleton::testing {
namespace {

constexpr std::size_t kBufferLimit = 1 << 20;      // per direction: stop reading a sender past this
constexpr std::size_t kChunkLogLimit = 2'000'000;  // log entries kept; later chunks only count in the stats
constexpr int kPollMillis = 100;

void setNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

void closeWithReset(int fd) {
  if (fd < 0) return;
  linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(fd);
}

int connectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setNonBlocking(fd);
  return fd;
}

}  // namespace

// One proxied connection: what one side sent that the other has not received yet, and how far each side has closed.
struct TcpProxy::Pipe {
  int id = 0;
  int client = -1;
  int server = -1;
  std::string up;    // read from the client, not yet written to the server
  std::string down;  // read from the server, not yet written to the client
  bool client_eof = false;
  bool server_eof = false;
  bool up_shut = false;  // the server has been told the client finished sending
  bool down_shut = false;
  bool client_hup = false;  // poll reported a hang-up or error we have not read yet
  bool server_hup = false;
  bool closed = false;
};

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("proxy socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 128) != 0) {
    const std::string reason = std::strerror(errno);
    ::close(listen_fd_);
    throw std::runtime_error("proxy listen: " + reason);
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  setNonBlocking(listen_fd_);
  if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("proxy pipe: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { loop(); });
}

TcpProxy::~TcpProxy() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  thread_.join();
  for (auto& pipe : pipes_) closePipe(*pipe, false);
  ::close(listen_fd_);
  ::close(wake_fds_[0]);
  ::close(wake_fds_[1]);
}

void TcpProxy::wake() {
  const char byte = 1;
  [[maybe_unused]] auto n = ::write(wake_fds_[1], &byte, 1);
}

void TcpProxy::setPolicy(Policy policy) {
  {
    std::lock_guard lock(mutex_);
    policy_ = policy;
  }
  wake();
}

void TcpProxy::setConnectionPolicy(int id, Policy policy) {
  {
    std::lock_guard lock(mutex_);
    overrides_[id] = policy;
  }
  wake();
}

void TcpProxy::clearConnectionPolicies() {
  {
    std::lock_guard lock(mutex_);
    overrides_.clear();
  }
  wake();
}

void TcpProxy::heal() {
  {
    std::lock_guard lock(mutex_);
    overrides_.clear();
    policy_ = Policy{};
  }
  wake();
}

void TcpProxy::resetAll() {
  {
    std::lock_guard lock(mutex_);
    reset_requested_ = true;
  }
  wake();
  // Returns once the loop has done it, so the caller's next step sees the connections gone.
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lock(mutex_);
      if (!reset_requested_) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void TcpProxy::setRefuseNew(bool refuse) {
  std::lock_guard lock(mutex_);
  refuse_new_ = refuse;
}

void TcpProxy::setPassClose(bool pass) {
  {
    std::lock_guard lock(mutex_);
    pass_close_ = pass;
  }
  wake();
}

std::vector<TcpProxy::Connection> TcpProxy::connections() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::vector<TcpProxy::Chunk> TcpProxy::chunks() const {
  std::lock_guard lock(mutex_);
  return chunks_;
}

std::size_t TcpProxy::bytesUpstreamAfter(TimePoint instant) const {
  std::lock_guard lock(mutex_);
  std::size_t total = 0;
  for (const Chunk& c : chunks_) {
    if (c.upstream && c.at > instant) total += c.bytes;
  }
  return total;
}

void TcpProxy::writeKubeconfig(const std::filesystem::path& kubeconfig, const std::filesystem::path& out) const {
  std::ifstream in(kubeconfig);
  if (!in) throw std::runtime_error("cannot read " + kubeconfig.string());
  std::stringstream text;
  text << in.rdbuf();
  static const std::regex kServer(R"((server:\s*https?://127\.0\.0\.1:)\d+)");
  const std::string rewritten = std::regex_replace(text.str(), kServer, "$01" + std::to_string(port_));
  std::ofstream(out, std::ios::trunc) << rewritten;
  std::filesystem::permissions(out, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TcpProxy::Policy TcpProxy::policyOf(int id) const {
  auto it = overrides_.find(id);
  return it == overrides_.end() ? policy_ : it->second;
}

void TcpProxy::closePipe(Pipe& pipe, bool with_reset) {
  if (pipe.closed) return;
  if (with_reset) {
    closeWithReset(pipe.client);
    closeWithReset(pipe.server);
  } else {
    ::close(pipe.client);
    if (pipe.server >= 0) ::close(pipe.server);
  }
  pipe.closed = true;
  std::lock_guard lock(mutex_);
  stats_.at(static_cast<std::size_t>(pipe.id - 1)).open = false;
}

void TcpProxy::loop() {
  std::vector<pollfd> fds;
  std::vector<std::pair<Pipe*, bool>> owners;  // per pollfd past the first two: its pipe and whether it is the client
  char buffer[16384];
  for (;;) {
    std::vector<std::pair<Pipe*, Policy>> live;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (reset_requested_) {
        for (auto& pipe : pipes_) {
          if (pipe->closed) continue;
          closeWithReset(pipe->client);
          closeWithReset(pipe->server);
          pipe->closed = true;
          stats_.at(static_cast<std::size_t>(pipe->id - 1)).open = false;
        }
        reset_requested_ = false;
      }
      for (auto& pipe : pipes_) {
        if (!pipe->closed) live.emplace_back(pipe.get(), policyOf(pipe->id));
      }
    }
    fds.clear();
    owners.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& [pipe, policy] : live) {
      short client_events = 0;
      short server_events = 0;
      if (policy.upstream != Flow::kHold && !pipe->client_eof && pipe->up.size() < kBufferLimit) {
        client_events |= POLLIN;
      }
      if (policy.downstream == Flow::kForward && !pipe->down.empty()) client_events |= POLLOUT;
      if (policy.downstream != Flow::kHold && !pipe->server_eof && pipe->down.size() < kBufferLimit) {
        server_events |= POLLIN;
      }
      if (policy.upstream == Flow::kForward && !pipe->up.empty()) server_events |= POLLOUT;
      // A hang-up is reported whatever we ask for; while we are not reading that side, leave it out of the poll.
      const bool watch_client = client_events != 0 || !pipe->client_hup;
      const bool watch_server = server_events != 0 || !pipe->server_hup;
      fds.push_back({watch_client ? pipe->client : -1, client_events, 0});
      owners.emplace_back(pipe, true);
      fds.push_back({watch_server ? pipe->server : -1, server_events, 0});
      owners.emplace_back(pipe, false);
    }
    if (::poll(fds.data(), fds.size(), kPollMillis) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) {
      while (::read(wake_fds_[0], buffer, sizeof buffer) > 0) {
      }
    }
    if ((fds[1].revents & POLLIN) != 0) {
      for (;;) {
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) break;
        bool refuse = false;
        {
          std::lock_guard lock(mutex_);
          refuse = refuse_new_;
        }
        const int server = refuse ? -1 : connectLoopback(target_port_);
        if (server < 0) {
          closeWithReset(client);
          continue;
        }
        int one = 1;
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto pipe = std::make_unique<Pipe>();
        pipe->client = client;
        pipe->server = server;
        std::lock_guard lock(mutex_);
        pipe->id = next_id_++;
        const auto now = std::chrono::steady_clock::now();
        stats_.push_back(Connection{pipe->id, now, true, 0, 0, now, now});
        pipes_.push_back(std::move(pipe));
      }
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      Pipe& pipe = *owners[i - 2].first;
      const bool is_client = owners[i - 2].second;
      const short revents = fds[i].revents;
      if (pipe.closed || revents == 0) continue;
      Policy policy;
      bool pass_close = true;
      {
        std::lock_guard lock(mutex_);
        policy = policyOf(pipe.id);
        pass_close = pass_close_;
      }
      const int fd = is_client ? pipe.client : pipe.server;
      const Flow read_flow = is_client ? policy.upstream : policy.downstream;
      std::string& inbound = is_client ? pipe.up : pipe.down;
      std::string& outbound = is_client ? pipe.down : pipe.up;
      if ((revents & (POLLHUP | POLLERR)) != 0) (is_client ? pipe.client_hup : pipe.server_hup) = true;
      if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && read_flow != Flow::kHold) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n > 0) {
          if (read_flow == Flow::kForward) inbound.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0) {
          (is_client ? pipe.client_eof : pipe.server_eof) = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          closePipe(pipe, true);  // a reset on one side is passed on as a reset
          continue;
        }
      }
      if ((revents & POLLOUT) != 0 && !outbound.empty()) {
        const ssize_t n = ::send(fd, outbound.data(), outbound.size(), MSG_NOSIGNAL);
        if (n > 0) {
          outbound.erase(0, static_cast<std::size_t>(n));
          const auto now = std::chrono::steady_clock::now();
          std::lock_guard lock(mutex_);
          Connection& stats = stats_.at(static_cast<std::size_t>(pipe.id - 1));
          const bool upstream = !is_client;  // writing to the server carries client bytes upstream
          (upstream ? stats.bytes_up : stats.bytes_down) += static_cast<std::size_t>(n);
          (upstream ? stats.last_up : stats.last_down) = now;
          if (chunks_.size() < kChunkLogLimit) {
            chunks_.push_back(Chunk{pipe.id, upstream, static_cast<std::size_t>(n), now});
          }
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          closePipe(pipe, true);
          continue;
        }
      }
      // Half-closes travel once everything before them has been delivered.
      if (pipe.client_eof && pipe.up.empty() && !pipe.up_shut && policy.upstream != Flow::kHold && pass_close) {
        ::shutdown(pipe.server, SHUT_WR);
        pipe.up_shut = true;
      }
      if (pipe.server_eof && pipe.down.empty() && !pipe.down_shut && policy.downstream != Flow::kHold) {
        ::shutdown(pipe.client, SHUT_WR);
        pipe.down_shut = true;
      }
      if (pipe.up_shut && pipe.down_shut) closePipe(pipe, false);
    }
  }
}

}  // namespace singleton::testing
