// The agent's decisions (docs/handoff.md): when COMMAND may start, when it must stop, when to acknowledge a hand-off.
//
// Threads (run()): a reflector watches the Lease and reports it through leaseHandler(); a confirmer sends the
// leader's confirmation GETs (and a candidate's first one) with confirmOnce(); the calling thread owns COMMAND and
// calls decide() whenever one of those reports, a signal arrives, or wakeAt() is reached. Every deadline is on the
// injected monotonic clock. Unit tests call leaseHandler(), confirmOnce() and decide() themselves, one step at a time,
// with a fake clock, a fake transport and a fake Command (tests/unit/agent/agent_test.cc).
//
// The safety rules decide() keeps:
//   - COMMAND starts only on a GET that was sent after the latest change the watch reported and that shows this pod
//     may be active with the token the watch shows, within renew-deadline of its send time;
//   - while leading, COMMAND stops at the send time of the last GET that confirmed the leadership + renew-deadline,
//     or as soon as the watch or a GET shows the Lease no longer lets this pod lead with its token;
//   - an acknowledgement is a CAS on the latest Lease version the watch showed, sent only once COMMAND has stopped;
//   - after a signal, COMMAND is stopped before anything else and never started again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>

#include "cli/singleton-agent/command.h"
#include "cli/singleton-agent/options.h"
#include "cli/singleton-agent/role_board.h"
#include "election/handoff.h"
#include "kube/client.h"
#include "util/backoff.h"
#include "util/clock.h"
#include "watch/reflector.h"

namespace singleton::agent {

class Agent {
 public:
  // `command` null: sidecar mode (the role is published only). `printer` and `client` must outlive the agent.
  Agent(cli::AgentOptions options, kube::Client& client, const util::Clock& clock, std::unique_ptr<Command> command,
        EventPrinter& printer);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Watches, confirms and decides until the agent must leave or `stop` is requested; COMMAND is stopped before it
  // returns. The exit status: COMMAND's when it exited by itself, 2 for timings the Lease does not allow, 127 when
  // COMMAND cannot be started, 0 after a signal, 1 otherwise.
  int run(std::stop_token stop);
  // SIGTERM/SIGINT (any thread): the first one stops COMMAND and lets the agent acknowledge the move away from this
  // pod for a little while; a second one leaves at once.
  void signal();

  // For the HTTP endpoints (any thread).
  nlohmann::json role() const { return board_.json(); }
  bool ready() const { return board_.ready(); }

  // The steps run() is made of, public for the unit tests.
  watch::Handler& leaseHandler();
  // One confirmation GET, reported to decide(). Returns whether the apiserver answered.
  bool confirmOnce();
  // One decision from the latest reports. An exit status when the agent must leave.
  std::optional<int> decide();
  // When decide() must run at the latest, without any new report.
  util::MonoTime wakeAt() const;
  // Whether the confirmer should send GETs periodically, and whether one is wanted at once.
  bool wantsConfirmations() const;
  bool wantsConfirmationNow() const;
  // Stops COMMAND if it runs (what run() does last).
  void leave(const char* reason) { stopLeading(reason); }
  bool leading() const { return leading_; }

 private:
  struct Get {
    util::MonoTime sent{};
    std::uint64_t after_watch_seq = 0;  // the watch changes reported before it was sent
    bool ok = false;                    // an answer: the Lease, or that it is gone
    bool not_found = false;
    election::HandoffView view;
    std::string error;
  };
  class LeaseHandler;

  void publishWatched(std::optional<nlohmann::json> lease);
  void confirmLoop(std::stop_token stop);
  void stopLeading(const char* reason);
  std::optional<int> checkTimings(const election::HandoffView& view);
  bool startLeading(long long token);
  bool acknowledge(const election::HandoffView& view, util::MonoTime now);  // whether the CAS succeeded

  const cli::AgentOptions options_;
  const std::string ns_;
  const std::string lease_name_;
  kube::Client& client_;
  const util::Clock& clock_;
  std::unique_ptr<Command> command_;
  EventPrinter& printer_;
  RoleBoard board_;
  std::unique_ptr<LeaseHandler> handler_;
  std::stop_source leave_now_;  // the second signal

  // Reports, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable_any cv_;
  std::optional<nlohmann::json> watched_;  // the Lease as the watch last showed it (nullopt: absent)
  bool watch_synced_ = false;
  std::uint64_t watch_seq_ = 0;
  std::optional<Get> last_get_;
  std::uint64_t get_seq_ = 0;
  std::optional<std::uint64_t> get_in_flight_after_;  // a GET being sent, and the watch changes reported before it
  bool want_confirm_ = false;
  bool confirm_now_ = false;
  int signals_ = 0;

  // The decisions' own state: decide() and its thread only.
  bool leading_ = false;
  long long token_ = 0;
  util::MonoTime confirmed_sent_{};  // send time of the last GET that confirmed this leadership
  bool timings_checked_ = false;
  util::Millis grace_;
  util::Millis kill_wait_{0};
  std::uint64_t seen_watch_ = 0;
  std::uint64_t seen_get_ = 0;
  util::MonoTime next_ack_{};
  bool warned_no_duration_ = false;
  bool draining_ = false;  // signalled: COMMAND stopped, waiting to acknowledge the move away from this pod
  util::MonoTime drain_until_{};
  util::Backoff ack_backoff_;
};

}  // namespace singleton::agent
