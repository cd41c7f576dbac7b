// The fenced-register checker accepts what the model allows and catches what it does not.
#include "support/fenced_register.h"

#include <gtest/gtest.h>

namespace singleton::testing::fenced {
namespace {

Operation write(const std::string& id, long long token, const std::string& value, std::int64_t invoke,
                std::optional<std::int64_t> complete, Operation::Result result) {
  Operation op;
  op.id = id;
  op.is_write = true;
  op.token = token;
  op.value = value;
  op.invoke_ns = invoke;
  if (complete) op.complete_ns = *complete;
  op.result = complete ? result : Operation::Result::kUnknown;
  return op;
}

Operation read(const std::string& id, const std::string& value, std::int64_t invoke, std::int64_t complete) {
  Operation op;
  op.id = id;
  op.value = value;
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.result = Operation::Result::kOk;
  return op;
}

constexpr auto kOk = Operation::Result::kOk;
constexpr auto kRefused = Operation::Result::kRefused;

TEST(FencedRegisterTest, SequentialFencedHistoryIsLinearizable) {
  const std::vector<Operation> ops = {
      write("a1", 1, "a/1", 0, 10, kOk),       read("r1", "a/1", 11, 20), write("b1", 2, "b/1", 21, 30, kOk),
      write("a2", 1, "a/2", 31, 40, kRefused), read("r2", "b/1", 41, 50),
  };
  const auto result = checkLinearizable(ops);
  EXPECT_TRUE(result.linearizable) << result.first_stuck;
  EXPECT_EQ(acceptedStaleWrites(ops), 0u);
  EXPECT_EQ(refusedWrites(ops), 1u);
}

TEST(FencedRegisterTest, AStaleWriteAcceptedAfterAHigherOneCompletedIsCaught) {
  // What an unfenced store does: the old leader's write lands after the new leader's.
  const std::vector<Operation> ops = {
      write("b1", 2, "b/1", 0, 10, kOk),
      write("a2", 1, "a/2", 20, 30, kOk),
  };
  EXPECT_FALSE(checkLinearizable(ops).linearizable);
  EXPECT_EQ(acceptedStaleWrites(ops), 1u);
}

TEST(FencedRegisterTest, OverlappingWritesMayTakeEitherOrder) {
  // a (token 1) and b (token 2) overlap: a first, then b, makes both succeed.
  const std::vector<Operation> ops = {
      write("a", 1, "a", 0, 20, kOk),
      write("b", 2, "b", 5, 15, kOk),
      read("r", "b", 25, 30),
  };
  EXPECT_TRUE(checkLinearizable(ops).linearizable);
}

TEST(FencedRegisterTest, AReadOfAValueNeverWrittenIsCaught) {
  const std::vector<Operation> ops = {
      write("a", 1, "a", 0, 10, kOk),
      read("r", "ghost", 20, 30),
  };
  const auto result = checkLinearizable(ops);
  EXPECT_FALSE(result.linearizable);
}

TEST(FencedRegisterTest, AStaleReadAfterANewerWriteCompletedIsCaught) {
  const std::vector<Operation> ops = {
      write("a", 1, "a", 0, 10, kOk),
      write("b", 2, "b", 20, 30, kOk),
      read("r", "a", 40, 50),
  };
  EXPECT_FALSE(checkLinearizable(ops).linearizable);
}

TEST(FencedRegisterTest, AWriteWithALostAnswerMayHaveLandedLaterOrNever) {
  // The client of "a" died after sending; a later read sees its value, another history never does.
  const std::vector<Operation> landed = {
      write("a", 3, "a", 0, std::nullopt, kOk),
      read("r", "a", 50, 60),
  };
  EXPECT_TRUE(checkLinearizable(landed).linearizable);
  const std::vector<Operation> lost = {
      write("b", 2, "b", 0, 5, kOk),
      write("a", 3, "a", 10, std::nullopt, kOk),
      read("r", "b", 50, 60),
  };
  EXPECT_TRUE(checkLinearizable(lost).linearizable);
}

TEST(FencedRegisterTest, ARefusalThatTheModelWouldAcceptIsCaught) {
  const std::vector<Operation> ops = {
      write("a", 1, "a", 0, 10, kOk),
      write("b", 2, "b", 20, 30, kRefused),
  };
  EXPECT_FALSE(checkLinearizable(ops).linearizable);
}

TEST(FencedRegisterTest, ParsesInvocationsAndCompletionsFromSeveralClients) {
  const std::vector<std::string> lines = {
      R"({"id":"a-1","op":"write","token":1,"value":"a/1","invoke_ns":100})",
      R"({"id":"b-1","op":"read","invoke_ns":150})",
      R"({"id":"a-1","result":"ok","complete_ns":200})",
      R"({"id":"b-1","result":"ok","value":"a/1","complete_ns":250})",
      R"({"id":"a-2","op":"write","token":1,"value":"a/2","invoke_ns":300})",
      "not json",
  };
  const auto ops = parseHistory(lines);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0].id, "a-1");
  EXPECT_EQ(ops[0].result, Operation::Result::kOk);
  EXPECT_EQ(ops[1].value, "a/1");
  EXPECT_EQ(ops[2].result, Operation::Result::kUnknown);
  EXPECT_TRUE(checkLinearizable(ops).linearizable);
}

TEST(FencedRegisterTest, ALongLowConcurrencyHistoryChecksQuickly) {
  std::vector<Operation> ops;
  std::int64_t t = 0;
  for (int i = 0; i < 3000; ++i) {
    const long long token = i / 1000;
    ops.push_back(write("w" + std::to_string(i), token, "v" + std::to_string(i), t, t + 8, kOk));
    ops.push_back(read("r" + std::to_string(i), "v" + std::to_string(i), t + 9, t + 12));
    // a stale writer, overlapping, refused
    if (token > 0) ops.push_back(write("s" + std::to_string(i), token - 1, "s", t + 1, t + 7, kRefused));
    t += 20;
  }
  EXPECT_TRUE(checkLinearizable(ops).linearizable);
}

}  // namespace
}  // namespace singleton::testing::fenced
