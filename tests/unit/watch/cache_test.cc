#include "watch/cache.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace singleton::watch {
namespace {

Json object(const std::string& ns, const std::string& name, const std::string& rv) {
  Json metadata = {{"name", name}, {"resourceVersion", rv}};
  if (!ns.empty()) metadata["namespace"] = ns;
  return {{"metadata", metadata}};
}

std::string describe(const Event& event) {
  static const char* const kNames[] = {"ADDED", "MODIFIED", "DELETED"};
  return std::string(kNames[static_cast<int>(event.type)]) + " " + objectKey(event.object) + "@" +
         event.object["metadata"]["resourceVersion"].get<std::string>();
}

class CacheTest : public ::testing::Test {
 protected:
  CacheTest() {
    cache.addListener([this](const Event& event) { seen.push_back(describe(event)); });
  }
  Cache cache;
  std::vector<std::string> seen;
};

TEST(ObjectKeyTest, NamespacedClusterScopedAndMalformed) {
  EXPECT_EQ(objectKey(object("ns1", "a", "1")), "ns1/a");
  EXPECT_EQ(objectKey(object("", "node-1", "1")), "node-1");
  EXPECT_EQ(objectKey("ns1", "a"), "ns1/a");
  EXPECT_EQ(objectKey("", "a"), "a");
  EXPECT_EQ(objectKey(Json::object()), "");
  EXPECT_EQ(objectKey(Json(42)), "");
  EXPECT_EQ(objectKey(Json{{"metadata", {{"name", 7}}}}), "");
}

TEST_F(CacheTest, FirstSnapshotIsAllAdds) {
  EXPECT_FALSE(cache.hasSynced());
  cache.onReplace({object("ns1", "a", "1"), object("ns1", "b", "2")}, "10");
  EXPECT_TRUE(cache.hasSynced());
  EXPECT_EQ(cache.syncResourceVersion(), "10");
  EXPECT_EQ(seen, std::vector<std::string>({"ADDED ns1/a@1", "ADDED ns1/b@2"}));
  EXPECT_EQ(cache.size(), 2u);
  ASSERT_TRUE(cache.get("ns1", "a").has_value());
  EXPECT_EQ((*cache.get("ns1/b"))["metadata"]["resourceVersion"], "2");
  EXPECT_FALSE(cache.get("ns1/zz").has_value());
}

TEST_F(CacheTest, RelistSynthesizesTheDifference) {
  cache.onReplace({object("ns1", "same", "1"), object("ns1", "changed", "2"), object("ns1", "gone", "3")}, "10");
  seen.clear();
  cache.onReplace({object("ns1", "same", "1"), object("ns1", "changed", "20"), object("ns1", "new", "21")}, "30");
  // Unchanged objects are not reported; the vanished one is reported with its last known state.
  EXPECT_EQ(seen, std::vector<std::string>({"MODIFIED ns1/changed@20", "ADDED ns1/new@21", "DELETED ns1/gone@3"}));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.get("ns1/gone").has_value());
  EXPECT_EQ(cache.syncResourceVersion(), "30");
}

TEST_F(CacheTest, EmptyRelistDeletesEverything) {
  cache.onReplace({object("ns1", "a", "1"), object("ns2", "b", "2")}, "10");
  seen.clear();
  cache.onReplace({}, "11");
  EXPECT_EQ(seen, std::vector<std::string>({"DELETED ns1/a@1", "DELETED ns2/b@2"}));
  EXPECT_EQ(cache.size(), 0u);
}

TEST_F(CacheTest, EventsApplyAndNotify) {
  cache.onReplace({}, "1");
  cache.onEvent({EventType::kAdded, object("ns1", "a", "2")});
  cache.onEvent({EventType::kModified, object("ns1", "a", "3")});
  EXPECT_EQ((*cache.get("ns1/a"))["metadata"]["resourceVersion"], "3");
  cache.onEvent({EventType::kDeleted, object("ns1", "a", "4")});
  EXPECT_FALSE(cache.get("ns1/a").has_value());
  EXPECT_EQ(seen, std::vector<std::string>({"ADDED ns1/a@2", "MODIFIED ns1/a@3", "DELETED ns1/a@4"}));
}

TEST_F(CacheTest, ObjectsWithoutANameAreSkipped) {
  cache.onReplace({Json{{"metadata", Json::object()}}, object("ns1", "a", "1")}, "1");
  cache.onEvent({EventType::kAdded, Json::object()});
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(seen, std::vector<std::string>({"ADDED ns1/a@1"}));
}

TEST_F(CacheTest, ListenersRunAfterTheUpdateAndMayReadTheCache) {
  std::vector<bool> present;
  cache.addListener([&](const Event& event) { present.push_back(cache.get(objectKey(event.object)).has_value()); });
  cache.onEvent({EventType::kAdded, object("ns1", "a", "1")});
  cache.onEvent({EventType::kDeleted, object("ns1", "a", "2")});
  // Read from inside the listener: no deadlock, and the change is already visible.
  EXPECT_EQ(present, std::vector<bool>({true, false}));
}

TEST_F(CacheTest, ListAndListNamespace) {
  cache.onReplace({object("ns1", "a", "1"), object("ns1", "b", "1"), object("ns10", "c", "1"), object("ns2", "d", "1"),
                   object("", "cluster", "1")},
                  "1");
  EXPECT_EQ(cache.list().size(), 5u);
  std::vector<std::string> keys;
  for (const Json& o : cache.listNamespace("ns1")) keys.push_back(objectKey(o));
  EXPECT_EQ(keys, std::vector<std::string>({"ns1/a", "ns1/b"}));  // not ns10/c
  EXPECT_EQ(cache.listNamespace("ns2").size(), 1u);
  EXPECT_EQ(cache.listNamespace("none").size(), 0u);
  ASSERT_EQ(cache.listNamespace("").size(), 1u);
  EXPECT_EQ(objectKey(cache.listNamespace("")[0]), "cluster");
}

TEST(CacheConcurrencyTest, ReadersRunWhileOneWriterUpdates) {
  Cache cache;
  std::atomic<bool> done{false};
  std::atomic<long> reads{0};
  std::vector<std::jthread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      while (!done.load()) {
        const auto all = cache.list();
        for (const Json& o : all) ASSERT_TRUE(o.contains("metadata"));
        (void)cache.get("ns/x5");
        ++reads;
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    const std::string name = "x" + std::to_string(i % 10);
    cache.onEvent({i % 3 == 2 ? EventType::kDeleted : EventType::kAdded, object("ns", name, std::to_string(i))});
    if (i % 500 == 0) cache.onReplace({object("ns", "x1", std::to_string(i))}, std::to_string(i));
  }
  while (reads.load() == 0) std::this_thread::yield();  // every reader got at least one look
  done = true;
  readers.clear();
  EXPECT_GT(reads.load(), 0);
  EXPECT_LE(cache.size(), 10u);
}

}  // namespace
}  // namespace singleton::watch
