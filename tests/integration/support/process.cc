#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace singleton::testing {

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    if (!extra_env.count(entry.substr(0, entry.find('=')))) env.push_back(entry);
  }
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int rc = posix_spawnp(&pid_, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  out_reader_ = std::thread([this, fd = out[0]] { readLoop(fd, true); });
  err_reader_ = std::thread([this, fd = err[0]] { readLoop(fd, false); });
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
}

void Process::readLoop(int fd, bool is_stdout) {
  std::string partial;
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    std::lock_guard g(mutex_);
    if (!is_stdout) {
      err_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    partial.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      lines_.push_back({partial.substr(0, nl), std::chrono::steady_clock::now()});
      partial.erase(0, nl + 1);
    }
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard g(mutex_);
  ++readers_done_;
  cv_.notify_all();
}

void Process::signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

bool Process::running() {
  if (status_ || pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Let the readers take what the process wrote last. Bounded: a grandchild may hold the pipes open.
  std::unique_lock g(mutex_);
  cv_.wait_for(g, std::chrono::seconds(2), [&] { return readers_done_ == 2; });
  return status_;
}

std::vector<std::string> Process::lines() const {
  std::lock_guard g(mutex_);
  std::vector<std::string> out;
  for (const auto& l : lines_) out.push_back(l.text);
  return out;
}

std::vector<Process::Line> Process::timedLines() const {
  std::lock_guard g(mutex_);
  return lines_;
}

std::string Process::stderrText() const {
  std::lock_guard g(mutex_);
  return err_;
}

std::optional<Process::Line> Process::waitForLine(const std::function<bool(const std::string&)>& match,
                                                  std::chrono::milliseconds timeout, std::size_t from_index) {
  std::unique_lock g(mutex_);
  std::optional<Line> found;
  cv_.wait_for(g, timeout, [&] {
    for (std::size_t i = from_index; i < lines_.size(); ++i) {
      if (match(lines_[i].text)) {
        found = lines_[i];
        return true;
      }
    }
    return false;
  });
  return found;
}

std::vector<pid_t> processesOfPod(const std::string& uid) {
  std::vector<pid_t> pids;
  const std::string wanted = "POD_UID=" + uid;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string stat_line;
    std::getline(stat, stat_line);
    const auto paren = stat_line.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat_line.size() || stat_line[paren + 2] == 'Z') continue;
    std::ifstream environ(entry.path() / "environ", std::ios::binary);
    std::string variable;
    while (std::getline(environ, variable, '\0')) {
      if (variable == wanted) {
        pids.push_back(static_cast<pid_t>(std::stol(name)));
        break;
      }
    }
  }
  return pids;
}

}  // namespace singleton::testing
