#include "process/child.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

namespace singleton::process {
namespace {

using namespace std::chrono_literals;

// Running, not a zombie waiting for a parent (in a container, PID 1 may never reap).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return predicate();
}

std::string tempPath(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "-" + std::to_string(::getpid());
}

pid_t readPid(const std::string& path) {
  pid_t pid = -1;
  eventually([&] {
    std::ifstream in(path);
    return static_cast<bool>(in >> pid);
  });
  return pid;
}

TEST(ChildTest, RunsWithTheExtraEnvironmentAndReportsTheExitStatus) {
  auto child = Child::spawn({{"sh", "-c", "test \"$GREETING\" = hello && exit 7"}, {{"GREETING", "hello"}}});
  ASSERT_TRUE(child.ok()) << child.error().message;
  EXPECT_EQ(child->waitUntilExitOr(std::stop_token()), 7);
}

TEST(ChildTest, ACommandThatCannotRunIsAnError) {
  auto missing = Child::spawn({{"no-such-command-anywhere"}, {}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot run \"no-such-command-anywhere\""), std::string::npos);
  auto not_executable = Child::spawn({{"/dev/null"}, {}});
  ASSERT_FALSE(not_executable.ok());
  EXPECT_NE(not_executable.error().message.find("Permission denied"), std::string::npos)
      << not_executable.error().message;
}

TEST(ChildTest, TerminateSendsSigkillAfterTheGracePeriodToACommandIgnoringSigterm) {
  auto child = Child::spawn({{"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}, {}});
  ASSERT_TRUE(child.ok());
  std::this_thread::sleep_for(100ms);  // the trap is set
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(child->terminate(300ms), 128 + SIGKILL);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(alive(child->pid()));
}

TEST(ChildTest, WhatTheCommandSpawnedDiesWithIt) {
  const std::string pid_file = tempPath("grandchild");
  std::remove(pid_file.c_str());
  auto child = Child::spawn({{"sh", "-c", "sleep 1000 & echo $! > " + pid_file + "; wait"}, {}});
  ASSERT_TRUE(child.ok());
  const pid_t grandchild = readPid(pid_file);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(alive(grandchild));
  child->terminate(1s);
  EXPECT_TRUE(eventually([&] { return !alive(grandchild); }));
  std::remove(pid_file.c_str());
}

TEST(ChildTest, TheCommandsGroupDiesWhenItsSupervisorIsKilled) {
  const std::string pid_file = tempPath("orphan");
  std::remove(pid_file.c_str());
  // A supervisor of our own (forked, so that we can SIGKILL it): it spawns a command whose background child would be
  // an orphan, then waits to be killed.
  const pid_t supervisor = ::fork();
  if (supervisor == 0) {
    auto child = Child::spawn({{"sh", "-c", "sleep 1000 & echo $! > " + pid_file + "; wait"}, {}});
    if (!child.ok()) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(supervisor, 0);
  const pid_t grandchild = readPid(pid_file);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(alive(grandchild));
  ::kill(supervisor, SIGKILL);
  ::waitpid(supervisor, nullptr, 0);
  EXPECT_TRUE(eventually([&] { return !alive(grandchild); })) << "the orphan outlived its supervisor";
  std::remove(pid_file.c_str());
}

TEST(ChildTest, DestroyingTheHandleKillsTheCommand) {
  pid_t pid = -1;
  {
    auto child = Child::spawn({{"sleep", "1000"}, {}});
    ASSERT_TRUE(child.ok());
    pid = child->pid();
    EXPECT_TRUE(alive(pid));
  }
  EXPECT_FALSE(alive(pid));
}

}  // namespace
}  // namespace singleton::process
