// Candidates on one FakeRecordStore, driven by a FakeClock: the fixture the elector's unit tests share.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "election/leader_elector.h"
#include "support/fake_lock.h"

namespace singleton::testing {

struct Candidate {
  std::shared_ptr<FakeLock> lock;
  std::unique_ptr<election::LeaderElector> elector;
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<long long> token{-1};
  std::atomic<int> outcome{-1};
  std::vector<std::pair<std::string, long long>> new_leaders;
  std::optional<util::MonoTime> work_stopped_at;  // when the leader work saw its stop (hold_work only)
  std::mutex mutex;
  std::jthread thread;

  void start() {
    outcome = -1;
    thread = std::jthread([this](std::stop_token stop) { outcome = static_cast<int>(elector->run(stop)); });
  }
  void stop() {
    thread.request_stop();
    thread.join();
  }
};

class ElectorTest : public ::testing::Test {
 protected:
  struct Options {
    bool release_on_cancel = true;
    bool hold_work = false;  // on_started_leading blocks until its stop, and notes when that came
    util::Millis renew_interval{0};
  };
  std::unique_ptr<Candidate> candidate(const std::string& id) { return candidate(id, Options{}); }
  std::unique_ptr<Candidate> candidate(const std::string& id, bool release_on_cancel) {
    return candidate(id, Options{.release_on_cancel = release_on_cancel});
  }
  std::unique_ptr<Candidate> candidate(const std::string& id, const Options& options) {
    using namespace std::chrono_literals;
    auto c = std::make_unique<Candidate>();
    c->lock = std::make_shared<FakeLock>(store_, id);
    election::ElectorConfig config;
    config.lock = c->lock;
    config.lease_duration = 15s;
    config.renew_deadline = 10s;
    config.retry_period = 2s;
    config.renew_interval = options.renew_interval;
    config.release_on_cancel = options.release_on_cancel;
    config.clock = &clock_;
    Candidate* raw = c.get();
    const util::FakeClock* clock = &clock_;
    config.callbacks.on_started_leading = [raw, clock, hold = options.hold_work](fencing::FencingToken token,
                                                                                 std::stop_token stop) {
      raw->token = token.value();
      ++raw->started;
      if (!hold) return;
      while (!stop.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard g(raw->mutex);
      raw->work_stopped_at = clock->now();
    };
    config.callbacks.on_stopped_leading = [raw] { ++raw->stopped; };
    config.callbacks.on_new_leader = [raw](const std::string& holder, fencing::FencingToken token) {
      std::lock_guard g(raw->mutex);
      raw->new_leaders.emplace_back(holder, token.value());
    };
    auto elector = election::LeaderElector::create(config);
    EXPECT_TRUE(elector.ok());
    c->elector = std::move(elector).value();
    return c;
  }

  std::shared_ptr<FakeRecordStore> store_ = std::make_shared<FakeRecordStore>();
  util::FakeClock clock_;
};

}  // namespace singleton::testing
