#include "election/handoff.h"

#include <gtest/gtest.h>

namespace singleton::election {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

Json lease(const std::string& holder, const std::string& uid, long long token,
           Json extra_annotations = Json::object()) {
  Json annotations = extra_annotations;
  if (!uid.empty()) annotations[kLeaderUidAnnotation] = uid;
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata",
           {{"name", "w-leader"}, {"namespace", "default"}, {"resourceVersion", "42"}, {"annotations", annotations}}},
          {"spec", {{"holderIdentity", holder}, {"leaseTransitions", token}, {"leaseDurationSeconds", 15}}}};
}

Json handoff(const std::string& from, const std::string& from_uid, const std::string& acked = "") {
  Json a = {{kHandoffFromAnnotation, from}, {kHandoffFromUidAnnotation, from_uid}};
  if (!acked.empty()) {
    a[kHandoffAckedAnnotation] = acked;
    a[kHandoffAckedByAnnotation] = "agent";
  }
  return a;
}

TEST(HandoffTest, ParsesEveryField) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 7, handoff("w-0", "uid-0", "7")));
  EXPECT_EQ(v.holder, "w-1");
  EXPECT_EQ(v.holder_uid, "uid-1");
  EXPECT_EQ(v.token, 7);
  EXPECT_EQ(v.from, "w-0");
  EXPECT_EQ(v.from_uid, "uid-0");
  EXPECT_EQ(v.acked_by, "agent");
  EXPECT_TRUE(v.acked);
  EXPECT_TRUE(v.complete);
  EXPECT_EQ(v.lease_duration_seconds, 15);
  EXPECT_EQ(v.resource_version, "42");
}

TEST(HandoffTest, NoHandoffFromIsComplete) {
  const HandoffView v = parseHandoff(lease("w-0", "uid-0", 1));
  EXPECT_TRUE(v.from.empty());
  EXPECT_FALSE(v.acked);
  EXPECT_TRUE(v.complete);
  EXPECT_TRUE(mayBeActive(v, "w-0", "uid-0"));
  EXPECT_FALSE(mustAck(v, "w-0", "uid-0"));
}

TEST(HandoffTest, EmptyHandoffFromIsComplete) {
  const HandoffView v = parseHandoff(lease("w-0", "uid-0", 1, handoff("", "")));
  EXPECT_TRUE(v.complete);
  EXPECT_TRUE(mayBeActive(v, "w-0", "uid-0"));
}

TEST(HandoffTest, PendingHandoffBlocksSuccessorAndAsksPredecessor) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0")));
  EXPECT_FALSE(v.complete);
  EXPECT_FALSE(mayBeActive(v, "w-1", "uid-1"));
  EXPECT_TRUE(mustAck(v, "w-0", "uid-0"));
  EXPECT_FALSE(mustAck(v, "w-1", "uid-1"));
  EXPECT_FALSE(mayBeActive(v, "w-0", "uid-0"));
}

TEST(HandoffTest, AckOfAnEarlierHandoffDoesNotCount) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0", "7")));
  EXPECT_FALSE(v.acked);
  EXPECT_FALSE(v.complete);
  EXPECT_FALSE(mayBeActive(v, "w-1", "uid-1"));
  EXPECT_TRUE(mustAck(v, "w-0", "uid-0"));
}

TEST(HandoffTest, AckMustBeTheExactDecimalToken) {
  for (const char* bad : {"08", " 8", "8 ", "+8", "8.0", "eight"}) {
    const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0", bad)));
    EXPECT_FALSE(v.complete) << bad;
  }
  Json l = lease("w-1", "uid-1", 8, handoff("w-0", "uid-0"));
  l["metadata"]["annotations"][kHandoffAckedAnnotation] = 8;  // a number, not a string: not an annotation value
  EXPECT_FALSE(parseHandoff(l).complete);
}

TEST(HandoffTest, AckedHandoffLetsSuccessorRunAndPredecessorStopAcking) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0", "8")));
  EXPECT_TRUE(mayBeActive(v, "w-1", "uid-1"));
  EXPECT_FALSE(mustAck(v, "w-0", "uid-0"));
}

TEST(HandoffTest, UidMustMatch) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0")));
  EXPECT_FALSE(mustAck(v, "w-0", "uid-0-new"));  // a new pod under the old name did not run the old work
  const HandoffView done = parseHandoff(lease("w-1", "uid-1", 8));
  EXPECT_FALSE(mayBeActive(done, "w-1", "uid-other"));
  EXPECT_FALSE(mayBeActive(done, "w-2", "uid-1"));
}

TEST(HandoffTest, EmptyUidNeverMatches) {
  const HandoffView no_uid = parseHandoff(lease("w-0", "", 3));
  EXPECT_FALSE(mayBeActive(no_uid, "w-0", ""));
  EXPECT_FALSE(mayBeActive(no_uid, "w-0", "uid-0"));
  const HandoffView no_from_uid = parseHandoff(lease("w-1", "uid-1", 3, handoff("w-0", "")));
  EXPECT_FALSE(mustAck(no_from_uid, "w-0", ""));
  EXPECT_FALSE(mustAck(no_from_uid, "w-0", "uid-0"));
  EXPECT_FALSE(mayBeActive(parseHandoff(lease("w-0", "uid-0", 3)), "", "uid-0"));
}

TEST(HandoffTest, MissingOrMalformedFieldsReadAsAbsent) {
  EXPECT_TRUE(parseHandoff(Json()).holder.empty());
  EXPECT_TRUE(parseHandoff(Json::array()).holder.empty());
  const HandoffView empty = parseHandoff(Json::object());
  EXPECT_EQ(empty.token, 0);
  EXPECT_TRUE(empty.complete);
  EXPECT_FALSE(mayBeActive(empty, "w-0", "uid-0"));
  Json weird = {{"metadata", {{"annotations", "nope"}}}, {"spec", {{"holderIdentity", 5}, {"leaseTransitions", "7"}}}};
  const HandoffView w = parseHandoff(weird);
  EXPECT_TRUE(w.holder.empty());
  EXPECT_EQ(w.token, 0);
  EXPECT_EQ(w.lease_duration_seconds, 0);
  // No leaseTransitions: the token is 0, and an ack of "0" completes the hand-off to it.
  Json zero = lease("w-1", "uid-1", 0, handoff("w-0", "uid-0", "0"));
  zero["spec"].erase("leaseTransitions");
  EXPECT_TRUE(parseHandoff(zero).complete);
}

TEST(HandoffTest, AckMergePatchCarriesVersionAndOnlyTheTwoAnnotations) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0")));
  const Json patch = ackMergePatch(v, AckedBy::kAgent);
  const Json expected = {
      {"metadata",
       {{"resourceVersion", "42"},
        {"annotations", {{"singleton.dev/handoff-acked", "8"}, {"singleton.dev/handoff-acked-by", "agent"}}}}}};
  EXPECT_EQ(patch, expected);
  // Applied to the Lease, it completes the hand-off it was built for.
  Json applied = lease("w-1", "uid-1", 8, handoff("w-0", "uid-0"));
  applied.merge_patch(patch);
  EXPECT_TRUE(parseHandoff(applied).complete);
  EXPECT_TRUE(mayBeActive(parseHandoff(applied), "w-1", "uid-1"));
}

TEST(HandoffTest, AckJsonPatchTestsTheVersion) {
  const HandoffView v = parseHandoff(lease("w-1", "uid-1", 8, handoff("w-0", "uid-0")));
  const Json ops = ackJsonPatch(v, AckedBy::kPodGone);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0], (Json{{"op", "test"}, {"path", "/metadata/resourceVersion"}, {"value", "42"}}));
  EXPECT_EQ(ops[1]["path"], "/metadata/annotations/singleton.dev~1handoff-acked");
  EXPECT_EQ(ops[1]["value"], "8");
  EXPECT_EQ(ops[2]["path"], "/metadata/annotations/singleton.dev~1handoff-acked-by");
  EXPECT_EQ(ops[2]["value"], "pod-gone");
  Json applied = lease("w-1", "uid-1", 8, handoff("w-0", "uid-0")).patch(ops);
  EXPECT_TRUE(parseHandoff(applied).complete);
}

TEST(HandoffTest, AckedByNames) {
  EXPECT_STREQ(ackedByName(AckedBy::kAgent), "agent");
  EXPECT_STREQ(ackedByName(AckedBy::kPodGone), "pod-gone");
  EXPECT_STREQ(ackedByName(AckedBy::kContainersTerminated), "containers-terminated");
  EXPECT_STREQ(ackedByName(AckedBy::kLeaseExpired), "lease-expired");
}

TEST(HandoffTest, AgentTimingBound) {
  EXPECT_TRUE(checkAgentTimings(15s, 10s, 3500ms).ok());  // 10 + 3.5 + 1.5 = 15
  EXPECT_FALSE(checkAgentTimings(15s, 10s, 3501ms).ok());
  EXPECT_TRUE(checkAgentTimings(4s, 2s, 1600ms).ok());
  EXPECT_FALSE(checkAgentTimings(4s, 4s, 0ms).ok());
  EXPECT_FALSE(checkAgentTimings(0ms, 1s, 0ms).ok());
  auto s = checkAgentTimings(15s, 10s, 5s);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("15s"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace singleton::election
