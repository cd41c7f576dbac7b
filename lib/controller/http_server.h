// A tiny HTTP/1.1 server on POSIX sockets for /healthz, /readyz and /metrics: GET and HEAD, one request per
// connection (Connection: close), routes as lambdas. No dependency beyond libc, so probes keep answering whatever the
// rest of the process is doing.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "util/result.h"

namespace singleton::controller {

// "host:port", ":port" (all interfaces) or "[v6]:port", as Go's net.Listen takes it. Port 0 picks a free port.
struct BindAddress {
  std::string host;  // "" = all interfaces
  int port = 0;
  std::string str() const;
};
util::Result<BindAddress> parseBindAddress(std::string_view text);

struct HttpServerOptions {
  // Threads answering requests (besides the one accepting): several, so one slow client cannot hold up a kubelet
  // probe; a small binary whose handlers answer from memory may take 1 (each thread costs resident pages).
  int workers = 4;
};

class HttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;   // without the query
    std::string query;  // after '?', undecoded
  };
  struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "text/plain; charset=utf-8";
  };
  using Handler = std::function<Response(const Request&)>;

  // `name` appears in logs ("health", "metrics").
  explicit HttpServer(std::string name, HttpServerOptions options = {});
  ~HttpServer();  // stops
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes an exact path. Register before start(). Handlers run on the server's threads and must be quick; one that
  // throws answers 500.
  void handle(std::string path, Handler handler);

  // Binds, listens and starts serving. Errors (bad address, port in use) name the address.
  util::Status start(std::string_view bind_address);
  // The bound port (the chosen one when started on port 0); 0 before start.
  int port() const { return port_; }
  // Stops accepting, lets the handlers running finish (connections still sending their request are dropped), joins
  // the threads. Idempotent.
  void stop();

 private:
  void acceptLoop();
  void workLoop();
  void serve(int fd);

  std::string name_;
  int workers_count_;
  std::map<std::string, Handler> routes_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // readable once stop() wrote to it: wakes every thread out of poll()
  int port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<int> pending_;  // accepted connections waiting for a worker
  bool stopping_ = false;
};

}  // namespace singleton::controller
