// A work queue in the manner of client-go's workqueue: keys, not events, so a burst of changes to one workload
// costs one reconcile.
//  - De-duplicating: a key already waiting is not queued twice.
//  - One worker per key: a key added while it is being processed is queued again when the worker calls done().
//  - Delayed adds (addAfter) and per-key exponential backoff (addRateLimited, reset by forget()).
// All waiting goes through util::Clock, so tests drive the delays with a FakeClock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <unordered_map>

#include "util/clock.h"

namespace singleton::controller {

struct WorkQueueOptions {
  util::Millis base_delay{5};      // the first rate-limited retry
  util::Millis max_delay{30'000};  // the cap of the per-key exponential backoff
};

class WorkQueue {
 public:
  // Called with the number of keys ready to be handed out whenever it may have changed (a metric's gauge, say);
  // under the queue's lock, so it must be quick and must not call back into the queue.
  using DepthCallback = std::function<void(std::size_t depth)>;

  explicit WorkQueue(const util::Clock& clock, DepthCallback depth = {}, WorkQueueOptions options = {});
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void add(const std::string& key);
  // Adds `key` once `delay` has passed on the clock. A key already waiting keeps the earlier of the two times.
  void addAfter(const std::string& key, util::Millis delay);
  // Adds `key` after its next backoff delay: base_delay * 2^(failures so far), capped at max_delay, and not before
  // `at_least` (a server's Retry-After).
  void addRateLimited(const std::string& key, util::Millis at_least = util::Millis::zero());
  // Resets the key's backoff (it succeeded).
  void forget(const std::string& key);
  int numRequeues(const std::string& key) const;

  // Blocks until a key is ready and hands it out, marking it in processing; nullopt when stop is requested or the
  // queue is shut down. Every key handed out must be given back with done().
  std::optional<std::string> get(std::stop_token stop = {});
  void done(const std::string& key);

  // Drops every key waiting (ready or delayed) and every key's backoff, and stays usable: the end of a leadership
  // term, whose requeues the next term must not inherit (it enqueues every workload anew). A key in processing is
  // not re-queued by its done().
  void reset();
  // Wakes every get() and refuses further work; pending keys are dropped.
  void shutDown();
  bool shuttingDown() const;

  // Keys ready to be handed out (not those waiting for a delay, nor those in processing). Not const: keys whose
  // delay has passed are moved into the queue first.
  std::size_t len();
  // Keys waiting for a delay to pass.
  std::size_t waitingLen();

 private:
  void addLocked(const std::string& key);
  // Moves the delayed keys whose time has come into the queue.
  void promoteDueLocked();
  void publishDepthLocked();

  const util::Clock& clock_;
  DepthCallback depth_;
  WorkQueueOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable_any cv_;
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;       // needs processing (in queue_, or re-queued on done())
  std::set<std::string> processing_;  // handed out, not yet done()
  std::multimap<util::MonoTime, std::string> waiting_;
  std::unordered_map<std::string, std::multimap<util::MonoTime, std::string>::iterator> waiting_index_;
  std::unordered_map<std::string, int> failures_;
  std::uint64_t timers_changed_ = 0;  // bumped by addAfter, so sleeping get()s re-read the earliest deadline
  bool shutting_down_ = false;
};

}  // namespace singleton::controller
