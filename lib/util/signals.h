// SIGTERM and SIGINT taken synchronously (sigtimedwait) instead of by an async handler, so that reacting to them
// may lock, log and allocate.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace singleton::util {

class TerminationSignals {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread and ignores SIGPIPE. Construct it first thing in main, before
  // any other thread exists: threads inherit the mask, so the signals stay pending for start() or wait().
  TerminationSignals();
  ~TerminationSignals();  // stop()
  TerminationSignals(const TerminationSignals&) = delete;
  TerminationSignals& operator=(const TerminationSignals&) = delete;

  // Starts a thread that calls on_signal(SIGTERM or SIGINT) for each one that arrives, until stop().
  void start(std::function<void(int)> on_signal);
  // Ends the thread (within 100ms) and waits for it; on_signal is not called after it returns. Call it before
  // anything on_signal uses goes away.
  void stop();

  // Without start(): blocks the calling thread until SIGTERM or SIGINT arrives and returns which.
  int wait();

  static const char* name(int signo);  // "SIGTERM", "SIGINT"

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace singleton::util
