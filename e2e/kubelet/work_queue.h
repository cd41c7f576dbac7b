// A queue of object keys for a pool of workers, as client-go's workqueue: a key waiting in the queue is queued
// once however often it is added (a burst of events costs one write), a key is handed to one worker at a time (two
// workers never race on one pod), and a key added while it is being processed is handed out again afterwards, so
// the last event is never lost. Keys may also be added after a delay (retries with backoff, --ready-delay).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>

#include "util/backoff.h"
#include "util/clock.h"

namespace singleton::sim {

class WorkQueue {
 public:
  explicit WorkQueue(const util::Clock& clock = util::systemClock(),
                     util::BackoffPolicy retry_policy = {util::Millis(50), util::Millis(10'000), 2.0, 0.2});

  void add(const std::string& key);
  // Adds `key` once `delay` has passed (at once when it is zero or negative). An earlier due time wins.
  void addAfter(const std::string& key, util::Millis delay);
  // Adds `key` after its next backoff delay, which grows with every retry until forget(key).
  void retry(const std::string& key);
  void forget(const std::string& key);

  // Blocks until a key is due (returned) or stop is requested (nullopt, even with keys waiting). The caller must
  // call done(key) after processing the key.
  std::optional<std::string> get(std::stop_token stop);
  void done(const std::string& key);

  std::size_t length() const;  // keys waiting now (not delayed, not processing)

 private:
  void addLocked(const std::string& key);
  void promoteDueLocked();

  const util::Clock& clock_;
  util::BackoffPolicy retry_policy_;
  mutable std::mutex mutex_;
  std::condition_variable_any cv_;
  std::deque<std::string> queue_;
  std::set<std::string> queued_;      // in queue_
  std::set<std::string> processing_;  // handed to a worker
  std::set<std::string> dirty_;       // added while processing: queue again on done()
  std::multimap<util::MonoTime, std::string> delayed_;
  std::map<std::string, util::MonoTime> delayed_at_;  // key -> its entry's due time in delayed_
  std::uint64_t delayed_generation_ = 0;              // bumped on every delayed add, to wake waiting workers
  std::map<std::string, util::Backoff> retries_;
};

}  // namespace singleton::sim
