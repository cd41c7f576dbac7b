// The agent's safety rules (agent.h), attacked one step at a time: the test plays the watch (leaseHandler()), the
// confirmer (confirmOnce()) and the clock, and calls decide() as the agent's main loop would.
#include "cli/singleton-agent/agent.h"

#include <gtest/gtest.h>

#include "agent/agent_fixture.h"

namespace singleton::agent::testing {
namespace {

using util::Millis;

class AgentDecisionTest : public AgentFixture {};

// COMMAND never starts on the watch alone: it waits for a GET, which is asked for at once.
TEST_F(AgentDecisionTest, WatchAloneNeverStartsCommand) {
  putAndWatch(makeLease(kPod, kUid, 1));
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(agent_->leading());
  EXPECT_EQ(command_->starts(), 0);
  EXPECT_TRUE(agent_->wantsConfirmationNow());
  EXPECT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_TRUE(agent_->leading());
  EXPECT_EQ(log_.matching("command start"), std::vector<std::string>{"command start 1"});
  EXPECT_EQ(agent_->role()["role"], "leader");
  EXPECT_EQ(agent_->role()["token"], 1);
}

// A GET sent before the latest change the watch reported confirms nothing, even one that agrees and is recent.
TEST_F(AgentDecisionTest, GetSentBeforeTheLatestWatchChangeDoesNotConfirm) {
  const Json lease = put(makeLease(kPod, kUid, 1));
  ASSERT_TRUE(agent_->confirmOnce());  // e.g. a periodic GET that raced the watch
  clock_.advance(1ms);
  watch(lease);
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0) << "started on a GET sent before the change it was meant to confirm";
  EXPECT_TRUE(agent_->wantsConfirmationNow());

  // Another change arrives while the next GET is on its way: that GET is stale too.
  ASSERT_TRUE(agent_->confirmOnce());
  watch(lease);
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0);
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1);
}

// The GET must agree with the watch: same token, hand-off complete, this pod and UID.
TEST_F(AgentDecisionTest, GetThatDisagreesWithTheWatchDoesNotConfirm) {
  watch(put(makeLease(kPod, kUid, 1)));
  EXPECT_FALSE(agent_->decide());
  put(makeLease(kPod, kUid, 2, "w-1", "uid-1"));  // moved on: token 2, w-1 has not acked
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  put(makeLease(kPod, kUid, 2, "w-1", "uid-1", "2"));  // acked, but the watch still shows token 1
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  put(makeLease(kPod, "uid-other", 1));  // a pod of the same name, another UID
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0);
}

// A confirming GET whose answer arrives renew-deadline after it was sent is too old to start on; another is asked for.
TEST_F(AgentDecisionTest, ConfirmationOlderThanRenewDeadlineDoesNotStart) {
  putAndWatch(makeLease(kPod, kUid, 1));
  EXPECT_FALSE(agent_->decide());
  slowNextGet(10s);
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0);
  EXPECT_TRUE(agent_->wantsConfirmationNow());
}

// An incomplete hand-off to this pod starts nothing until the ack shows in both the watch and a later GET.
TEST_F(AgentDecisionTest, IncompleteHandoffWaitsForTheAck) {
  putAndWatch(makeLease(kPod, kUid, 3, "w-1", "uid-1"));
  EXPECT_FALSE(agent_->decide());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0);
  EXPECT_TRUE(log_.matching("PATCH").empty()) << "not this pod's hand-off to acknowledge";
  putAndWatch(makeLease(kPod, kUid, 3, "w-1", "uid-1", "3"));
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 0);
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(log_.matching("command start"), std::vector<std::string>{"command start 3"});
}

// A leader whose confirmations fail stops COMMAND at the send time of its last successful confirmation +
// renew-deadline: not at its answer's arrival, not at the failures', and never later.
TEST_F(AgentDecisionTest, FailingConfirmationsStopCommandExactlyAtLastSendPlusRenewDeadline) {
  becomeLeader(1);
  clock_.advance(5s);
  const util::MonoTime last_sent = clock_.now();
  slowNextGet(3s);  // its answer arrives 3 s after it was sent: the bound still counts from the send
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  const util::MonoTime bound = last_sent + 10s;
  EXPECT_LE(agent_->wakeAt(), bound);

  failGets(true);
  while (clock_.now() + 1s < bound) {
    clock_.advance(1s);
    EXPECT_FALSE(agent_->confirmOnce());
    EXPECT_FALSE(agent_->decide());
    EXPECT_TRUE(command_->running()) << "stopped before the bound";
    EXPECT_LE(agent_->wakeAt(), bound) << "the main loop would sleep past the bound";
  }
  clock_.advance(std::chrono::duration_cast<Millis>(bound - clock_.now()) - 1ms);
  EXPECT_FALSE(agent_->decide());
  EXPECT_TRUE(command_->running());
  EXPECT_EQ(agent_->wakeAt(), bound);
  clock_.advance(1ms);
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  EXPECT_EQ(command_->stoppedAt(), bound);
  EXPECT_FALSE(agent_->ready());
  EXPECT_EQ(agent_->role()["role"], "standby");
  EXPECT_GE(log_.indexOf("event self_demoted"), log_.indexOf("command stop"));

  // It starts again only on a new confirmation.
  failGets(false);
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1);
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 2);
  EXPECT_TRUE(agent_->ready());
}

// The grace period of the stop is the one the Lease's duration leaves (15 s lease, 10 s renew-deadline: 3 s).
TEST_F(AgentDecisionTest, StopUsesTheGracePeriodTheLeaseLeaves) {
  becomeLeader(1);
  clock_.advance(10s);
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  EXPECT_EQ(command_->grace(), 3s);
}

// A move to another holder, seen by the watch, stops COMMAND before the ack is sent; the ack names the move's token
// and the version the watch showed.
TEST_F(AgentDecisionTest, MoveSeenByTheWatchStopsCommandBeforeTheAck) {
  becomeLeader(1);
  command_->stop_takes = 2s;
  const std::size_t mark = log_.size();
  const Json moved = putAndWatch(makeLease("w-1", "uid-1", 2, kPod, kUid));
  EXPECT_FALSE(agent_->decide());
  const long stop = log_.indexOf("command stop", mark);
  const long patch = log_.indexOf("PATCH", mark);
  ASSERT_GE(stop, 0);
  ASSERT_GE(patch, 0);
  EXPECT_LT(stop, patch);
  ASSERT_EQ(patches().size(), 1u);
  EXPECT_EQ(patches()[0]["metadata"]["resourceVersion"], moved["metadata"]["resourceVersion"]);
  EXPECT_EQ(patches()[0]["metadata"]["annotations"][election::kHandoffAckedAnnotation], "2");
  EXPECT_EQ(patches()[0]["metadata"]["annotations"][election::kHandoffAckedByAnnotation], "agent");
  EXPECT_TRUE(election::parseHandoff(stored()).complete);
  EXPECT_EQ(agent_->role()["role"], "standby");
}

// A move seen first by a confirmation GET stops COMMAND at once; the ack follows when the watch shows the move.
TEST_F(AgentDecisionTest, MoveSeenByAConfirmationStopsCommandBeforeTheAck) {
  becomeLeader(1);
  const std::size_t mark = log_.size();
  const Json moved = put(makeLease("w-1", "uid-1", 2, kPod, kUid));
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  EXPECT_TRUE(log_.matching("PATCH").empty());
  watch(moved);
  EXPECT_FALSE(agent_->decide());
  EXPECT_LT(log_.indexOf("command stop", mark), log_.indexOf("PATCH", mark));
  EXPECT_EQ(patches().size(), 1u);
}

// The Lease deleted or the hand-off to this pod reopened (a newer token for the same holder): COMMAND stops.
TEST_F(AgentDecisionTest, LeaseDeletedOrTokenChangedStopsCommand) {
  becomeLeader(1);
  agent_->leaseHandler().onEvent({watch::EventType::kDeleted, stored()});
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  becomeLeader(5);
  putAndWatch(makeLease(kPod, kUid, 6));  // moved away and back in between: a new token, a new start
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(log_.matching("command start"),
            (std::vector<std::string>{"command start 1", "command start 5", "command start 6"}));
}

// Acks go only to the hand-off the Lease currently records: never to one the Lease has moved past, and only as a CAS
// on the version they were decided from.
TEST_F(AgentDecisionTest, AckIsSentOnlyForTheCurrentToken) {
  becomeLeader(1);
  // The Lease moves twice (w-0 -> w-1 -> w-2) before the watch reports anything; the watch then shows only the
  // second move, which w-1 must acknowledge, not this pod.
  put(makeLease("w-1", "uid-1", 2, kPod, kUid));
  putAndWatch(makeLease("w-2", "uid-2", 3, "w-1", "uid-1"));
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(command_->running());
  EXPECT_TRUE(patches().empty());

  // A late watch event for the first move: the ack it leads to is refused (the Lease is newer) and changes nothing.
  const Json now_stored = stored();
  watch([] {
    Json first = makeLease("w-1", "uid-1", 2, kPod, kUid);
    first["metadata"]["resourceVersion"] = "2";
    return first;
  }());
  EXPECT_FALSE(agent_->decide());
  ASSERT_EQ(patches().size(), 1u);
  EXPECT_EQ(patches()[0]["metadata"]["annotations"][election::kHandoffAckedAnnotation], "2");
  EXPECT_EQ(stored(), now_stored);
  EXPECT_TRUE(log_.matching("event acked_handoff").empty());
  // The watch catches up: nothing more to ack, none retried.
  watch(now_stored);
  clock_.advance(10s);
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(patches().size(), 1u);

  // An ack left over from an earlier token does not count: the move with token 4 away from this pod is acked anew.
  putAndWatch(makeLease(kPod, kUid, 4));
  EXPECT_FALSE(agent_->decide());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  ASSERT_TRUE(command_->running());
  putAndWatch(makeLease("w-1", "uid-1", 5, kPod, kUid, "4"));
  EXPECT_FALSE(agent_->decide());
  ASSERT_EQ(patches().size(), 2u);
  EXPECT_EQ(patches()[1]["metadata"]["annotations"][election::kHandoffAckedAnnotation], "5");
  EXPECT_TRUE(election::parseHandoff(stored()).complete);
}

// A refused ack (the Lease changed since the watch's version) is retried at once when the watch brings a newer
// version, and with backoff until then: a lagging watch does not turn into a stream of patches.
TEST_F(AgentDecisionTest, RefusedAckBacksOffUntilTheWatchBringsANewerVersion) {
  becomeLeader(1);
  const Json moved = put(makeLease("w-1", "uid-1", 2, kPod, kUid));
  Json touched = moved;
  touched["metadata"]["labels"] = {{"touched", "yes"}};
  put(touched);  // the operator (or anyone) wrote again; the watch lags
  watch(moved);
  EXPECT_FALSE(agent_->decide());
  ASSERT_EQ(patches().size(), 1u);
  for (int i = 0; i < 200; ++i) {  // 10 s
    clock_.advance(50ms);
    EXPECT_FALSE(agent_->decide());
  }
  EXPECT_LE(patches().size(), 8u) << "refused acks retried without backoff";
  EXPECT_FALSE(election::parseHandoff(stored()).complete);
  const std::size_t before = patches().size();
  watch(stored());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(patches().size(), before + 1) << "the newer version was not acked at once";
  EXPECT_TRUE(election::parseHandoff(stored()).complete);
  EXPECT_EQ(log_.matching("event acked_handoff").size(), 1u);
}

// A stale watch event (an old version, e.g. from a relist against a lagging cache) that shows this pod as the holder
// cannot start COMMAND, even while the GET that confirmed that old version is younger than renew-deadline.
TEST_F(AgentDecisionTest, StaleWatchEventCannotStartCommand) {
  becomeLeader(1);
  const Json old = stored();
  putAndWatch(makeLease("w-1", "uid-1", 2, kPod, kUid));
  EXPECT_FALSE(agent_->decide());
  ASSERT_FALSE(command_->running());
  ASSERT_EQ(patches().size(), 1u);

  clock_.advance(1s);
  watch(old);
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1) << "a stale event restarted COMMAND on an old confirmation";
  agent_->leaseHandler().onReplace({old}, "1");
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1);
  // The GET it asks for shows the truth.
  EXPECT_TRUE(agent_->wantsConfirmationNow());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1);
}

// SIGTERM: COMMAND stops before anything else; then the agent acknowledges the move away from it and leaves, and
// never starts COMMAND again.
TEST_F(AgentDecisionTest, SignalStopsCommandBeforeAnythingElse) {
  becomeLeader(1);
  const std::size_t mark = log_.size();
  agent_->signal();
  EXPECT_FALSE(agent_->decide());
  const auto after = log_.entries();
  ASSERT_GT(after.size(), mark);
  EXPECT_EQ(after[mark], "command stop");
  EXPECT_FALSE(agent_->wantsConfirmations());

  // The Lease says this pod again (a stale event, or the operator not yet moved): nothing starts.
  watch(stored());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_FALSE(agent_->decide());
  EXPECT_EQ(command_->starts(), 1);

  putAndWatch(makeLease("w-1", "uid-1", 2, kPod, kUid));
  EXPECT_EQ(agent_->decide(), 0);
  EXPECT_LT(log_.indexOf("command stop", mark), log_.indexOf("PATCH", mark));
  EXPECT_EQ(patches().size(), 1u);
}

// Signalled without a move to acknowledge: leaves after min(renew-deadline, 5 s).
TEST_F(AgentDecisionTest, SignalWithoutAMoveLeavesAfterTheDrainWait) {
  becomeLeader(1);
  agent_->signal();
  EXPECT_FALSE(agent_->decide());
  clock_.advance(4999ms);
  EXPECT_FALSE(agent_->decide());
  clock_.advance(1ms);
  EXPECT_EQ(agent_->decide(), 0);
  EXPECT_TRUE(patches().empty());
}

// COMMAND that exits by itself ends the agent with its status, without an ack (nothing was moved).
TEST_F(AgentDecisionTest, CommandExitEndsTheAgent) {
  becomeLeader(1);
  command_->exitBy(7);
  EXPECT_EQ(agent_->decide(), 7);
  EXPECT_EQ(agent_->role()["role"], "standby");
  EXPECT_TRUE(patches().empty());
}

// A Lease whose duration cannot hold renew-deadline + the stop bound + the drift margin: exit 2, nothing started.
TEST_F(AgentDecisionTest, LeaseTooShortExits2) {
  Json lease = makeLease(kPod, kUid, 1);
  lease["spec"]["leaseDurationSeconds"] = 10;
  putAndWatch(lease);
  EXPECT_EQ(agent_->decide(), 2);
  EXPECT_EQ(command_->starts(), 0);
}

// COMMAND that cannot be started: exit 127.
TEST_F(AgentDecisionTest, CommandThatCannotStartExits127) {
  command_->fail_start = true;
  putAndWatch(makeLease(kPod, kUid, 1));
  EXPECT_FALSE(agent_->decide());
  ASSERT_TRUE(agent_->confirmOnce());
  EXPECT_EQ(agent_->decide(), 127);
  EXPECT_FALSE(agent_->leading());
}

// Standbys want no confirmations; a leader wants them periodically.
TEST_F(AgentDecisionTest, OnlyTheLeaderWantsConfirmations) {
  putAndWatch(makeLease("w-1", "uid-1", 1));
  EXPECT_FALSE(agent_->decide());
  EXPECT_FALSE(agent_->wantsConfirmations());
  EXPECT_FALSE(agent_->wantsConfirmationNow());
  becomeLeader(2);
  EXPECT_TRUE(agent_->wantsConfirmations());
  EXPECT_FALSE(agent_->wantsConfirmationNow());
}

}  // namespace
}  // namespace singleton::agent::testing

namespace singleton::agent::testing {
namespace {

// Sidecar mode (no COMMAND): the same decisions, published only; the move away is acknowledged at once.
TEST_F(AgentDecisionTest, SidecarPublishesTheRoleAndAcks) {
  cli::AgentOptions o = options();
  o.command.clear();
  Agent sidecar(o, client_, clock_, nullptr, printer_);
  auto watchSidecar = [&](const Json& lease) { sidecar.leaseHandler().onEvent({watch::EventType::kModified, lease}); };
  watchSidecar(put(makeLease(kPod, kUid, 1)));
  EXPECT_FALSE(sidecar.decide());
  EXPECT_EQ(sidecar.role()["role"], "standby");
  ASSERT_TRUE(sidecar.confirmOnce());
  EXPECT_FALSE(sidecar.decide());
  EXPECT_EQ(sidecar.role()["role"], "leader");
  EXPECT_EQ(sidecar.role()["token"], 1);
  watchSidecar(put(makeLease("w-1", "uid-1", 2, kPod, kUid)));
  EXPECT_FALSE(sidecar.decide());
  EXPECT_EQ(sidecar.role()["role"], "standby");
  EXPECT_EQ(patches().size(), 1u);
  EXPECT_EQ(command_->starts(), 0);
}

}  // namespace
}  // namespace singleton::agent::testing
