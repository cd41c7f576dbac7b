// A TCP proxy for fault injection in integration tests. It listens on 127.0.0.1:0 and forwards every accepted
// connection to 127.0.0.1:<target port> (the kube-apiserver). It works on bytes, not requests — clients speak TLS
// through it — so faults are chosen per direction and per connection:
//
//   kForward  bytes are copied as they come.
//   kHold     this direction is not read: the sender's bytes wait in kernel buffers (and ours), with no FIN and no RST,
//             as on a blackholed link. Setting kForward again delivers what was held, as TCP retransmission would
//             once a partition heals — a request held "on the wire" lands late.
//   kDrop     read and discarded: a request (upstream) reaches nobody, or an answer (downstream) is lost after the
//             server applied the request. Clients speak TLS, so a connection opened while answers are dropped never
//             completes its handshake: drop answers on connections that exist (a kept-alive one after a request).
//
//   TcpProxy proxy(cluster.apiserverPort());
//   proxy.writeKubeconfig(cluster.kubeconfigPath(), dir / "kubeconfig-proxied");   // give this to the process
//   proxy.blackhole();                       // partition: nothing flows either way, no connection closes
//   auto cut = std::chrono::steady_clock::now();
//   ...
//   EXPECT_EQ(proxy.bytesUpstreamAfter(cut), 0u);
//   proxy.heal();
//
// Every chunk written onward is logged with its steady_clock time (the clock the test's other observers use), so a
// test can ask what the process sent after a given instant. resetAll() ends every connection with RST; with
// setRefuseNew(true) new connections are reset as soon as they are accepted.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace singleton::testing {

class TcpProxy {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class Flow { kForward, kHold, kDrop };
  struct Policy {
    Flow upstream = Flow::kForward;    // client → server
    Flow downstream = Flow::kForward;  // server → client
  };
  struct Connection {
    int id = 0;  // 1, 2, ... in accept order
    TimePoint opened{};
    bool open = true;
    std::size_t bytes_up = 0;  // written to the server
    std::size_t bytes_down = 0;
    TimePoint last_up{};  // last write to the server (opened if none)
    TimePoint last_down{};
  };
  struct Chunk {
    int connection = 0;
    bool upstream = true;
    std::size_t bytes = 0;
    TimePoint at{};
  };

  // Throws std::runtime_error if it cannot listen.
  explicit TcpProxy(int target_port);
  ~TcpProxy();  // closes everything
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }

  // The policy of every connection without an override of its own, existing and new ones.
  void setPolicy(Policy policy);
  void setConnectionPolicy(int id, Policy policy);
  void clearConnectionPolicies();
  void blackhole() { setPolicy({Flow::kHold, Flow::kHold}); }
  void heal();  // forward everything, overrides cleared; held bytes flow on
  // RST on every open connection (SO_LINGER 0), pending bytes discarded.
  void resetAll();
  void setRefuseNew(bool refuse);
  // Off: a client's close (FIN) is not passed on, so the server still serves what the client sent before it gave up
  // (as when the FIN is lost or delayed); the server's answer then meets a reset. On by default.
  void setPassClose(bool pass);

  std::vector<Connection> connections() const;
  std::vector<Chunk> chunks() const;
  // Bytes written to the server strictly after `instant` (a request sent then, or held bytes released then).
  std::size_t bytesUpstreamAfter(TimePoint instant) const;

  // Writes a copy of `kubeconfig` to `out` whose `server:` (http or https, on 127.0.0.1) names this proxy.
  void writeKubeconfig(const std::filesystem::path& kubeconfig, const std::filesystem::path& out) const;

 private:
  struct Pipe;
  void loop();
  void wake();
  Policy policyOf(int id) const;  // under mutex_
  void closePipe(Pipe& pipe, bool with_reset);

  int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};
  mutable std::mutex mutex_;
  Policy policy_;
  std::map<int, Policy> overrides_;
  bool refuse_new_ = false;
  bool pass_close_ = true;
  bool reset_requested_ = false;
  bool stopping_ = false;
  int next_id_ = 1;
  std::vector<std::unique_ptr<Pipe>> pipes_;  // touched only by the loop thread, except stats under mutex_
  std::vector<Connection> stats_;
  std::vector<Chunk> chunks_;
  std::thread thread_;
};

}  // namespace singleton::testing
