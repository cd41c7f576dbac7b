#include "watch/line_splitter.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace singleton::watch {
namespace {

std::vector<std::string> feedAll(LineSplitter& splitter, const std::vector<std::string>& chunks) {
  std::vector<std::string> lines;
  for (const auto& chunk : chunks) {
    splitter.feed(chunk, [&](std::string_view line) { lines.emplace_back(line); });
  }
  return lines;
}

std::vector<std::string> split(const std::vector<std::string>& chunks) {
  LineSplitter splitter;
  return feedAll(splitter, chunks);
}

const std::string kBody = R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}})"
                          "\n"
                          R"({"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"2"}}})"
                          "\r\n"
                          "\n"
                          R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"3"}}})"
                          "\n"
                          R"({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"4"}}})"
                          "\n";

const std::vector<std::string> kExpected = {
    R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}})",
    R"({"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"2"}}})",
    R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"3"}}})",
    R"({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"4"}}})",
};

TEST(LineSplitterTest, WholeBodyInOneChunk) { EXPECT_EQ(split({kBody}), kExpected); }

// Property: wherever the transport cuts the body in two, the same lines come out.
TEST(LineSplitterTest, EverySplitPointGivesTheSameLines) {
  for (std::size_t i = 0; i <= kBody.size(); ++i) {
    EXPECT_EQ(split({kBody.substr(0, i), kBody.substr(i)}), kExpected) << "split at " << i;
  }
}

// Property: and in three pieces, at every pair of cut points (including empty pieces).
TEST(LineSplitterTest, EveryPairOfSplitPointsGivesTheSameLines) {
  for (std::size_t i = 0; i <= kBody.size(); i += 3) {
    for (std::size_t j = i; j <= kBody.size(); ++j) {
      EXPECT_EQ(split({kBody.substr(0, i), kBody.substr(i, j - i), kBody.substr(j)}), kExpected)
          << "split at " << i << " and " << j;
    }
  }
}

TEST(LineSplitterTest, OneByteAtATime) {
  std::vector<std::string> chunks;
  for (char c : kBody) chunks.emplace_back(1, c);
  EXPECT_EQ(split(chunks), kExpected);
}

TEST(LineSplitterTest, LinesAreDeliveredAsSoonAsTheyEnd) {
  LineSplitter splitter;
  std::vector<std::string> lines;
  auto on_line = [&](std::string_view line) { lines.emplace_back(line); };
  splitter.feed("first\nsec", on_line);
  EXPECT_EQ(lines, std::vector<std::string>({"first"}));
  EXPECT_EQ(splitter.pending(), 3u);
  splitter.feed("ond\n", on_line);
  EXPECT_EQ(lines, std::vector<std::string>({"first", "second"}));
  EXPECT_EQ(splitter.pending(), 0u);
}

TEST(LineSplitterTest, CrlfIsStrippedAlsoWhenSplitBetweenCrAndLf) {
  EXPECT_EQ(split({"a\r\nb\r\n"}), std::vector<std::string>({"a", "b"}));
  EXPECT_EQ(split({"a\r", "\nb\r", "\n"}), std::vector<std::string>({"a", "b"}));
}

TEST(LineSplitterTest, EmptyLinesAreSkipped) {
  EXPECT_EQ(split({"\n\n", "a\n", "\r\n", "\n", "b\n\n"}), std::vector<std::string>({"a", "b"}));
  EXPECT_TRUE(split({"\n", "\r\n"}).empty());
}

TEST(LineSplitterTest, UnterminatedTailIsHeldBackAndResetDropsIt) {
  LineSplitter splitter;
  EXPECT_EQ(feedAll(splitter, {"a\nbc"}), std::vector<std::string>({"a"}));
  EXPECT_EQ(splitter.pending(), 2u);
  splitter.reset();
  EXPECT_EQ(splitter.pending(), 0u);
  EXPECT_EQ(feedAll(splitter, {"d\n"}), std::vector<std::string>({"d"}));
}

TEST(LineSplitterTest, LongLineAcrossManyChunks) {
  const std::string line(100'000, 'x');
  std::vector<std::string> chunks;
  for (std::size_t i = 0; i < line.size(); i += 4096) chunks.push_back(line.substr(i, 4096));
  chunks.push_back("\nnext\n");
  EXPECT_EQ(split(chunks), std::vector<std::string>({line, "next"}));
}

}  // namespace
}  // namespace singleton::watch
