#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "kube/config.h"
#include "tests/unit/kube/test_files.h"
#include "util/clock.h"

namespace singleton::kube {
namespace {

using testing::TempDir;

// Rewrites a file keeping its size and modification time, so only max_age can reveal the change.
void rewriteUnnoticeably(const std::string& path, const std::string& content) {
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  std::ofstream(path, std::ios::trunc) << content;
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

TEST(StaticTokenSource, ReturnsItsToken) { EXPECT_EQ(StaticTokenSource("t").token().value(), "t"); }

TEST(FileTokenSource, ReadsAndTrims) {
  TempDir dir;
  FileTokenSource source(dir.write("token", "  abc\r\n"));
  EXPECT_EQ(source.token().value(), "abc");
}

TEST(FileTokenSource, RereadsWhenSizeOrTimeChanges) {
  TempDir dir;
  util::FakeClock clock;
  const std::string path = dir.write("token", "first");
  FileTokenSource source(path, clock, std::chrono::minutes(1));
  EXPECT_EQ(source.token().value(), "first");

  dir.write("token", "second-token");  // a different size
  EXPECT_EQ(source.token().value(), "second-token");

  // Same size, newer modification time.
  std::ofstream(path, std::ios::trunc) << "third--token";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  times[1].tv_sec += 5;
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  EXPECT_EQ(source.token().value(), "third--token");
}

TEST(FileTokenSource, RereadsAfterMaxAgeEvenWhenTheFileLooksTheSame) {
  TempDir dir;
  util::FakeClock clock;
  const std::string path = dir.write("token", "aaaa");
  FileTokenSource source(path, clock, std::chrono::minutes(1));
  EXPECT_EQ(source.token().value(), "aaaa");

  rewriteUnnoticeably(path, "bbbb");
  clock.advance(std::chrono::seconds(59));
  EXPECT_EQ(source.token().value(), "aaaa");  // cached: nothing visible changed and it is young
  clock.advance(std::chrono::seconds(1));
  EXPECT_EQ(source.token().value(), "bbbb");
}

TEST(FileTokenSource, KeepsTheLastGoodTokenWhenTheFileVanishes) {
  TempDir dir;
  util::FakeClock clock;
  const std::string path = dir.write("token", "good");
  FileTokenSource source(path, clock, std::chrono::minutes(1));
  EXPECT_EQ(source.token().value(), "good");
  std::filesystem::remove(path);
  EXPECT_EQ(source.token().value(), "good");
  dir.write("token", "");
  clock.advance(std::chrono::minutes(2));
  EXPECT_EQ(source.token().value(), "good");
  dir.write("token", "fresh");
  EXPECT_EQ(source.token().value(), "fresh");
}

TEST(FileTokenSource, ErrorWithoutAnyToken) {
  TempDir dir;
  FileTokenSource source(dir.path() + "/none");
  auto token = source.token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().code, util::ErrorCode::kUnauthorized);
  EXPECT_NE(token.error().message.find(dir.path() + "/none: No such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace singleton::kube
