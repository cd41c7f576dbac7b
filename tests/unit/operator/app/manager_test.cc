#include "operator/app/manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "controller/http_server.h"
#include "election/timings.h"
#include "support/fake_lock.h"
#include "support/fake_transport.h"
#include "support/http_get.h"

namespace singleton::op {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::FakeLock;
using testing::FakeRecordStore;
using testing::FakeTransport;
using testing::httpGet;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(LeaderGateTest, ClosedUntilOpenedThenFollowsLeadership) {
  LeaderGate gate;
  EXPECT_FALSE(gate.mayWrite());
  EXPECT_EQ(gate.term(), fencing::FencingToken(0));
  gate.open(fencing::FencingToken(5));
  EXPECT_TRUE(gate.mayWrite());
  EXPECT_EQ(gate.term(), fencing::FencingToken(5));
  gate.close();
  EXPECT_FALSE(gate.mayWrite());
  EXPECT_EQ(gate.term(), fencing::FencingToken(5)) << "the last term stays readable";
  gate.open(fencing::FencingToken(6));
  EXPECT_TRUE(gate.mayWrite());
  EXPECT_EQ(gate.term(), fencing::FencingToken(6));
}

TEST(LeaderGateTest, ShutdownClosesForGoodEvenWhileLeading) {
  LeaderGate gate;
  gate.open(fencing::FencingToken(1));
  gate.shutdown();
  EXPECT_FALSE(gate.mayWrite()) << "the elector is stopping: in-flight reconciles must not write";
  gate.open(fencing::FencingToken(2));
  EXPECT_FALSE(gate.mayWrite());
}

TEST(LeaderGateTest, IsAWriteGate) {
  LeaderGate gate;
  const controller::WriteGate& as_interface = gate;
  gate.open(fencing::FencingToken(3));
  EXPECT_TRUE(as_interface.mayWrite());
  EXPECT_EQ(as_interface.term(), fencing::FencingToken(3));
}

// A Manager on a fake transport (lists answer empty, or with the Leases a test puts there; watches hang quietly;
// Events are accepted), a fake lock and a fake clock.
class ManagerTest : public ::testing::Test {
 protected:
  ManagerTest() {
    transport_->setHandler([this](const kube::HttpRequest& request) -> util::Result<kube::HttpResponse> {
      if (request.method == "POST") return kube::HttpResponse{201, request.body, {}};
      Json list = {{"kind", "List"}, {"metadata", {{"resourceVersion", "10"}}}, {"items", Json::array()}};
      if (request.path.find("/leases") != std::string::npos) {
        std::lock_guard guard(mutex_);
        list["items"] = workload_leases_;
      }
      if (request.path.find("/pods") != std::string::npos) {
        std::lock_guard guard(mutex_);
        list["items"] = workload_pods_;
      }
      return kube::HttpResponse{200, list.dump(), {}};
    });
  }

  // A workload Lease in the cache, recording operator term `term`.
  void addWorkloadLease(const std::string& name, long long term) {
    std::lock_guard guard(mutex_);
    workload_leases_.push_back({{"apiVersion", "coordination.k8s.io/v1"},
                                {"kind", "Lease"},
                                {"metadata",
                                 {{"name", name},
                                  {"namespace", "apps"},
                                  {"resourceVersion", "9"},
                                  {"labels", {{"singleton.dev/workload", name}}},
                                  {"annotations", {{"singleton.dev/operator-term", std::to_string(term)}}}}},
                                {"spec", {{"holderIdentity", name + "-0"}, {"leaseTransitions", 3}}}});
  }

  // A workload's pod in the cache, stamped by operator term `term` (the label fence).
  void addStampedPod(const std::string& name, long long term) {
    std::lock_guard guard(mutex_);
    workload_pods_.push_back({{"apiVersion", "v1"},
                              {"kind", "Pod"},
                              {"metadata",
                               {{"name", name},
                                {"namespace", "apps"},
                                {"resourceVersion", "9"},
                                {"labels", {{"singleton.dev/workload", "web"}}},
                                {"annotations", {{"singleton.dev/operator-term", std::to_string(term)}}}}}});
  }

  std::vector<kube::HttpRequest> eventPosts() const {
    std::vector<kube::HttpRequest> posts;
    for (const auto& r : transport_->requests()) {
      if (r.method == "POST" && r.path.find("/events") != std::string::npos) posts.push_back(r);
    }
    return posts;
  }

  // Moves the fake clock in steps until `predicate` holds (each step after a real pause, so the threads that wait
  // on the clock have gone back to sleep).
  template <typename Predicate>
  bool advanceUntil(Predicate predicate, util::Millis step = std::chrono::milliseconds(500), int steps = 200) {
    for (int i = 0; i < steps; ++i) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      clock_.advance(step);
    }
    return predicate();
  }

  std::string masterStatus(Manager& m) {
    const std::string metrics = m.metrics().render();
    const std::string key = "leader_election_master_status{name=\"singleton-operator\"} ";
    const auto at = metrics.find(key);
    return at == std::string::npos ? "" : metrics.substr(at + key.size(), 1);
  }

  using Json = nlohmann::json;
  Options options(const std::string& identity = "op-a") {
    Options o;
    o.identity = identity;
    o.leader_election_namespace = "ops";
    o.metrics_bind_address = "127.0.0.1:0";
    o.health_probe_bind_address = "127.0.0.1:0";
    return o;
  }

  std::unique_ptr<Manager> make(const Options& o) {
    lock_ = std::make_shared<FakeLock>(store_, o.identity);
    auto m = Manager::create(o, transport_, ManagerDeps{lock_, &clock_});
    EXPECT_TRUE(m.ok()) << m.error().message;
    return std::move(m).value();
  }

  void start(Manager& m) {
    runner_ = std::jthread([this, &m](std::stop_token stop) {
      auto r = m.run(stop);
      if (r.ok()) {
        outcome_ = static_cast<int>(*r);
      } else {
        error_ = r.error().message;
        outcome_ = kFailed;
      }
    });
  }

  void stop() {
    runner_.request_stop();
    runner_.join();
  }

  static constexpr int kFailed = 99;
  std::shared_ptr<FakeTransport> transport_ = std::make_shared<FakeTransport>();
  std::shared_ptr<FakeRecordStore> store_ = std::make_shared<FakeRecordStore>();
  std::shared_ptr<FakeLock> lock_;
  util::FakeClock clock_;
  std::atomic<int> outcome_{-1};
  std::string error_;
  std::jthread runner_;
  std::mutex mutex_;
  Json workload_leases_ = Json::array();
  Json workload_pods_ = Json::array();
};

TEST_F(ManagerTest, CreateRejectsInvalidTimings) {
  Options o = options();
  o.renew_deadline = o.lease_duration;
  auto m = Manager::create(o, transport_, ManagerDeps{std::make_shared<FakeLock>(store_, "a"), &clock_});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_FALSE(Manager::create(options(), nullptr).ok());
}

TEST_F(ManagerTest, LeadsServesEndpointsAndReleasesOnStop) {
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  ASSERT_TRUE(store_->read().has_value());
  EXPECT_EQ(store_->read()->record.holder_identity, "op-a");
  EXPECT_EQ(m->gate().term().value(), store_->read()->record.leader_transitions) << "term = own fencing token";

  ASSERT_GT(m->healthPort(), 0);
  ASSERT_GT(m->metricsPort(), 0);
  EXPECT_NE(m->healthPort(), m->metricsPort());
  auto healthz = httpGet(m->healthPort(), "/healthz");
  EXPECT_EQ(healthz.status, 200);
  EXPECT_EQ(healthz.body, "ok\n");
  const int ready = httpGet(m->healthPort(), "/readyz").status;
  EXPECT_TRUE(ready == 200 || ready == 503) << ready;
  auto metrics = httpGet(m->metricsPort(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_TRUE(contains(metrics.head, "Content-Type: text/plain; version=0.0.4")) << metrics.head;
  EXPECT_TRUE(contains(metrics.body, "# TYPE leader_election_master_status gauge\n")) << metrics.body;
  EXPECT_TRUE(contains(metrics.body, "leader_election_master_status{name=\"singleton-operator\"} 1\n")) << metrics.body;
  EXPECT_EQ(httpGet(m->healthPort(), "/metrics").status, 404) << "metrics only on the metrics address";
  EXPECT_EQ(httpGet(m->metricsPort(), "/healthz").status, 404) << "probes only on the health address";

  const int health_port = m->healthPort();
  stop();
  EXPECT_EQ(outcome_, static_cast<int>(Manager::Outcome::kStopped)) << error_;
  EXPECT_FALSE(m->gate().mayWrite());
  EXPECT_TRUE(contains(m->metrics().render(), "leader_election_master_status{name=\"singleton-operator\"} 0\n"));
  EXPECT_EQ(store_->read()->record.holder_identity, "") << "the Lease is released on a graceful stop";
  EXPECT_EQ(httpGet(health_port, "/healthz").status, 0) << "the endpoints are stopped";
}

TEST_F(ManagerTest, LosingTheLeaseIsNotFatalTheReplicaCampaignsAgainAndLeadsAnotherTerm) {
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_EQ(m->termsStarted(), 1);
  election::LeaderElectionRecord stolen = store_->read()->record;
  stolen.holder_identity = "op-b";
  stolen.leader_transitions += 1;
  stolen.lease_duration_seconds = 15;
  store_->set(stolen);
  ASSERT_TRUE(eventually([&] { return !m->gate().mayWrite() && masterStatus(*m) == "0"; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(outcome_, -1) << "run() goes on: losing the Lease is not an exit";
  EXPECT_EQ(store_->read()->record.holder_identity, "op-b") << "never releases a Lease it no longer holds";
  EXPECT_EQ(httpGet(m->healthPort(), "/healthz").status, 200) << "a follower again, and healthy";

  // op-b never renews: once its lease has expired on our clock, we take the Lease back, as a new term.
  ASSERT_TRUE(advanceUntil([&] { return m->gate().mayWrite(); }));
  EXPECT_EQ(m->termsStarted(), 2);
  EXPECT_EQ(store_->read()->record.holder_identity, "op-a");
  EXPECT_EQ(m->gate().term().value(), stolen.leader_transitions + 1) << "a new term, a higher token";
  EXPECT_EQ(masterStatus(*m), "1");
  stop();
  EXPECT_EQ(outcome_, static_cast<int>(Manager::Outcome::kStopped)) << error_;
}

TEST_F(ManagerTest, TheGateShutsAtTheElectorsDeadlineBeforeTheElectorThreadNotices) {
  Options o = options();  // 15 s / 10 s / 2 s
  auto m = make(o);
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  // Every renewal from now on hangs (a frozen apiserver; or this process stopped): the last successful renewal is
  // the acquisition, at the fake clock's current time.
  lock_->hang(true);
  clock_.advance(o.renew_deadline - 1ms);
  ASSERT_TRUE(eventually([&] { return lock_->stuck() == 1; })) << "the elector thread is blocked in a renewal";
  EXPECT_TRUE(m->gate().mayWrite()) << "1 ms before the renew deadline";
  clock_.advance(1ms);
  EXPECT_FALSE(m->gate().mayWrite()) << "shut at the renew deadline, though the elector has not decided yet";
  EXPECT_EQ(lock_->stuck(), 1);
  lock_->hang(false);
  stop();
}

TEST_F(ManagerTest, ATermNotAboveTheOneWorkloadLeasesRecordIsRaisedBeforeTheGateOpens) {
  // The operator's Lease was deleted: a new one starts again at token 0 or 1, while workload Leases record term 7.
  addWorkloadLease("web", 7);
  addWorkloadLease("db", 5);
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_GT(m->gate().term().value(), 7) << "above every recorded term, so self-fencing lets it write";
  EXPECT_EQ(store_->read()->record.leader_transitions, m->gate().term().value()) << "the token is in the Lease";
  ASSERT_TRUE(eventually([&] { return !eventPosts().empty(); }));
  const Json event = Json::parse(eventPosts().front().body);
  EXPECT_EQ(event.value("type", ""), "Warning");
  EXPECT_EQ(event.value("reason", ""), "OperatorTermRaised");
  EXPECT_EQ(event["involvedObject"].value("kind", ""), "Lease");
  EXPECT_EQ(event["involvedObject"].value("name", ""), "singleton-operator");
  stop();
}

TEST_F(ManagerTest, ATermNotAboveAPodsFenceStampIsRaisedBeforeTheGateOpens) {
  // A term stamps pods before its first label change in a workload, with or without a Lease write: a pod may carry
  // a higher term than any workload Lease.
  addWorkloadLease("web", 4);
  addStampedPod("web-0", 11);
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_GT(m->gate().term().value(), 11) << "above the pod's stamp, so the label fence lets it write";
  stop();
}

TEST_F(ManagerTest, AFreshInstallKeepsItsFirstTermWithoutAWarning) {
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_EQ(m->gate().term().value(), store_->read()->record.leader_transitions);
  EXPECT_EQ(store_->read()->record.leader_transitions, 0) << "no workload Lease records a term: nothing to raise";
  EXPECT_TRUE(eventPosts().empty());
  stop();
}

TEST_F(ManagerTest, ATermAboveTheRecordedOnesIsKept) {
  election::LeaderElectionRecord before;
  before.holder_identity = "";
  before.leader_transitions = 9;
  store_->set(before);
  addWorkloadLease("web", 9);
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_EQ(m->gate().term().value(), 10);
  EXPECT_EQ(store_->read()->record.leader_transitions, 10);
  EXPECT_TRUE(eventPosts().empty());
  stop();
}

TEST_F(ManagerTest, AnotherProcessWritingUnderOurIdentityEndsRunWithIdentityConflict) {
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  // A second process with the same identity renews "our" Lease.
  election::LeaderElectionRecord twin = store_->read()->record;
  twin.renew_time = clock_.wallNow() + 3s;
  store_->set(twin);
  ASSERT_TRUE(advanceUntil([&] { return outcome_ != -1; }, 100ms));
  EXPECT_EQ(outcome_, static_cast<int>(Manager::Outcome::kIdentityConflict)) << error_;
  EXPECT_FALSE(m->gate().mayWrite());
  runner_.join();
}

TEST_F(ManagerTest, AFollowerKeepsItsGateClosed) {
  election::LeaderElectionRecord other;
  other.holder_identity = "op-b";
  other.lease_duration_seconds = 15;
  other.leader_transitions = 4;
  store_->set(other);
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return httpGet(m->healthPort(), "/healthz").status == 200; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(m->gate().mayWrite());
  EXPECT_TRUE(contains(m->metrics().render(), "leader_election_master_status{name=\"singleton-operator\"} 0\n"));
  stop();
  EXPECT_EQ(outcome_, static_cast<int>(Manager::Outcome::kStopped));
  EXPECT_EQ(store_->read()->record.holder_identity, "op-b");
}

TEST_F(ManagerTest, HealthzFailsWithTheReasonWhenTheElectorIsWedged) {
  auto m = make(options());
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  // The elector waits one renew interval to renew; advancing before it sleeps would only push that deadline away.
  const util::Millis renew = election::defaultRenewInterval(15s, 10s, 2s);
  ASSERT_TRUE(eventually([&] { return clock_.sleepingUntil(clock_.now() + renew); }));
  lock_->hang(true);  // the next renewal never returns
  clock_.advance(renew);
  ASSERT_TRUE(eventually([&] { return lock_->stuck() == 1; }));
  clock_.advance(10s);
  EXPECT_EQ(httpGet(m->healthPort(), "/healthz").status, 200) << "within lease duration + tolerance (35s)";
  clock_.advance(30s);
  auto wedged = httpGet(m->healthPort(), "/healthz");
  EXPECT_EQ(wedged.status, 500);
  EXPECT_TRUE(contains(wedged.body, "has not renewed")) << wedged.body;
  lock_->hang(false);
  stop();
}

TEST_F(ManagerTest, EndpointsCanBeDisabled) {
  Options o = options();
  o.metrics_bind_address = kDisabledAddress;
  o.health_probe_bind_address = kDisabledAddress;
  auto m = make(o);
  start(*m);
  ASSERT_TRUE(eventually([&] { return m->gate().mayWrite(); }));
  EXPECT_EQ(m->healthPort(), 0);
  EXPECT_EQ(m->metricsPort(), 0);
  stop();
  EXPECT_EQ(outcome_, static_cast<int>(Manager::Outcome::kStopped));
}

TEST_F(ManagerTest, AnAddressInUseFailsRunBeforeCampaigning) {
  controller::HttpServer squatter("squatter");
  ASSERT_TRUE(squatter.start("127.0.0.1:0").ok());
  Options o = options();
  o.metrics_bind_address = "127.0.0.1:" + std::to_string(squatter.port());
  auto m = make(o);
  auto r = m->run(std::stop_token{});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, o.metrics_bind_address)) << r.error().message;
  EXPECT_FALSE(store_->read().has_value()) << "no campaign without endpoints";
}

}  // namespace
}  // namespace singleton::op
