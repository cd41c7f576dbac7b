// Each test runs in a forked child (a death test): blocking SIGTERM and SIGINT must not outlive it, and a signal
// sent to the process must not reach another test's threads.
#include "util/signals.h"

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>

namespace singleton::util {
namespace {

using namespace std::chrono_literals;

// Polls for up to 5s.
bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

TEST(TerminationSignalsDeathTest, StartCallsBackForEachSignalUntilStop) {
  EXPECT_EXIT(
      {
        TerminationSignals signals;
        std::atomic<int> last{0};
        std::atomic<int> calls{0};
        signals.start([&](int sig) {
          last = sig;
          ++calls;
        });
        kill(getpid(), SIGTERM);
        if (!eventually([&] { return calls == 1; }) || last != SIGTERM) std::_Exit(1);
        kill(getpid(), SIGINT);
        if (!eventually([&] { return calls == 2; }) || last != SIGINT) std::_Exit(2);
        signals.stop();
        kill(getpid(), SIGTERM);  // blocked and no longer taken: stays pending, does not kill us
        std::this_thread::sleep_for(200ms);
        std::_Exit(calls == 2 ? 0 : 3);
      },
      testing::ExitedWithCode(0), "");
}

TEST(TerminationSignalsDeathTest, WaitReturnsTheSignal) {
  EXPECT_EXIT(
      {
        TerminationSignals signals;
        kill(getpid(), SIGINT);
        std::_Exit(signals.wait() == SIGINT ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

TEST(TerminationSignalsDeathTest, SigpipeIsIgnored) {
  EXPECT_EXIT(
      {
        TerminationSignals signals;
        raise(SIGPIPE);
        std::_Exit(0);
      },
      testing::ExitedWithCode(0), "");
}

TEST(TerminationSignalsTest, Names) {
  EXPECT_STREQ(TerminationSignals::name(SIGTERM), "SIGTERM");
  EXPECT_STREQ(TerminationSignals::name(SIGINT), "SIGINT");
}

}  // namespace
}  // namespace singleton::util
