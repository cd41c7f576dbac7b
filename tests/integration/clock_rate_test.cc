// libsingleton-clock-rate.so (tests/tools/clock_rate.cc), the fault campaign's monotonic clock rate: a process's
// steady_clock runs at SINGLETON_CLOCK_RATE and its waits timed with it (condition variables, sleeps, timerfds) take
// their duration by that clock, alone and preloaded before libfaketime as chaos::fakeTimeEnvironment() does; and
// singleton-elect under it leads an uncontended Lease and runs its command. singleton-clock-probe prints what a
// process sees (its real times read by syscall, past both libraries).
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chaos/peers.h"
#include "support/cluster_fixture.h"
#include "support/elect_candidate.h"
#include "support/process.h"

namespace singleton::testing {
namespace {

using namespace std::chrono_literals;

static auto* const kClusterEnv = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

// The waits singleton-clock-probe measures, each of --wait-ms by the process's own clock.
const std::vector<std::string> kWaits = {"cv_wait_for",     "cv_wait_until",       "sleep_for", "nanosleep",  "usleep",
                                         "clock_nanosleep", "clock_nanosleep_abs", "timerfd",   "timerfd_abs"};

std::string probeBinary() { return std::string(SINGLETON_BINARY_DIR) + "/tests/singleton-clock-probe"; }

std::map<std::string, std::string> rateEnvironment(const std::string& rate) {
  const auto library = chaos::clockRateLibrary();
  if (!library) throw std::runtime_error("libsingleton-clock-rate.so was not built");
  return chaos::clockRateEnvironment(*library, rate);
}

struct Wait {
  double own_ms = 0;   // by the probe's steady_clock
  double real_ms = 0;  // by the real CLOCK_MONOTONIC
};

struct ProbeResult {
  double wall_offset = 0;  // seconds
  double rate = 0;         // 0: not measured
  std::map<std::string, Wait> waits;
  std::string text;  // everything it printed, for failure messages
};

std::unique_ptr<Process> startProbe(std::map<std::string, std::string> env, int ratio_ms, int wait_ms) {
  return std::make_unique<Process>(std::vector<std::string>{probeBinary(), "--ratio-ms", std::to_string(ratio_ms),
                                                            "--wait-ms", std::to_string(wait_ms)},
                                   std::move(env));
}

// Waits for the probe to finish (a wait that hangs fails here) and parses its lines.
ProbeResult finish(Process& probe) {
  ProbeResult result;
  const auto status = probe.wait(20s);
  for (const auto& line : probe.lines()) {
    result.text += line + "\n";
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "wall_offset") in >> result.wall_offset;
    if (kind == "rate") in >> result.rate;
    if (kind == "wait") {
      std::string name;
      Wait w;
      in >> name >> w.own_ms >> w.real_ms;
      result.waits[name] = w;
    }
  }
  EXPECT_EQ(status, 0) << "the probe did not finish (a wait hung?):\n" << result.text << probe.stderrText();
  return result;
}

// Every wait took at least `wait_ms` by the probe's own clock (none ended early, none was shortened twice) and
// returned within `max_real_ms` of real time.
void expectWaitsReturn(const ProbeResult& r, double wait_ms, double max_real_ms) {
  for (const auto& name : kWaits) {
    const auto it = r.waits.find(name);
    ASSERT_NE(it, r.waits.end()) << name << " missing:\n" << r.text;
    EXPECT_GE(it->second.own_ms, wait_ms - 0.01) << name << " ended early by the process's clock:\n" << r.text;
    EXPECT_LT(it->second.real_ms, max_real_ms) << name << ":\n" << r.text;
  }
}

TEST(ClockRateTest, SteadyClockRunsAtTheRateAndWaitsReturn) {
  auto fast = startProbe(rateEnvironment("1.02"), 1000, 300);
  auto slow = startProbe(rateEnvironment("0.98"), 1000, 300);
  const auto f = finish(*fast);
  const auto s = finish(*slow);
  std::cout << std::fixed << std::setprecision(5) << "[clock-rate] 1.02: measured " << f.rate << "; 0.98: measured "
            << s.rate << std::endl;
  EXPECT_GE(f.rate, 1.015) << f.text;
  EXPECT_LE(f.rate, 1.025) << f.text;
  EXPECT_GE(s.rate, 0.975) << s.text;
  EXPECT_LE(s.rate, 0.985) << s.text;
  // The wall clock is not ours to change.
  EXPECT_LT(std::abs(f.wall_offset), 0.5) << f.text;
  expectWaitsReturn(f, 300, 2000);
  expectWaitsReturn(s, 300, 2000);
  // Real time of a wait is at least its duration over the rate (never early): 300 / 0.98 = 306 ms.
  for (const auto& name : kWaits) EXPECT_GE(s.waits.at(name).real_ms, 306.0) << name << ":\n" << s.text;
}

// At rates far from 1 a wait's real duration tells a translated wait (d / rate) from one that is not (d) beyond any
// scheduling delay: at 2, 300 ms take 150 ms (not translated: at least 300); at 0.5, 600 ms (not translated: ~300).
TEST(ClockRateTest, WaitsTakeTheirDurationByTheProcessClock) {
  auto fast = startProbe(rateEnvironment("2"), 0, 300);
  auto slow = startProbe(rateEnvironment("0.5"), 0, 300);
  const auto f = finish(*fast);
  const auto s = finish(*slow);
  expectWaitsReturn(f, 300, 290);
  expectWaitsReturn(s, 300, 3000);
  for (const auto& name : kWaits) {
    if (!f.waits.count(name) || !s.waits.count(name)) continue;  // reported by expectWaitsReturn
    EXPECT_GE(f.waits.at(name).real_ms, 149.9) << name << ":\n" << f.text;
    EXPECT_GE(s.waits.at(name).real_ms, 599.9) << name << ":\n" << s.text;
  }
}

TEST(ClockRateTest, WithoutAValidRateTheClockIsReal) {
  std::vector<std::unique_ptr<Process>> probes;
  for (const char* rate : {"1", "fast", "0", "-2", ""}) probes.push_back(startProbe(rateEnvironment(rate), 500, 50));
  for (auto& probe : probes) {
    const auto r = finish(*probe);
    EXPECT_NEAR(r.rate, 1.0, 0.005) << r.text;
    expectWaitsReturn(r, 50, 2000);
  }
}

// The campaign's clock faults: libfaketime offsets and speeds up the wall clock, our library the monotonic one.
TEST(ClockRateTest, WithLibfaketimeAsTheCampaignRunsIt) {
  const auto faketime = chaos::fakeTimeLibrary();
  if (!faketime) GTEST_SKIP() << "libfaketime is not installed (scripts/deps.sh)";
  const auto ahead_env = chaos::fakeTimeEnvironment(*faketime, "+30s x1.02");
  const auto behind_env = chaos::fakeTimeEnvironment(*faketime, "-30s x0.98");
  EXPECT_EQ(ahead_env.at("LD_PRELOAD"), chaos::clockRateLibrary()->string() + ":" + faketime->string());
  EXPECT_EQ(ahead_env.at("SINGLETON_CLOCK_RATE"), "1.02");
  EXPECT_EQ(behind_env.at("SINGLETON_CLOCK_RATE"), "0.98");
  EXPECT_EQ(ahead_env.at("FAKETIME_DONT_FAKE_MONOTONIC"), "1");
  auto ahead = startProbe(ahead_env, 1000, 300);
  auto behind = startProbe(behind_env, 1000, 300);
  const auto a = finish(*ahead);
  const auto b = finish(*behind);
  std::cout << std::fixed << std::setprecision(5) << "[clock-rate] +30s x1.02: wall " << a.wall_offset
            << " s, monotonic rate " << a.rate << "; -30s x0.98: wall " << b.wall_offset << " s, monotonic rate "
            << b.rate << std::endl;
  EXPECT_GT(a.wall_offset, 29.5) << a.text;
  EXPECT_LT(a.wall_offset, 31) << a.text;
  EXPECT_LT(b.wall_offset, -29.5) << b.text;
  EXPECT_GT(b.wall_offset, -31) << b.text;
  EXPECT_GE(a.rate, 1.015) << a.text;
  EXPECT_LE(a.rate, 1.025) << a.text;
  EXPECT_GE(b.rate, 0.975) << b.text;
  EXPECT_LE(b.rate, 0.985) << b.text;
  // Scaled once, not by both libraries (libfaketime divides relative sleeps by its rate too).
  expectWaitsReturn(a, 300, 2000);
  expectWaitsReturn(b, 300, 2000);
}

// singleton-elect with its steady_clock 2 % fast (and, as the campaign runs it, its wall clock 30 s ahead): it takes an
// uncontended Lease, runs its command, and stops on SIGTERM.
TEST(ClockRateTest, ElectCandidateLeadsAndRunsItsCommand) {
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> runs = {
      {"clock-rate-only", rateEnvironment("1.02")}};
  if (const auto faketime = chaos::fakeTimeLibrary()) {
    runs.emplace_back("clock-rate-faketime", chaos::fakeTimeEnvironment(*faketime, "+30s x1.02"));
  }
  std::vector<std::unique_ptr<Process>> candidates;
  for (const auto& [name, env] : runs) {
    candidates.push_back(chaos::electCandidateWithEnvironment(
        "default/" + name, name, {"sh", "-c", "echo ran token=$SINGLETON_FENCING_TOKEN; exec sleep 1000"},
        cluster().kubeconfigPath().string(), env));
  }
  for (std::size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(runs[i].first);
    auto& candidate = *candidates[i];
    EXPECT_TRUE(candidate.waitForLine([](const std::string& l) { return isElectEvent(l, "started_leading"); }, 20s))
        << candidate.stderrText();
    EXPECT_TRUE(candidate.waitForLine([](const std::string& l) { return l == "ran token=0"; }, 10s))
        << candidate.stderrText();
  }
  // Still leading after a few renewals (retry period 1 s by its clock).
  std::this_thread::sleep_for(2500ms);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(runs[i].first);
    auto& candidate = *candidates[i];
    EXPECT_FALSE(candidate.waitForLine([](const std::string& l) { return isElectEvent(l, "stopped_leading"); }, 0ms))
        << candidate.stderrText();
    candidate.signal(SIGTERM);
  }
  for (std::size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(runs[i].first);
    EXPECT_EQ(candidates[i]->wait(20s), 0) << candidates[i]->stderrText();
  }
}

}  // namespace
}  // namespace singleton::testing
