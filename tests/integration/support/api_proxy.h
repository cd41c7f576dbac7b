// An HTTP-aware proxy for fault injection in integration tests, where TcpProxy (which sees only TLS bytes) cannot
// pick out one request. It listens on 127.0.0.1:0 speaking plain HTTP/1.1 and forwards every client connection to
// the kube-apiserver at 127.0.0.1:<target port> over TLS of its own (the server's certificate is not checked: a test
// cluster on loopback). Requests pass through byte for byte, Authorization header included; it parses only each
// request's line, headers and Content-Length body (Kubernetes clients do not pipeline: a kept-alive connection
// carries one request after another). Answers are not parsed. Faults, set from any thread:
//
//   dropNextAnswer(match)   the next request that `match`es is forwarded, the apiserver applies and answers it, and
//                           once the answer's first bytes arrive the answer is discarded and the client's connection
//                           closed (FIN): an unknown outcome.
//                           The client gets the first few bytes of the status line before the close, so a client
//                           that resends a request on a kept-alive connection that closed before any answer (ours
//                           does) knows the server saw it. With hold = true the client's connection stays open (the
//                           client waits for its answer) until releaseHeld(). drops() records each one: when the
//                           answer arrived (steady_clock: the server had applied the request) and the request.
//   setWatchDelay(match, D) every answer byte of a watch request (a query with watch=1/true) that `match`es is
//                           delivered D after it arrived, in order. Evaluated per byte arrival, so it applies to
//                           watches opened before it was set; D = 0 ends it (bytes already queued still wait).
//   setAnswerDelay(match, D)
//                           the same for the answers of other requests (a list, a GET, a write): served at once,
//                           answered D late, as a slow network path back would.
//   injectAnswers(match, n, kind)
//                           the next n requests that `match` are NOT forwarded: the proxy answers them itself with
//                           kind's answer (Answer below: 409 Conflict, 429 with Retry-After: 1, 500, 503, each with a
//                           Kubernetes Status body; a 200 whose body is cut short (Content-Length above what is sent,
//                           then the connection closes); a 200 with a body that is not JSON). Arming again replaces
//                           what is left; n = 0 disarms. injectedAnswers() counts the answers given so far.
//   setDelay(match, D)      each request that `match`es reaches the apiserver D after it arrived (its answer follows
//                           as usual); requests behind it on the connection wait too. D = 0 ends it (a request
//                           already held keeps its due time). delayedRequests() counts them.
//   holdRequests(match)     each request that `match`es stays on the wire (not forwarded, the client waiting for its
//                           answer) until releaseHeldRequests(), which forwards them all; the apiserver applies or
//                           refuses each late, as it would a packet delivered after a partition. A client that gives
//                           up meanwhile (closes its connection) does not recall it: it is still forwarded on
//                           release. held() records each: when it was held, released, and the status code the
//                           apiserver answered (0 if none arrived). holdRequests(nullptr) stops holding new ones.
//
//   ApiProxy proxy(cluster.apiserverPort());
//   proxy.writeKubeconfig(cluster.adminToken(), dir / "kubeconfig-api-proxied");   // give this to the process
//   proxy.setWatchDelay([](const ApiProxy::Request& r) { return r.path.ends_with("/pods"); }, 1500ms);
//   proxy.dropNextAnswer([](const ApiProxy::Request& r) { return r.method == "PATCH"; });
//   ... eventually(!proxy.drops().empty()) ...
//
// lastWatchDelivery(match) tells when answer bytes of a matching watch last reached the client (to know a process
// has been sent an event). Everything else is forwarded unchanged.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace singleton::testing {

class ApiProxy {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Request {
    std::string method;  // "PATCH"
    std::string path;    // "/api/v1/namespaces/ns/pods/web-0", without the query
    std::string query;   // "watch=1&labelSelector=..." (no '?'), "" if none
    std::string body;
    bool authorized = false;  // it carries an Authorization header
    bool watch() const;       // the query asks for a watch
  };
  using Match = std::function<bool(const Request&)>;
  struct Drop {
    TimePoint at;  // the answer's first bytes arrived: the server had applied the request
    std::string method;
    std::string path;
  };

  // Throws std::runtime_error if it cannot listen.
  explicit ApiProxy(int target_port);
  ~ApiProxy();  // closes everything
  ApiProxy(const ApiProxy&) = delete;
  ApiProxy& operator=(const ApiProxy&) = delete;

  int port() const { return port_; }

  // Writes a kubeconfig naming http://127.0.0.1:<port()> with `token` as the user's bearer token.
  void writeKubeconfig(const std::string& token, const std::filesystem::path& out) const;
  // Adds "Authorization: Bearer <token>" to every request that has none: client-go sends no credentials to a plain
  // http:// server (clientcmd reads them only for TLS), so through this proxy its requests would be anonymous.
  void authorizeAs(std::string token);

  void dropNextAnswer(Match match, bool hold = false);  // one request; arming again replaces an unused one
  void disarmDrop();
  void releaseHeld();  // closes the connections of answers dropped with hold
  std::vector<Drop> drops() const;

  void setWatchDelay(Match match, std::chrono::milliseconds delay);
  void setAnswerDelay(Match match, std::chrono::milliseconds delay);
  std::optional<TimePoint> lastWatchDelivery(const Match& match) const;

  enum class Answer { kConflict, kTooManyRequests, kInternalError, kUnavailable, kTruncated, kGarbage };
  void injectAnswers(Match match, int count, Answer answer);
  std::uint64_t injectedAnswers() const;
  void setDelay(Match match, std::chrono::milliseconds delay);
  std::uint64_t delayedRequests() const;

  // Calls `action` once, on the proxy's thread, when a request matching `match` is forwarded: right after it went on
  // the wire (kRequestSent: a sender frozen by the action has it in flight), or right after the first bytes of the
  // apiserver's answer to it were relayed (kAnswerRelayed: applied, and the sender has been told). Arming again
  // replaces an unused trigger.
  enum class Moment { kRequestSent, kAnswerRelayed };
  void triggerOn(Match match, Moment moment, std::function<void()> action);
  void disarmTrigger();
  std::uint64_t triggered() const;

  struct Held {
    std::string method;
    std::string path;
    TimePoint held_at;
    std::optional<TimePoint> released_at;  // forwarded to the apiserver
    int status = 0;                        // the apiserver's answer to it (0: none seen)
    bool client_gone = false;              // the client had closed its connection before the release
  };
  void holdRequests(Match match);
  void releaseHeldRequests();
  std::vector<Held> held() const;

 private:
  struct Connection;
  void acceptLoop();
  void serve(Connection& connection);

  int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  void* tls_context_ = nullptr;  // SSL_CTX
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::string token_;  // authorizeAs
  Match trigger_match_;
  Moment trigger_moment_ = Moment::kRequestSent;
  std::function<void()> trigger_action_;
  std::uint64_t triggered_ = 0;
  Match drop_match_;
  bool drop_hold_ = false;
  std::uint64_t release_generation_ = 0;
  std::vector<Drop> drops_;
  Match delay_match_;
  std::chrono::milliseconds delay_{0};
  Match answer_delay_match_;
  std::chrono::milliseconds answer_delay_{0};
  Match inject_match_;
  int inject_left_ = 0;
  Answer inject_answer_ = Answer::kConflict;
  std::uint64_t injected_ = 0;
  Match request_delay_match_;
  std::chrono::milliseconds request_delay_{0};
  std::uint64_t delayed_ = 0;
  Match hold_match_;
  std::uint64_t hold_release_generation_ = 0;
  std::vector<Held> held_;
  struct WatchDelivery {
    Request request;
    std::optional<TimePoint> last;
  };
  std::list<WatchDelivery> watches_;
  std::list<Connection> connections_;  // under mutex_; each served by its own thread
  std::thread accept_thread_;
};

}  // namespace singleton::testing
