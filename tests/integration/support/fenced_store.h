// The fenced store of the fenced-register tests: a register on 127.0.0.1 (port 0) that accepts a write iff its token
// is at least the highest it has accepted (or every write, unfenced, to show what fencing prevents). One line per
// request: "W <token> <value>" -> "OK" | "REFUSED <highest>"; "R" -> "V <value>".
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace singleton::testing {

class FencedStore {
 public:
  explicit FencedStore(bool fenced = true);
  ~FencedStore();
  FencedStore(const FencedStore&) = delete;
  FencedStore& operator=(const FencedStore&) = delete;

  int port() const { return port_; }
  long long accepted() const { return accepted_; }
  long long refused() const { return refused_; }

 private:
  void acceptLoop();
  void serve(int fd);
  std::string answer(const std::string& request);

  const bool fenced_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  long long highest_ = -1;
  std::string value_;
  std::atomic<long long> accepted_{0}, refused_{0};
  std::vector<int> connections_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace singleton::testing
