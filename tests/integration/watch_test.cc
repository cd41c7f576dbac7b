// The watch layer on a real apiserver: latency of events, surviving an apiserver restart, and relisting after a 410.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "support/cluster_fixture.h"
#include "watch/cache.h"
#include "watch/reflector.h"

namespace singleton::watch {
namespace {

using namespace std::chrono_literals;
using testing::cluster;
using Clock = std::chrono::steady_clock;

const kube::Resource kConfigMaps{"", "v1", "configmaps", true};

std::string randomSuffix() {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex mutex;
  std::lock_guard guard(mutex);
  return std::to_string(rng() % 1'000'000'000);
}

std::string rvOf(const Json& object) { return object["metadata"].value("resourceVersion", ""); }

template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// A reflector filling a cache on its own thread, with every change the cache reports recorded and time-stamped.
class Watched {
 public:
  struct Seen {
    EventType type;
    std::string key;
    std::string resource_version;
    Json object;
    Clock::time_point at;
  };

  Watched(kube::Client& client, const kube::Resource& resource, ReflectorOptions options)
      : reflector_(client, resource, std::move(options), cache_) {
    cache_.addListener([this](const Event& event) {
      std::lock_guard guard(mutex_);
      seen_.push_back({event.type, objectKey(event.object), rvOf(event.object), event.object, Clock::now()});
      cv_.notify_all();
    });
  }
  ~Watched() { stop(); }

  void start() {
    thread_ = std::jthread([this](std::stop_token stop) { reflector_.run(stop); });
  }
  void stop() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
  }

  // The first matching change recorded at or after index `from`.
  std::optional<Seen> waitFor(EventType type, const std::string& key, std::chrono::milliseconds timeout,
                              std::size_t from = 0) {
    std::unique_lock lock(mutex_);
    std::optional<Seen> found;
    cv_.wait_for(lock, timeout, [&] {
      for (std::size_t i = from; i < seen_.size(); ++i) {
        if (seen_[i].type == type && seen_[i].key == key) {
          found = seen_[i];
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::size_t seenCount() const {
    std::lock_guard guard(mutex_);
    return seen_.size();
  }

  Cache& cache() { return cache_; }
  Reflector& reflector() { return reflector_; }

 private:
  Cache cache_;
  Reflector reflector_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
  std::jthread thread_;  // last: stopped first
};

class WatchIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::debug); }
  static void TearDownTestSuite() { spdlog::set_level(spdlog::level::info); }

  void SetUp() override {
    kube::KubeconfigOptions where;
    where.path = cluster().kubeconfigPath().string();
    auto config = kube::loadKubeconfig(where);
    ASSERT_TRUE(config.ok()) << config.error().describe();
    auto transport = kube::makeTransport(*config);
    ASSERT_TRUE(transport.ok()) << transport.error().describe();
    client_ = std::make_unique<kube::Client>(*transport);
    ns_ = makeNamespace("watch");
  }

  void TearDown() override {
    for (const auto& ns : namespaces_) (void)client_->remove(kube::kNamespaces, "", ns);
  }

  std::string makeNamespace(const std::string& prefix) {
    const std::string name = prefix + "-" + randomSuffix();
    auto created = client_->create(kube::kNamespaces, "", Json{{"metadata", {{"name", name}}}});
    EXPECT_TRUE(created.ok()) << created.error().describe();
    namespaces_.push_back(name);
    return name;
  }

  static ReflectorOptions optionsFor(const std::string& ns) {
    ReflectorOptions options;
    options.ns = ns;
    // Quick retries: the apiserver is back within seconds of a restart.
    options.backoff = util::BackoffPolicy{std::chrono::milliseconds(100), std::chrono::seconds(1), 2.0, 0.2};
    return options;
  }

  // Writes are retried on network errors: right after an apiserver restart the first request may go out on a pooled
  // connection that the old server closed.
  static util::Result<Json> retried(const std::function<util::Result<Json>()>& write) {
    util::RetryPolicy policy;
    policy.max_attempts = 10;
    return util::retry<Json>(write, policy, util::systemClock());
  }

  Json createConfigMap(const std::string& ns, const std::string& name, const std::string& value) {
    auto created = retried([&] {
      return client_->create(kConfigMaps, ns,
                             Json{{"metadata", {{"name", name}, {"namespace", ns}}}, {"data", {{"v", value}}}});
    });
    EXPECT_TRUE(created.ok()) << created.error().describe();
    return created.ok() ? *created : Json::object();
  }
  Json patchConfigMap(const std::string& ns, const std::string& name, const std::string& value) {
    auto patched = retried([&] { return client_->mergePatch(kConfigMaps, ns, name, Json{{"data", {{"v", value}}}}); });
    EXPECT_TRUE(patched.ok()) << patched.error().describe();
    return patched.ok() ? *patched : Json::object();
  }
  void remove(const kube::Resource& resource, const std::string& ns, const std::string& name) {
    auto removed = retried([&]() -> util::Result<Json> {
      auto status = client_->remove(resource, ns, name);
      if (!status.ok()) return std::move(status).takeError();
      return Json::object();
    });
    EXPECT_TRUE(removed.ok()) << removed.error().describe();
  }
  Json createEvent(const std::string& ns, const std::string& name) {
    Json event = {{"metadata", {{"name", name}, {"namespace", ns}}},
                  {"involvedObject", {{"kind", "ConfigMap"}, {"name", "x"}, {"namespace", ns}}},
                  {"reason", "WatchTest"},
                  {"message", "from the watch integration test"},
                  {"type", "Normal"}};
    auto created = retried([&] { return client_->create(kube::kEvents, ns, event); });
    EXPECT_TRUE(created.ok()) << created.error().describe();
    return created.ok() ? *created : Json::object();
  }

  // key -> resourceVersion, as the server has it now and as the cache has it.
  std::map<std::string, std::string> serverState(const kube::Resource& resource, const std::string& ns) {
    std::map<std::string, std::string> out;
    auto listed = client_->list(resource, ns);
    EXPECT_TRUE(listed.ok()) << listed.error().describe();
    if (listed.ok()) {
      for (const Json& item : (*listed)["items"]) out[objectKey(item)] = rvOf(item);
    }
    return out;
  }
  static std::map<std::string, std::string> cacheState(const Cache& cache) {
    std::map<std::string, std::string> out;
    for (const Json& item : cache.list()) out[objectKey(item)] = rvOf(item);
    return out;
  }

  // Writes elsewhere, so that etcd's revision moves past everything the reflector under test has seen. Returns the
  // last revision written.
  std::string advanceRevision(int writes) {
    const std::string other = makeNamespace("watch-other");
    std::string last;
    for (int i = 0; i < writes; ++i) last = rvOf(createConfigMap(other, "filler-" + std::to_string(i), "x"));
    return last;
  }

  // Compacts etcd's history up to `revision` through etcd's JSON gateway (no etcdctl needed). Watches from an older
  // revision then fail with "too old" (410).
  static void compactEtcd(const std::string& revision) {
    const std::string body = R"({"revision":")" + revision + R"(","physical":true})";
    auto result = testing::runCommand(
        {"curl", "-sS", "--max-time", "10", "-X", "POST", cluster().env("ETCD_URL") + "/v3/kv/compaction", "-d", body});
    ASSERT_TRUE(result.ok()) << result.err;
    // Already compacted further (the apiserver compacts every 5 minutes) is as good.
    ASSERT_TRUE(result.out.find("\"header\"") != std::string::npos ||
                result.out.find("required revision has been compacted") != std::string::npos)
        << result.out;
  }

  std::unique_ptr<kube::Client> client_;
  std::string ns_;
  std::vector<std::string> namespaces_;
};

TEST_F(WatchIntegrationTest, SeesAddedModifiedDeletedAsTheyHappen) {
  createConfigMap(ns_, "before", "0");
  Watched watched(*client_, kConfigMaps, optionsFor(ns_));
  watched.start();
  ASSERT_TRUE(eventually([&] { return watched.reflector().hasSynced(); }, 10s));
  ASSERT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/before", 10s)) << "the list's object";
  ASSERT_TRUE(eventually([&] { return watched.reflector().state() == Reflector::State::kWatching; }, 10s));
  // Each event is seen long before the server would end the 5-minute watch: delivered as it arrives.
  auto sent = Clock::now();
  const Json created = createConfigMap(ns_, "a", "1");
  auto added = watched.waitFor(EventType::kAdded, ns_ + "/a", 30s);
  ASSERT_TRUE(added);
  std::cout << "added seen after " << std::chrono::duration<double, std::milli>(added->at - sent).count() << " ms\n";
  EXPECT_EQ(added->resource_version, rvOf(created));

  sent = Clock::now();
  const Json patched = patchConfigMap(ns_, "a", "2");
  auto modified = watched.waitFor(EventType::kModified, ns_ + "/a", 30s);
  ASSERT_TRUE(modified);
  std::cout << "modified seen after " << std::chrono::duration<double, std::milli>(modified->at - sent).count()
            << " ms\n";
  EXPECT_EQ(modified->resource_version, rvOf(patched));
  ASSERT_TRUE(watched.cache().get(ns_, "a"));
  EXPECT_EQ((*watched.cache().get(ns_, "a"))["data"]["v"], "2");

  sent = Clock::now();
  remove(kConfigMaps, ns_, "a");
  auto deleted = watched.waitFor(EventType::kDeleted, ns_ + "/a", 30s);
  ASSERT_TRUE(deleted);
  std::cout << "deleted seen after " << std::chrono::duration<double, std::milli>(deleted->at - sent).count()
            << " ms\n";
  EXPECT_FALSE(watched.cache().get(ns_, "a"));

  EXPECT_EQ(cacheState(watched.cache()), serverState(kConfigMaps, ns_));
  EXPECT_EQ(watched.reflector().listCount(), 1);
  EXPECT_EQ(watched.reflector().lastResourceVersion(), deleted->resource_version);
}

TEST_F(WatchIntegrationTest, WatchSurvivesAnApiserverRestart) {
  createConfigMap(ns_, "keep", "1");
  createConfigMap(ns_, "drop", "1");
  Watched watched(*client_, kConfigMaps, optionsFor(ns_));
  watched.start();
  ASSERT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/drop", 10s));
  ASSERT_TRUE(eventually([&] { return watched.reflector().state() == Reflector::State::kWatching; }, 5s));
  const int watches_before = watched.reflector().watchCount();
  const int lists_before = watched.reflector().listCount();

  cluster().restartApiserver();  // returns when /readyz is ok again

  // Changes made after the restart reach the cache, whether the reflector resumed or had to relist.
  const std::size_t mark = watched.seenCount();
  patchConfigMap(ns_, "keep", "2");
  remove(kConfigMaps, ns_, "drop");
  createConfigMap(ns_, "new", "1");
  EXPECT_TRUE(watched.waitFor(EventType::kModified, ns_ + "/keep", 15s, mark));
  EXPECT_TRUE(watched.waitFor(EventType::kDeleted, ns_ + "/drop", 15s, mark));
  EXPECT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/new", 15s, mark));

  ASSERT_TRUE(watched.cache().get(ns_, "keep"));
  EXPECT_EQ((*watched.cache().get(ns_, "keep"))["data"]["v"], "2");
  EXPECT_FALSE(watched.cache().get(ns_, "drop"));
  EXPECT_EQ(cacheState(watched.cache()), serverState(kConfigMaps, ns_));
  EXPECT_GT(watched.reflector().watchCount(), watches_before) << "the watch was reopened";
  EXPECT_EQ(watched.reflector().state(), Reflector::State::kWatching);
  // Whether a relist was needed depends on other writers: the new apiserver's watch cache starts at etcd's current
  // revision, and a version older than that is "too old".
  std::printf("restart: %d watch(es) and %d list(s) before, %d and %d after\n", watches_before, lists_before,
              watched.reflector().watchCount(), watched.reflector().listCount());
}

// The common 410 in production: a restarted apiserver fills its watch cache at etcd's current revision, so a watch
// resumed from any older version is "too old" and must relist. Writes elsewhere make our version older than that.
TEST_F(WatchIntegrationTest, StaleVersionAfterARestartLeadsToARelist) {
  createConfigMap(ns_, "a", "1");
  Watched watched(*client_, kConfigMaps, optionsFor(ns_));
  watched.start();
  ASSERT_TRUE(eventually([&] { return watched.reflector().listCount() == 1; }, 10s));
  ASSERT_TRUE(eventually([&] { return watched.reflector().state() == Reflector::State::kWatching; }, 5s));
  const std::string stale = watched.reflector().lastResourceVersion();
  const std::string head = advanceRevision(3);
  ASSERT_GT(std::stoll(head), std::stoll(stale));

  cluster().restartApiserver();

  ASSERT_TRUE(eventually([&] { return watched.reflector().listCount() == 2; }, 15s))
      << "no relist; last resourceVersion " << watched.reflector().lastResourceVersion();
  const std::size_t mark = watched.seenCount();
  createConfigMap(ns_, "b", "1");
  EXPECT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/b", 10s, mark));
  EXPECT_EQ(cacheState(watched.cache()), serverState(kConfigMaps, ns_));
}

// A live watch whose version falls out of etcd's history. Events bypass the apiserver's watch cache (their cache size
// is 0 by default), so the watch is etcd's own: after a compaction it ends with an ERROR event carrying 410, either at
// once or, at the latest, when it is reopened from the old version after the server's short timeoutSeconds.
TEST_F(WatchIntegrationTest, CompactionWhileWatchingLeadsToARelist) {
  ReflectorOptions options = optionsFor(ns_);
  options.watch_timeout = 2s;  // the server closes the watch every 2 s; we reopen it from our last version
  Watched watched(*client_, kube::kEvents, options);
  createEvent(ns_, "e1");
  watched.start();
  // Listeners hear the snapshot before the reflector counts it as delivered, so wait for the count.
  ASSERT_TRUE(eventually([&] { return watched.reflector().listCount() == 1; }, 10s));
  ASSERT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/e1", 1s));
  const std::string stale = watched.reflector().lastResourceVersion();

  const std::string head = advanceRevision(5);
  ASSERT_GT(std::stoll(head), std::stoll(stale));
  compactEtcd(head);

  // At the latest, the next reopen (within ~2 s) asks for `stale`, which etcd no longer has.
  ASSERT_TRUE(eventually([&] { return watched.reflector().listCount() >= 2; }, 15s))
      << "no relist; last resourceVersion " << watched.reflector().lastResourceVersion();
  EXPECT_EQ(cacheState(watched.cache()), serverState(kube::kEvents, ns_));

  // And the reflector keeps working from the new list's version.
  const std::size_t mark = watched.seenCount();
  createEvent(ns_, "e2");
  EXPECT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/e2", 5s, mark));
  EXPECT_EQ(cacheState(watched.cache()), serverState(kube::kEvents, ns_));
}

// A reflector away for long (stopped here) comes back to a compacted history: it relists, and the cache turns the
// difference into events, so the deletion that happened meanwhile is not missed.
TEST_F(WatchIntegrationTest, ResumingFromACompactedVersionRelistsAndReportsWhatWasMissed) {
  Watched watched(*client_, kube::kEvents, optionsFor(ns_));
  createEvent(ns_, "old");
  watched.start();
  ASSERT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/old", 10s));
  ASSERT_TRUE(eventually([&] { return watched.reflector().state() == Reflector::State::kWatching; }, 5s));
  watched.stop();
  const std::string stale = watched.reflector().lastResourceVersion();

  remove(kube::kEvents, ns_, "old");
  createEvent(ns_, "fresh");
  const std::string head = advanceRevision(3);
  ASSERT_GT(std::stoll(head), std::stoll(stale));
  compactEtcd(head);

  const std::size_t mark = watched.seenCount();
  watched.start();  // resumes watching from `stale`: 410, relist
  EXPECT_TRUE(watched.waitFor(EventType::kDeleted, ns_ + "/old", 15s, mark));
  EXPECT_TRUE(watched.waitFor(EventType::kAdded, ns_ + "/fresh", 15s, mark));
  EXPECT_TRUE(eventually([&] { return watched.reflector().listCount() == 2; }, 5s));
  EXPECT_EQ(cacheState(watched.cache()), serverState(kube::kEvents, ns_));
}

}  // namespace
}  // namespace singleton::watch
