#include "support/api_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <stdexcept>

namespace singleton::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kPollMillis = 20;
constexpr std::size_t kStatusPrefix = 9;  // "HTTP/1.1 ": the client knows an answer began, never that it ended

SSL_CTX* context(void* p) { return static_cast<SSL_CTX*>(p); }

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
  return fd;
}

bool sendAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// The server socket is non-blocking (an SSL_read must never wait for application data that is not coming while the
// client has a request to send), so writes wait for the socket themselves.
bool sslWriteAll(SSL* ssl, int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const int n = SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    const int error = SSL_get_error(ssl, n);
    if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) return false;
    pollfd p{fd, static_cast<short>(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    ::poll(&p, 1, 1000);
  }
  return true;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// A complete request at the front of `buffer`: its length, or 0 while more is needed; -1 if it cannot be proxied.
long long parseRequest(const std::string& buffer, ApiProxy::Request& out) {
  const auto end = buffer.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  const auto line_end = buffer.find("\r\n");
  const std::string line = buffer.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return -1;
  out.method = line.substr(0, sp1);
  const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto q = target.find('?');
  out.path = target.substr(0, q);
  out.query = q == std::string::npos ? "" : target.substr(q + 1);
  std::size_t length = 0;
  for (std::size_t at = line_end + 2; at < end;) {
    const auto next = buffer.find("\r\n", at);
    const std::string header = buffer.substr(at, next - at);
    at = next + 2;
    const auto colon = header.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = lower(header.substr(0, colon));
    std::string value = header.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (name == "content-length") length = std::stoull(value);
    if (name == "authorization") out.authorized = true;
    if (name == "transfer-encoding" && lower(value) != "identity") return -1;  // no chunked requests
  }
  const std::size_t total = end + 4 + length;
  if (buffer.size() < total) return 0;
  out.body = buffer.substr(end + 4, length);
  return static_cast<long long>(total);
}

// The proxy's own answer to a request it does not forward.
std::string synthesized(ApiProxy::Answer answer) {
  auto status = [](int code, const char* text, const char* reason, const std::string& extra_headers,
                   const std::string& details) {
    const std::string body = std::string("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},") +
                             "\"status\":\"Failure\",\"message\":\"" + reason +
                             " (injected by the test's api proxy)\",\"reason\":\"" + reason + "\"," + details +
                             "\"code\":" + std::to_string(code) + "}";
    return "HTTP/1.1 " + std::to_string(code) + " " + text +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           extra_headers + "\r\n" + body;
  };
  switch (answer) {
    case ApiProxy::Answer::kConflict:
      return status(409, "Conflict", "Conflict", "", "");
    case ApiProxy::Answer::kTooManyRequests:
      return status(429, "Too Many Requests", "TooManyRequests", "Retry-After: 1\r\n",
                    R"("details":{"retryAfterSeconds":1},)");
    case ApiProxy::Answer::kInternalError:
      return status(500, "Internal Server Error", "InternalError", "", "");
    case ApiProxy::Answer::kUnavailable:
      return status(503, "Service Unavailable", "ServiceUnavailable", "", "");
    case ApiProxy::Answer::kTruncated:
      return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
             R"({"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"tr)";
    case ApiProxy::Answer::kGarbage:
      break;
  }
  const std::string body = "<html><body>502 from somewhere in between</body></html>\n";
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

}  // namespace

bool ApiProxy::Request::watch() const {
  for (std::size_t at = 0; at <= query.size();) {
    auto next = query.find('&', at);
    if (next == std::string::npos) next = query.size();
    const std::string param = query.substr(at, next - at);
    if (param.starts_with("watch=") && param != "watch=0" && param != "watch=false") return true;
    at = next + 1;
  }
  return false;
}

struct ApiProxy::Connection {
  int client = -1;
  std::atomic<bool> done{false};
  std::thread thread;
};

ApiProxy::ApiProxy(int target_port) : target_port_(target_port) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("api proxy: SSL_CTX_new failed");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  tls_context_ = ctx;
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    const std::string reason = std::strerror(errno);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    SSL_CTX_free(ctx);
    throw std::runtime_error("api proxy listen: " + reason);
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { acceptLoop(); });
}

ApiProxy::~ApiProxy() {
  stopping_ = true;
  accept_thread_.join();
  for (Connection& c : connections_) c.thread.join();  // each notices stopping_ within kPollMillis
  ::close(listen_fd_);
  SSL_CTX_free(context(tls_context_));
}

void ApiProxy::writeKubeconfig(const std::string& token, const std::filesystem::path& out) const {
  std::ofstream(out, std::ios::trunc) << "apiVersion: v1\nkind: Config\nclusters:\n- name: api-proxy\n  cluster:\n"
                                      << "    server: http://127.0.0.1:" << port_ << "\n"
                                      << "users:\n- name: admin\n  user:\n    token: " << token << "\n"
                                      << "contexts:\n- name: api-proxy\n  context:\n    cluster: api-proxy\n"
                                      << "    user: admin\n    namespace: default\ncurrent-context: api-proxy\n";
  std::filesystem::permissions(out, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

void ApiProxy::triggerOn(Match match, Moment moment, std::function<void()> action) {
  std::lock_guard lock(mutex_);
  trigger_match_ = std::move(match);
  trigger_moment_ = moment;
  trigger_action_ = std::move(action);
}

void ApiProxy::disarmTrigger() {
  std::lock_guard lock(mutex_);
  trigger_match_ = nullptr;
  trigger_action_ = nullptr;
}

std::uint64_t ApiProxy::triggered() const {
  std::lock_guard lock(mutex_);
  return triggered_;
}

void ApiProxy::authorizeAs(std::string token) {
  std::lock_guard lock(mutex_);
  token_ = std::move(token);
}

void ApiProxy::dropNextAnswer(Match match, bool hold) {
  std::lock_guard lock(mutex_);
  drop_match_ = std::move(match);
  drop_hold_ = hold;
}

void ApiProxy::disarmDrop() {
  std::lock_guard lock(mutex_);
  drop_match_ = nullptr;
}

void ApiProxy::releaseHeld() {
  std::lock_guard lock(mutex_);
  ++release_generation_;
}

std::vector<ApiProxy::Drop> ApiProxy::drops() const {
  std::lock_guard lock(mutex_);
  return drops_;
}

void ApiProxy::setWatchDelay(Match match, std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  delay_match_ = std::move(match);
  delay_ = delay;
}

void ApiProxy::setAnswerDelay(Match match, std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  answer_delay_match_ = std::move(match);
  answer_delay_ = delay;
}

void ApiProxy::injectAnswers(Match match, int count, Answer answer) {
  std::lock_guard lock(mutex_);
  inject_match_ = count > 0 ? std::move(match) : nullptr;
  inject_left_ = std::max(count, 0);
  inject_answer_ = answer;
}

std::uint64_t ApiProxy::injectedAnswers() const {
  std::lock_guard lock(mutex_);
  return injected_;
}

void ApiProxy::setDelay(Match match, std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  request_delay_match_ = delay.count() > 0 ? std::move(match) : nullptr;
  request_delay_ = delay;
}

std::uint64_t ApiProxy::delayedRequests() const {
  std::lock_guard lock(mutex_);
  return delayed_;
}

void ApiProxy::holdRequests(Match match) {
  std::lock_guard lock(mutex_);
  hold_match_ = std::move(match);
}

void ApiProxy::releaseHeldRequests() {
  std::lock_guard lock(mutex_);
  ++hold_release_generation_;
}

std::vector<ApiProxy::Held> ApiProxy::held() const {
  std::lock_guard lock(mutex_);
  return held_;
}

std::optional<ApiProxy::TimePoint> ApiProxy::lastWatchDelivery(const Match& match) const {
  std::lock_guard lock(mutex_);
  std::optional<TimePoint> last;
  for (const WatchDelivery& w : watches_) {
    if (w.last && match(w.request) && (!last || *w.last > *last)) last = w.last;
  }
  return last;
}

void ApiProxy::acceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMillis) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lock(mutex_);
    // Threads that have finished are joined here, so a long test does not pile them up.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    Connection& c = connections_.emplace_back();
    c.client = fd;
    c.thread = std::thread([this, &c] {
      serve(c);
      ::close(c.client);
      c.done = true;
    });
  }
}

void ApiProxy::serve(Connection& connection) {
  const int client = connection.client;
  const int server = connectLoopback(target_port_);
  if (server < 0) return;
  // A frozen apiserver must not keep the handshake (and the proxy's destructor) waiting for ever.
  const timeval handshake_timeout{10, 0};
  ::setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &handshake_timeout, sizeof handshake_timeout);
  ::setsockopt(server, SOL_SOCKET, SO_SNDTIMEO, &handshake_timeout, sizeof handshake_timeout);
  SSL* ssl = SSL_new(context(tls_context_));
  SSL_set_fd(ssl, server);
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    ::close(server);
    return;
  }
  ::fcntl(server, F_SETFL, ::fcntl(server, F_GETFL, 0) | O_NONBLOCK);

  enum class Mode { kForward, kDrop, kWatch };
  Mode mode = Mode::kForward;
  Request request;
  WatchDelivery* delivery = nullptr;
  bool dropped = false;               // the current request's answer has begun (and is being discarded)
  std::uint64_t hold_generation = 0;  // with hold: close once releaseHeld() has been called after the drop
  bool holding = false;
  std::string pending_request;
  std::deque<std::pair<TimePoint, std::string>> delayed;   // answer bytes due at
  std::deque<std::pair<TimePoint, std::string>> outgoing;  // requests held by setDelay, due at
  // holdRequests: the held request (its index in held_) waits in `outgoing` with an infinite due time until the
  // release generation moves; then the status of the next answer is its.
  bool has_held = false;  // (not an optional<size_t>: GCC 12 sees it maybe-uninitialized)
  std::size_t held_index = 0;
  std::uint64_t held_generation = 0;
  bool awaiting_held_status = false;
  bool client_closed = false;  // with a held request: the client left, the request is still delivered
  bool server_eof = false;
  std::function<void()> after_answer;  // triggerOn(kAnswerRelayed): once the answer's first bytes are relayed
  char buffer[16384];

  while (!stopping_) {
    if (holding) {
      std::lock_guard lock(mutex_);
      if (release_generation_ != hold_generation) break;
    }
    if (has_held && !awaiting_held_status) {
      std::lock_guard lock(mutex_);
      if (hold_release_generation_ != held_generation) {
        const TimePoint released = Clock::now();
        for (auto& [due, raw] : outgoing) due = std::min(due, released);
        held_[held_index].released_at = released;
        held_[held_index].client_gone = client_closed;
        awaiting_held_status = true;
      }
    }
    // Delayed answer bytes that are due go first, in order.
    const TimePoint now = Clock::now();
    bool client_gone = false;
    while (!delayed.empty() && delayed.front().first <= now) {
      const std::string& data = delayed.front().second;
      if (!sendAll(client, data.data(), data.size())) client_gone = true;
      delayed.pop_front();
      std::lock_guard lock(mutex_);
      if (delivery) delivery->last = Clock::now();
    }
    if (client_gone || (server_eof && delayed.empty())) break;
    bool server_gone = false;
    while (!outgoing.empty() && outgoing.front().first <= now) {
      if (!sslWriteAll(ssl, server, outgoing.front().second)) server_gone = true;
      outgoing.pop_front();
    }
    if (server_gone) break;

    int timeout = kPollMillis;
    for (const auto* queue : {&delayed, &outgoing}) {
      if (queue->empty()) continue;
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(queue->front().first - now).count();
      timeout = std::min(timeout, static_cast<int>(std::clamp<long long>(wait, 0, kPollMillis)));
    }
    const bool buffered = !server_eof && SSL_pending(ssl) > 0;
    pollfd fds[2] = {{client, static_cast<short>(client_closed ? 0 : POLLIN), 0},
                     {server, static_cast<short>(server_eof ? 0 : POLLIN), 0}};
    if (::poll(fds, 2, buffered ? 0 : timeout) < 0 && errno != EINTR) break;

    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
      if (n <= 0 && has_held && !awaiting_held_status) {
        client_closed = true;  // a request on the wire is not recalled by its sender giving up
        continue;
      }
      if (n <= 0) break;                 // the client closed: so does the server side
      if (holding || dropped) continue;  // a client waiting for an answer sends nothing
      pending_request.append(buffer, static_cast<std::size_t>(n));
      bool broken = false;
      while (!broken) {
        Request next;
        const long long size = parseRequest(pending_request, next);
        if (size <= 0) {
          broken = size < 0;
          break;
        }
        request = std::move(next);
        std::string raw = pending_request.substr(0, static_cast<std::size_t>(size));
        pending_request.erase(0, static_cast<std::size_t>(size));
        if (!request.authorized) {
          std::lock_guard lock(mutex_);
          if (!token_.empty()) raw.insert(raw.find("\r\n") + 2, "Authorization: Bearer " + token_ + "\r\n");
        }
        mode = request.watch() ? Mode::kWatch : Mode::kForward;
        std::optional<Answer> answer;
        std::chrono::milliseconds late{0};
        std::function<void()> on_sent;
        {
          std::lock_guard lock(mutex_);
          if (outgoing.empty() && inject_left_ > 0 && inject_match_ && inject_match_(request)) {
            answer = inject_answer_;
            ++injected_;
            if (--inject_left_ == 0) inject_match_ = nullptr;
          } else if (drop_match_ && drop_match_(request)) {
            mode = Mode::kDrop;
            drop_match_ = nullptr;
            if (drop_hold_) {
              holding = true;
              hold_generation = release_generation_;
            }
          }
          if (!answer && mode == Mode::kWatch) {
            delivery = &watches_.emplace_back(WatchDelivery{request, std::nullopt});
          }
          if (!answer && request_delay_match_ && request_delay_match_(request)) {
            late = request_delay_;
            ++delayed_;
          }
          if (!answer && mode == Mode::kForward && trigger_match_ && trigger_match_(request)) {
            (trigger_moment_ == Moment::kRequestSent ? on_sent : after_answer) = std::move(trigger_action_);
            trigger_match_ = nullptr;
            trigger_action_ = nullptr;
            ++triggered_;
          }
          if (!answer && !has_held && mode == Mode::kForward && hold_match_ && hold_match_(request)) {
            has_held = true;
            held_index = held_.size();
            held_.push_back({request.method, request.path, Clock::now(), std::nullopt, 0, false});
            held_generation = hold_release_generation_;
            late = std::chrono::duration_cast<std::chrono::milliseconds>(TimePoint::max() - Clock::now());
          }
        }
        if (answer) {
          // Never forwarded; a truncated answer ends the connection (the client waits for the rest in vain).
          const std::string text = synthesized(*answer);
          broken = !sendAll(client, text.data(), text.size()) || *answer == Answer::kTruncated;
          mode = Mode::kForward;
        } else if (late.count() > 0 || !outgoing.empty()) {
          TimePoint due = has_held && !awaiting_held_status ? TimePoint::max() : Clock::now() + late;
          if (!outgoing.empty()) due = std::max(due, outgoing.back().first);  // order preserved
          outgoing.emplace_back(due, raw);
        } else {
          broken = !sslWriteAll(ssl, server, raw);
        }
        if (on_sent) on_sent();
      }
      if (broken) break;
    }

    if (buffered || (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      const int n = SSL_read(ssl, buffer, sizeof buffer);
      if (n <= 0) {
        const int error = SSL_get_error(ssl, n);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) server_eof = true;
        continue;
      }
      const auto size = static_cast<std::size_t>(n);
      if (awaiting_held_status && outgoing.empty()) {
        // The first bytes after the held request went out are its answer's: "HTTP/1.1 409 ...".
        const std::string head(buffer, std::min<std::size_t>(size, 12));
        {
          std::lock_guard lock(mutex_);
          if (head.size() >= 12) held_[held_index].status = std::atoi(head.substr(9, 3).c_str());
        }
        awaiting_held_status = false;
        has_held = false;
        if (client_closed) break;  // nobody is left to read it
      }
      if (mode == Mode::kDrop) {
        if (!dropped) {
          dropped = true;
          {
            std::lock_guard lock(mutex_);
            drops_.push_back({Clock::now(), request.method, request.path});
          }
          sendAll(client, buffer, std::min(size, kStatusPrefix));
        }
        if (!holding) break;  // the rest of the answer is not read: the connection goes
        continue;
      }
      std::chrono::milliseconds delay{0};
      {
        std::lock_guard lock(mutex_);
        if (mode == Mode::kWatch && delay_match_ && delay_match_(request)) delay = delay_;
        if (mode == Mode::kForward && answer_delay_match_ && answer_delay_match_(request)) delay = answer_delay_;
      }
      if (delay.count() > 0 || !delayed.empty()) {
        TimePoint due = Clock::now() + delay;
        if (!delayed.empty()) due = std::max(due, delayed.back().first);  // order preserved
        delayed.emplace_back(due, std::string(buffer, size));
        continue;
      }
      if (!sendAll(client, buffer, size)) break;
      if (after_answer) {
        auto action = std::move(after_answer);
        after_answer = nullptr;
        action();
      }
      if (mode == Mode::kWatch) {
        std::lock_guard lock(mutex_);
        delivery->last = Clock::now();
      }
    }
  }
  ::shutdown(client, SHUT_RDWR);
  SSL_free(ssl);
  ::close(server);
  std::lock_guard lock(mutex_);
  if (delivery) std::erase_if(watches_, [&](const WatchDelivery& w) { return &w == delivery; });
}

}  // namespace singleton::testing
