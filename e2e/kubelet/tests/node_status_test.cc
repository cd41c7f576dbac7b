#include "node_status.h"

#include <gtest/gtest.h>

#include "pod_status.h"
#include "util/time_format.h"

namespace singleton::sim {
namespace {

const util::WallTime kNow = util::WallTime(std::chrono::seconds(1'700'000'000));

TEST(NodeStatus, NewNodeIsReadyWithCapacity) {
  const Json node = nodeObject("sim-node-0", kNow);
  EXPECT_EQ(node["metadata"]["labels"][kManagedLabel], "true");
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/hostname"], "sim-node-0");
  const Json& status = node["status"];
  EXPECT_EQ(status["capacity"]["cpu"], "32");
  EXPECT_EQ(status["allocatable"]["memory"], "256Gi");
  EXPECT_EQ(status["allocatable"]["pods"], "1000");
  EXPECT_EQ(status["addresses"][0]["address"], "127.0.0.1");
  EXPECT_EQ(findByType(status["conditions"], "Ready")->at("status"), "True");
  for (const char* type : {"MemoryPressure", "DiskPressure", "PIDPressure"}) {
    EXPECT_EQ(findByType(status["conditions"], type)->at("status"), "False") << type;
  }
}

TEST(NodeStatus, HeartbeatMovesOnlyTheHeartbeatTime) {
  const Json node = nodeObject("n", kNow);
  const util::WallTime later = kNow + std::chrono::seconds(2);
  const Json status = nodeStatus("n", node, later);
  const Json* ready = findByType(status["conditions"], "Ready");
  EXPECT_EQ(ready->at("lastHeartbeatTime"), util::formatTime(later));
  EXPECT_EQ(ready->at("lastTransitionTime"), util::formatTime(kNow));

  // After the node-lifecycle controller set Unknown, Ready comes back with a new transition time.
  Json lost = node;
  for (Json& c : lost["status"]["conditions"]) c["status"] = "Unknown";
  const Json back = nodeStatus("n", lost, later);
  EXPECT_EQ(findByType(back["conditions"], "Ready")->at("lastTransitionTime"), util::formatTime(later));
}

TEST(NodeStatus, NotReadyTaintsAreRemovedOthersKept) {
  Json node = nodeObject("n", kNow);
  EXPECT_FALSE(taintsWithoutNotReady(node));
  node["spec"]["taints"] = Json::parse(R"([
    {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
    {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])");
  const auto kept = taintsWithoutNotReady(node);
  ASSERT_TRUE(kept);
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_EQ((*kept)[0]["key"], "dedicated");
}

TEST(NodeStatus, HeartbeatAnnotation) {
  Json node = nodeObject("n", kNow);
  EXPECT_FALSE(heartbeatStopped(node));
  node["metadata"]["annotations"][kHeartbeatAnnotation] = "stopped";
  EXPECT_TRUE(heartbeatStopped(node));
  node["metadata"]["annotations"][kHeartbeatAnnotation] = "running";
  EXPECT_FALSE(heartbeatStopped(node));
  EXPECT_FALSE(heartbeatStopped(Json::parse(R"({"metadata": {"annotations": []}})")));
}

TEST(NodeStatus, LeaseIsOwnedByTheNode) {
  const kube::Lease lease = nodeLease("n", "uid-1", kNow);
  EXPECT_EQ(lease.ns, "kube-node-lease");
  EXPECT_EQ(lease.spec.holder_identity, "n");
  EXPECT_EQ(lease.spec.lease_duration_seconds, 40);
  EXPECT_EQ(lease.spec.renew_time, kNow);
  const Json object = kube::leaseToJson(lease);
  EXPECT_EQ(object["metadata"]["ownerReferences"][0]["uid"], "uid-1");
  EXPECT_EQ(object["metadata"]["ownerReferences"][0]["kind"], "Node");
}

}  // namespace
}  // namespace singleton::sim
