// An independent witness of the operator's one promise: at no instant do two pods of one SingletonWorkload carry
// the label singleton.dev/role=leader, and every new leader's fencing token is higher than any token before it.
//
// The auditor watches the pods of one namespace that carry the label singleton.dev/workload (a watch::Reflector on
// its own thread and its own connection, nothing shared with the operator) and replays every event in the order the
// apiserver serialized them (resourceVersion order). After each event it checks, per workload:
//   - the set of pods labelled leader has at most one member (a terminating pod still counts: it carries the label);
//   - a pod labelled leader carries the annotation singleton.dev/fencing-token with a decimal token;
//   - a pod not labelled leader carries no fencing token;
//   - when a pod (a UID) becomes leader, or its token changes, the token is higher than every token seen before in
//     the workload object (so never reused by a different pod and never decreasing). The object is its UID, from the
//     pods' controller ownerReference: a workload deleted and created again under the same name is a new object
//     whose tokens may start again (docs/api.md), while a hand-deleted Lease changes nothing.
// Each failed check is recorded as a violation (a readable line); tests assert there are none.
//
//   LeaderAuditor auditor(harness.transport(), "my-namespace");
//   ASSERT_TRUE(auditor.start());
//   ... drive the operator ...
//   EXPECT_THAT(auditor.violations(), ::testing::IsEmpty());
//   auto leaders = auditor.leaderships("web");  // every leader in order, with its token and arrival time
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kube/client.h"
#include "watch/reflector.h"

namespace singleton::testing {

class LeaderAuditor final : public watch::Handler {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  // One pod as the auditor last saw it.
  struct PodView {
    std::string name;
    std::string uid;
    std::string owner_uid;  // the controller ownerReference's UID: the SingletonWorkload object
    std::string resource_version;
    std::string node;
    std::string role;                  // the singleton.dev/role label, "" when absent
    std::optional<std::string> token;  // the singleton.dev/fencing-token annotation
    std::string template_hash;         // the singleton.dev/template-hash annotation
    std::string phase;
    bool ready = false;        // condition Ready=True
    bool terminating = false;  // metadata.deletionTimestamp set
    bool leader() const { return role == "leader"; }
  };

  // One event as it arrived (a relist contributes one synthetic event per changed or vanished pod).
  struct PodEvent {
    SteadyTime at;
    std::string type;  // ADDED, MODIFIED, DELETED
    std::string workload;
    PodView pod;
  };

  // A pod (UID) labelled leader with a token: one entry per change of leader or of token.
  struct Leadership {
    std::string pod;
    std::string uid;
    std::int64_t token = -1;
    SteadyTime at;  // arrival of the event that first showed it
    std::string resource_version;
  };

  struct WorkloadState {
    std::map<std::string, PodView> pods;  // by name
    std::set<std::string> leaders;        // pods currently labelled leader
    std::vector<Leadership> leaderships;
    std::int64_t max_token = -1;                             // over every object of this name
    std::map<std::string, std::int64_t> max_token_by_owner;  // per workload object (UID)
    std::set<std::string> reported_leaders;  // the last set of simultaneous leaders reported as a violation
  };

  // Reads everything the tests and the bench need under one lock.
  struct State {
    std::map<std::string, WorkloadState> workloads;
    std::vector<PodEvent> events;  // every pod event, in order (only when recording events)
    std::vector<std::string> violations;
    std::size_t event_count = 0;
  };

  struct Options {
    std::string ns;             // "" = all namespaces
    bool record_events = true;  // keep every PodEvent (tests); the bench turns it off and uses `listener`
    // Called on the watch thread under the auditor's lock after each event has been applied; must be quick.
    std::function<void(const PodEvent& event, const State& state)> listener;
  };

  // The auditor opens its own connection from `transport` (share one only if it is not the operator's).
  LeaderAuditor(std::shared_ptr<kube::Transport> transport, Options options);
  LeaderAuditor(std::shared_ptr<kube::Transport> transport, const std::string& ns);
  ~LeaderAuditor() override;  // stop()
  LeaderAuditor(const LeaderAuditor&) = delete;
  LeaderAuditor& operator=(const LeaderAuditor&) = delete;

  // Starts watching; true once the first list has been applied (false after `timeout`).
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void stop();

  std::vector<std::string> violations() const;
  std::vector<Leadership> leaderships(const std::string& workload) const;
  std::set<std::string> currentLeaders(const std::string& workload) const;
  // The single pod labelled leader, if exactly one is.
  std::optional<PodView> currentLeader(const std::string& workload) const;
  std::optional<PodView> pod(const std::string& workload, const std::string& name) const;
  std::vector<PodEvent> events(const std::string& workload = "") const;
  std::size_t eventCount() const;

  // Waits until `check` holds on the current state (evaluated after every event). False on timeout.
  bool waitUntil(const std::function<bool(const State&)>& check, std::chrono::milliseconds timeout) const;
  // Waits for the leadership after the first `after` ones of `workload` (i.e. leaderships(workload)[after]).
  std::optional<Leadership> waitForLeadership(const std::string& workload, std::size_t after,
                                              std::chrono::milliseconds timeout) const;

  // The workload's history (leaderships, violations, last pod views) for failure messages.
  std::string describe(const std::string& workload) const;

  // watch::Handler, called on the watch thread.
  void onReplace(std::vector<nlohmann::json> objects, const std::string& resource_version) override;
  void onEvent(const watch::Event& event) override;

 private:
  // Applies one pod change to the workload's state and runs the checks. Lock held.
  void apply(const std::string& type, const std::string& workload, const PodView& pod, bool deleted, SteadyTime at);
  void check(const std::string& workload, WorkloadState& w, const PodView* changed, SteadyTime at);
  void violation(const std::string& workload, const std::string& what);

  Options options_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<watch::Reflector> reflector_;
  std::jthread thread_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  State state_;
  bool synced_ = false;
};

// Extracts the auditor's view of a pod object.
LeaderAuditor::PodView podView(const nlohmann::json& pod);

}  // namespace singleton::testing
