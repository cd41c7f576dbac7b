// An Agent on a fake clock, a fake apiserver (FakeTransport answering from one Lease, with CAS on resourceVersion)
// and a fake COMMAND, all recording into one ordered log, so a test can check what happened before what.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/singleton-agent/agent.h"
#include "support/fake_transport.h"

namespace singleton::agent::testing {

using Json = nlohmann::json;
using namespace std::chrono_literals;

class Log {
 public:
  void add(std::string entry) {
    std::lock_guard g(mutex_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> entries() const {
    std::lock_guard g(mutex_);
    return entries_;
  }
  std::size_t size() const { return entries().size(); }
  // Entries from `from` on that start with `prefix`.
  std::vector<std::string> matching(const std::string& prefix, std::size_t from = 0) const {
    std::vector<std::string> out;
    auto all = entries();
    for (std::size_t i = from; i < all.size(); ++i) {
      if (all[i].rfind(prefix, 0) == 0) out.push_back(all[i]);
    }
    return out;
  }
  // Index of the first entry from `from` on that starts with `prefix`, or -1.
  long indexOf(const std::string& prefix, std::size_t from = 0) const {
    auto all = entries();
    for (std::size_t i = from; i < all.size(); ++i) {
      if (all[i].rfind(prefix, 0) == 0) return static_cast<long>(i);
    }
    return -1;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> entries_;
};

// Logs "command start <token>" and "command stop"; a stop may take (fake) time.
class FakeCommand final : public Command {
 public:
  FakeCommand(Log& log, util::FakeClock& clock) : log_(log), clock_(clock) {}
  util::Status start(const Env& env) override {
    std::lock_guard g(mutex_);
    std::string token;
    for (const auto& [k, v] : env) {
      if (k == "SINGLETON_FENCING_TOKEN") token = v;
    }
    if (fail_start) return util::makeError(util::ErrorCode::kInvalidArgument, "cannot run");
    log_.add("command start " + token);
    running_ = true;
    ++starts_;
    started_at_ = clock_.now();
    return {};
  }
  bool running() const override {
    std::lock_guard g(mutex_);
    return running_;
  }
  long pid() const override { return running() ? 4242 : -1; }
  std::optional<int> poll() override {
    std::lock_guard g(mutex_);
    if (running_ && exit_status_) {
      running_ = false;
      log_.add("command exited");
      return exit_status_;
    }
    return std::nullopt;
  }
  int stop(util::Millis grace) override {
    std::lock_guard g(mutex_);
    grace_ = grace;
    if (stop_takes > util::Millis(0)) clock_.advance(stop_takes);
    running_ = false;
    stopped_at_ = clock_.now();
    log_.add("command stop");
    return 143;
  }
  void exitBy(int status) {
    std::lock_guard g(mutex_);
    exit_status_ = status;
  }
  int starts() const {
    std::lock_guard g(mutex_);
    return starts_;
  }
  util::MonoTime stoppedAt() const {
    std::lock_guard g(mutex_);
    return stopped_at_;
  }
  util::Millis grace() const {
    std::lock_guard g(mutex_);
    return grace_;
  }

  bool fail_start = false;
  util::Millis stop_takes{0};

 private:
  Log& log_;
  util::FakeClock& clock_;
  mutable std::mutex mutex_;
  bool running_ = false;
  int starts_ = 0;
  std::optional<int> exit_status_;
  util::MonoTime started_at_{};
  util::MonoTime stopped_at_{};
  util::Millis grace_{0};
};

inline constexpr const char* kPod = "w-0";
inline constexpr const char* kUid = "uid-0";

// The workload's Lease as the operator writes it (handoff.h); resourceVersion is set by the fake apiserver.
inline Json makeLease(const std::string& holder, const std::string& uid, long long token, const std::string& from = "",
                      const std::string& from_uid = "", const std::string& acked = "") {
  Json annotations = {{election::kLeaderUidAnnotation, uid}};
  if (!from.empty()) {
    annotations[election::kHandoffFromAnnotation] = from;
    annotations[election::kHandoffFromUidAnnotation] = from_uid;
  }
  if (!acked.empty()) {
    annotations[election::kHandoffAckedAnnotation] = acked;
    annotations[election::kHandoffAckedByAnnotation] = "agent";
  }
  return {
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata", {{"name", "w-leader"}, {"namespace", "ns"}, {"resourceVersion", "0"}, {"annotations", annotations}}},
      {"spec", {{"holderIdentity", holder}, {"leaseTransitions", token}, {"leaseDurationSeconds", 15}}}};
}

class AgentFixture : public ::testing::Test {
 protected:
  AgentFixture() {
    transport_->setHandler([this](const kube::HttpRequest& r) { return serve(r); });
    auto command = std::make_unique<FakeCommand>(log_, clock_);
    command_ = command.get();
    agent_ = std::make_unique<Agent>(options(), client_, clock_, std::move(command), printer_);
  }

  ~AgentFixture() override { agent_.reset(); }

  static cli::AgentOptions options() {
    cli::AgentOptions o;
    o.workload = "w";
    o.pod_name = kPod;
    o.pod_namespace = "ns";
    o.pod_uid = kUid;
    o.renew_deadline = 10s;
    o.renew_interval = 5s;
    o.command = {"/bin/true"};
    return o;
  }

  // The apiserver now holds `lease` (a new resourceVersion); returns it as stored.
  Json put(Json lease) {
    std::lock_guard g(mutex_);
    lease["metadata"]["resourceVersion"] = std::to_string(++rv_);
    stored_ = lease;
    return lease;
  }
  Json stored() {
    std::lock_guard g(mutex_);
    return *stored_;
  }
  // The watch reports `lease` (as stored, or any older version).
  void watch(const Json& lease) { agent_->leaseHandler().onEvent({watch::EventType::kModified, lease}); }
  Json putAndWatch(Json lease) {
    Json stored = put(std::move(lease));
    watch(stored);
    return stored;
  }
  void failGets(bool fail) {
    std::lock_guard g(mutex_);
    fail_gets_ = fail;
  }
  // The next GET's answer arrives `by` after it was sent.
  void slowNextGet(util::Millis by) {
    std::lock_guard g(mutex_);
    slow_get_ = by;
  }

  // This pod leads with `token`: the watch shows it, a GET confirms it, COMMAND starts.
  void becomeLeader(long long token) {
    putAndWatch(makeLease(kPod, kUid, token));
    ASSERT_FALSE(agent_->decide());
    ASSERT_TRUE(agent_->confirmOnce());
    ASSERT_FALSE(agent_->decide());
    ASSERT_TRUE(agent_->leading());
    ASSERT_TRUE(command_->running());
  }

  util::Result<kube::HttpResponse> serve(const kube::HttpRequest& r) {
    std::unique_lock g(mutex_);
    const bool list = r.path.find('?') != std::string::npos;
    log_.add(r.method + (list ? " list" : " lease"));
    if (r.method == "GET" && list) {
      Json items = Json::array();
      if (stored_) items.push_back(*stored_);
      return kube::HttpResponse{
          200,
          Json{{"kind", "LeaseList"}, {"metadata", {{"resourceVersion", std::to_string(rv_)}}}, {"items", items}}
              .dump(),
          {}};
    }
    if (r.method == "GET") {
      if (fail_gets_) return util::makeError(util::ErrorCode::kNetwork, "fake: connection refused");
      if (slow_get_ > util::Millis(0)) {
        clock_.advance(slow_get_);
        slow_get_ = util::Millis(0);
      }
      if (!stored_) return kube::HttpResponse{404, R"({"kind":"Status","reason":"NotFound","code":404})", {}};
      return kube::HttpResponse{200, stored_->dump(), {}};
    }
    if (r.method == "PATCH") {
      const Json patch = Json::parse(r.body);
      patches_.push_back(patch);
      if (!stored_ || patch["metadata"]["resourceVersion"] != (*stored_)["metadata"]["resourceVersion"]) {
        return kube::HttpResponse{409, R"({"kind":"Status","reason":"Conflict","code":409})", {}};
      }
      for (const auto& [k, v] : patch["metadata"]["annotations"].items()) (*stored_)["metadata"]["annotations"][k] = v;
      (*stored_)["metadata"]["resourceVersion"] = std::to_string(++rv_);
      return kube::HttpResponse{200, stored_->dump(), {}};
    }
    return util::makeError(util::ErrorCode::kNetwork, "fake: unexpected " + r.method + " " + r.path);
  }

  std::vector<Json> patches() {
    std::lock_guard g(mutex_);
    return patches_;
  }
  std::vector<std::string> events() {
    std::lock_guard g(mutex_);
    return events_;
  }

  util::FakeClock clock_;
  Log log_;
  std::shared_ptr<singleton::testing::FakeTransport> transport_ = std::make_shared<singleton::testing::FakeTransport>();
  kube::Client client_{transport_, kube::ClientOptions{10s, "test"}};
  EventPrinter printer_{kPod, clock_, [this](const std::string& line) {
                          const std::string event = Json::parse(line)["event"].get<std::string>();
                          log_.add("event " + event);
                          std::lock_guard g(mutex_);
                          events_.push_back(line);
                        }};
  FakeCommand* command_ = nullptr;
  std::unique_ptr<Agent> agent_;

  std::mutex mutex_;
  std::optional<Json> stored_;
  long long rv_ = 0;
  bool fail_gets_ = false;
  util::Millis slow_get_{0};
  std::vector<Json> patches_;
  std::vector<std::string> events_;
};

}  // namespace singleton::agent::testing
