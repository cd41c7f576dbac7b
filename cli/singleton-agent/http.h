// A minimal HTTP/1.1 server for the agent's local endpoints (GET only, one request per connection, one thread):
// enough for kubelet probes and an app on localhost, without a framework in a binary that must stay small.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "util/result.h"

namespace singleton::cli {

struct HttpAnswer {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

class TinyHttpServer {
 public:
  using Handler = std::function<HttpAnswer(const std::string& path)>;

  // Binds and listens on host:port (port 0: any free port). kInvalidArgument when it cannot.
  static util::Result<std::unique_ptr<TinyHttpServer>> listen(const std::string& host, int port, Handler handler);
  ~TinyHttpServer();  // stops the thread and closes the socket
  TinyHttpServer(const TinyHttpServer&) = delete;
  TinyHttpServer& operator=(const TinyHttpServer&) = delete;

  int port() const { return port_; }

 private:
  TinyHttpServer(int fd, int port, Handler handler);
  void loop(std::stop_token stop);
  void serve(int client);

  int fd_ = -1;
  int port_ = 0;
  Handler handler_;
  std::jthread thread_;
};

}  // namespace singleton::cli
