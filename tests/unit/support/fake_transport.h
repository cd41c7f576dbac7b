// A scripted Transport for unit tests: answers come from a queue (or a handler), requests are recorded.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "kube/transport.h"

namespace singleton::testing {

struct ScriptedStream {
  int status = 200;
  std::vector<std::string> chunks;  // delivered in order
  std::string error_body;           // for non-2xx
  // After the chunks: end the stream normally (server closed), or with this error.
  std::optional<util::Error> end_error;
  bool block_until_stopped = false;  // after the chunks, hang until stop is requested
};

class FakeTransport final : public kube::Transport {
 public:
  using Handler = std::function<util::Result<kube::HttpResponse>(const kube::HttpRequest&)>;

  // Answers for send(), consumed in order; when empty, `handler` (if set) answers, else a network error.
  void push(util::Result<kube::HttpResponse> response) {
    std::lock_guard g(mutex_);
    responses_.push_back(std::move(response));
  }
  void push(int status, std::string body, std::map<std::string, std::string> headers = {}) {
    push(kube::HttpResponse{status, std::move(body), std::move(headers)});
  }
  void pushStream(ScriptedStream stream) {
    std::lock_guard g(mutex_);
    streams_.push_back(std::move(stream));
  }
  void setHandler(Handler handler) {
    std::lock_guard g(mutex_);
    handler_ = std::move(handler);
  }

  util::Result<kube::HttpResponse> send(const kube::HttpRequest& request, std::stop_token) override {
    std::unique_lock g(mutex_);
    requests_.push_back(request);
    if (!responses_.empty()) {
      auto r = std::move(responses_.front());
      responses_.pop_front();
      return r;
    }
    if (handler_) {
      auto h = handler_;
      g.unlock();
      return h(request);
    }
    return util::makeError(util::ErrorCode::kNetwork, "fake transport: no scripted answer for " + request.path);
  }

  util::Result<kube::HttpResponse> stream(const kube::HttpRequest& request, const kube::ChunkHandler& on_chunk,
                                          std::stop_token stop) override {
    ScriptedStream s;
    {
      std::unique_lock g(mutex_);
      requests_.push_back(request);
      if (streams_.empty()) {
        // Nothing scripted: behave like a quiet server until stopped.
        cv_.wait(g, stop, [] { return false; });
        return util::makeError(util::ErrorCode::kCancelled, "stopped");
      }
      s = std::move(streams_.front());
      streams_.pop_front();
    }
    if (s.status < 200 || s.status >= 300) return kube::HttpResponse{s.status, s.error_body, {}};
    for (const auto& chunk : s.chunks) {
      if (stop.stop_requested()) return util::makeError(util::ErrorCode::kCancelled, "stopped");
      on_chunk(chunk);
    }
    if (s.block_until_stopped) {
      std::unique_lock g(mutex_);
      cv_.wait(g, stop, [] { return false; });
      return util::makeError(util::ErrorCode::kCancelled, "stopped");
    }
    if (s.end_error) return *s.end_error;
    return kube::HttpResponse{s.status, "", {}};
  }

  std::string describe() const override { return "fake://"; }

  std::vector<kube::HttpRequest> requests() const {
    std::lock_guard g(mutex_);
    return requests_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable_any cv_;
  std::deque<util::Result<kube::HttpResponse>> responses_;
  std::deque<ScriptedStream> streams_;
  std::vector<kube::HttpRequest> requests_;
  Handler handler_;
};

}  // namespace singleton::testing
