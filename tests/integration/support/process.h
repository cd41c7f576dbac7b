// A child process for integration tests: started with arguments and environment, its stdout read line by line on a
// thread as it is written (so a test can wait for an event line), stderr kept for failure messages.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace singleton::testing {

class Process {
 public:
  // Throws std::runtime_error if it cannot start (a test set-up failure).
  Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env = {});
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit; the exit status (128 + signal when killed), or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running();

  std::vector<std::string> lines() const;
  std::string stderrText() const;
  // Waits until some stdout line satisfies `match`; returns it (with the time it was read), or nullopt on timeout.
  struct Line {
    std::string text;
    std::chrono::steady_clock::time_point at;
  };
  std::optional<Line> waitForLine(const std::function<bool(const std::string&)>& match,
                                  std::chrono::milliseconds timeout, std::size_t from_index = 0);
  std::vector<Line> timedLines() const;

 private:
  void readLoop(int fd, bool is_stdout);

  pid_t pid_ = -1;
  std::optional<int> status_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Line> lines_;
  std::string err_;
  int readers_done_ = 0;
  std::thread out_reader_;
  std::thread err_reader_;
};

// The live processes (not zombies) whose environment has POD_UID=<uid>: a process pod's agent and its COMMAND.
std::vector<pid_t> processesOfPod(const std::string& uid);

}  // namespace singleton::testing
