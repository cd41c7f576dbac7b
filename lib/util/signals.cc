#include "util/signals.h"

#include <signal.h>

#include <stdexcept>

namespace singleton::util {
namespace {

sigset_t terminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

TerminationSignals::TerminationSignals() {
  const sigset_t set = terminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

TerminationSignals::~TerminationSignals() { stop(); }

void TerminationSignals::start(std::function<void(int)> on_signal) {
  if (thread_.joinable()) throw std::logic_error("TerminationSignals::start called twice");
  done_ = false;
  thread_ = std::thread([this, on_signal = std::move(on_signal)] {
    const sigset_t set = terminationSet();
    const timespec tick{0, 100'000'000};
    while (!done_) {
      const int sig = sigtimedwait(&set, nullptr, &tick);
      if (sig == SIGTERM || sig == SIGINT) on_signal(sig);
    }
  });
}

void TerminationSignals::stop() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
}

int TerminationSignals::wait() {
  const sigset_t set = terminationSet();
  for (;;) {
    const int sig = sigwaitinfo(&set, nullptr);
    if (sig == SIGTERM || sig == SIGINT) return sig;
  }
}

const char* TerminationSignals::name(int signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "signal";
  }
}

}  // namespace singleton::util
