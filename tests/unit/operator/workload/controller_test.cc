// The whole controller on the fake API, with real watches: informers sync, workers reconcile from events, a leader
// failover happens, and runWorkers can be started again after it returned.
#include "operator/workload/controller.h"

#include <gtest/gtest.h>

#include <thread>

#include "operator/workload/workload.h"
#include "reconciler_harness.h"
#include "support/fake_cluster.h"
#include "support/fake_lock.h"

namespace singleton::op {
namespace {

using singleton::testing::eventually;
using singleton::testing::FakeCluster;
using testing::FakeGate;
using testing::kNs;

class ControllerTest : public ::testing::Test {
 protected:
  ControllerTest() : cluster_(std::make_shared<FakeCluster>()), controller_(cluster_, {"", 2, "operator-0"}, metrics_) {
    informers_ = std::jthread([this](std::stop_token stop) { controller_.runInformers(stop); });
  }
  ~ControllerTest() override {
    informers_.request_stop();
    informers_.join();
  }

  // The simulated kubelet: every pod without a status becomes Running and Ready; terminating ones disappear.
  void kubelet() {
    for (const Json& pod : cluster_->list(kube::kPods, kNs)) {
      const std::string name = pod["metadata"]["name"];
      if (pod["metadata"].contains("deletionTimestamp")) {
        cluster_->erase(kube::kPods, kNs, name);
      } else if (!pod.contains("status")) {
        cluster_->modify(kube::kPods, kNs, name, [](Json& p) {
          p["status"] = {{"phase", "Running"}, {"conditions", Json::array({{{"type", "Ready"}, {"status", "True"}}})}};
        });
      }
    }
  }
  std::string holder() const {
    const auto lease = cluster_->get(kube::kLeases, kNs, "w-leader");
    return lease ? (*lease)["spec"].value("holderIdentity", "") : "";
  }
  long long token() const {
    const auto lease = cluster_->get(kube::kLeases, kNs, "w-leader");
    return lease ? (*lease)["spec"].value("leaseTransitions", -1LL) : -1;
  }
  std::string role(const std::string& pod) const {
    const auto p = cluster_->get(kube::kPods, kNs, pod);
    return p ? labelOf(*p, kLabelRole) : "";
  }
  bool settled(const std::string& leader, long long expected_token) {
    kubelet();
    const auto p = cluster_->get(kube::kPods, kNs, leader);
    return holder() == leader && token() == expected_token && p && labelOf(*p, kLabelRole) == kRoleLeader &&
           annotationOf(*p, kAnnotationFencingToken) == std::to_string(expected_token);
  }

  std::shared_ptr<FakeCluster> cluster_;
  controller::Registry metrics_;
  Controller controller_;
  std::jthread informers_;
};

TEST_F(ControllerTest, ElectsFailsOverAndRestartsItsWorkers) {
  ASSERT_TRUE(eventually([&] { return controller_.synced(); }));
  FakeGate gate;
  cluster_->put(kWorkloads, {{"apiVersion", "singleton.dev/v1alpha1"},
                             {"kind", "SingletonWorkload"},
                             {"metadata", {{"name", "w"}, {"namespace", kNs}}},
                             {"spec", {{"replicas", 2}, {"template", testing::podTemplate()}}}});
  {
    std::stop_source stop;
    std::jthread workers([&] { controller_.runWorkers(gate, stop.get_token()); });
    EXPECT_TRUE(eventually([&] { return settled("w-0", 0); }));
    EXPECT_EQ(role("w-1"), kRoleStandby);

    cluster_->erase(kube::kPods, kNs, "w-0");
    EXPECT_TRUE(eventually([&] { return settled("w-1", 1); }));
    EXPECT_TRUE(eventually([&] {
      kubelet();
      const auto p = cluster_->get(kube::kPods, kNs, "w-0");
      return role("w-0") == kRoleStandby && p && isReady(*p);
    }));
    stop.request_stop();
  }
  const int writes = cluster_->writeCount();

  // Standby again: events still arrive, but nothing is written until the workers run again.
  cluster_->modify(kube::kPods, kNs, "w-1", [](Json& p) { p["status"]["conditions"][0]["status"] = "False"; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(cluster_->writeCount(), writes);
  {
    std::stop_source stop;
    std::jthread workers([&] { controller_.runWorkers(gate, stop.get_token()); });
    EXPECT_TRUE(eventually([&] { return settled("w-0", 2); }));
    stop.request_stop();
  }
  EXPECT_TRUE(cluster_->violations().empty()) << ::testing::PrintToString(cluster_->violations());

  const std::string text = metrics_.render();
  EXPECT_NE(text.find("singleton_reconcile_total{result=\"success\"}"), std::string::npos);
  EXPECT_NE(text.find("singleton_reconcile_duration_seconds_count"), std::string::npos);
  EXPECT_NE(text.find("workqueue_depth"), std::string::npos);
  EXPECT_NE(text.find("singleton_failovers_total{reason=\"deleted\"} 1"), std::string::npos);
  EXPECT_NE(text.find("singleton_failovers_total{reason=\"notready\"} 1"), std::string::npos);
  EXPECT_NE(text.find("singleton_workload_fencing_token{name=\"w\",namespace=\"prod\"} 2"), std::string::npos);
  EXPECT_NE(text.find("singleton_failover_duration_seconds_count 2"), std::string::npos);
}

TEST_F(ControllerTest, RunWorkersReturnsWhenStoppedBeforeSync) {
  // A controller whose informers never run never syncs; stopping must still end runWorkers.
  controller::Registry metrics;
  Controller idle(std::make_shared<FakeCluster>(), {"", 1, "operator-1"}, metrics);
  FakeGate gate;
  std::stop_source stop;
  std::atomic<bool> returned{false};
  std::jthread workers([&] {
    idle.runWorkers(gate, stop.get_token());
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(returned.load());
  stop.request_stop();
  EXPECT_TRUE(eventually([&] { return returned.load(); }));
}

}  // namespace
}  // namespace singleton::op
