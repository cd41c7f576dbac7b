// singleton-fenced-client: the leader's work in the fenced-register tests. Run as singleton-elect's COMMAND, it
// writes `<writer>/<token>/<seq>` with its fencing token ($SINGLETON_FENCING_TOKEN) to the test's fenced store and
// reads it back, over and over, and appends every invocation and completion to a history file (JSON lines, times on
// CLOCK_MONOTONIC) that tests/unit/support/fenced_register.h checks. An operation whose answer never came has an
// invocation and no completion: its outcome is unknown.
//
//   singleton-fenced-client --port P --writer NAME --history FILE [--interval-ms 10]
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <thread>

#include "line_connection.h"

namespace {

std::int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr, "singleton-fenced-client: %s\n", message.c_str());
  std::exit(2);
}

class History {
 public:
  explicit History(const std::string& path) : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644)) {
    if (fd_ < 0) usage("cannot open " + path);
  }
  // One write(2) per line on an O_APPEND file: lines of several processes never interleave.
  void append(const std::string& line) {
    const std::string with_newline = line + "\n";
    (void)!::write(fd_, with_newline.data(), with_newline.size());
  }

 private:
  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  int interval_ms = 10;
  std::string writer;
  std::string history_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage("missing value for " + arg);
    const std::string value = argv[++i];
    if (arg == "--port") {
      port = std::atoi(value.c_str());
    } else if (arg == "--writer") {
      writer = value;
    } else if (arg == "--history") {
      history_path = value;
    } else if (arg == "--interval-ms") {
      interval_ms = std::atoi(value.c_str());
    } else {
      usage("unknown flag " + arg);
    }
  }
  const char* token_env = std::getenv("SINGLETON_FENCING_TOKEN");
  if (port <= 0 || writer.empty() || history_path.empty() || token_env == nullptr) {
    usage("needs --port, --writer, --history and $SINGLETON_FENCING_TOKEN");
  }
  const std::string token = token_env;
  History history(history_path);
  singleton::testing::LineConnection store(port, 2);
  const std::string id_prefix = writer + "-" + std::to_string(::getpid()) + "-";
  for (long long seq = 0;; ++seq) {
    const std::string value = writer + "/" + token + "/" + std::to_string(seq);
    const std::string write_id = id_prefix + "w" + std::to_string(seq);
    history.append(R"({"id":")" + write_id + R"(","op":"write","token":)" + token + R"(,"value":")" + value +
                   R"(","invoke_ns":)" + std::to_string(monotonicNs()) + "}");
    if (auto answer = store.call("W " + token + " " + value)) {
      const char* result = answer->rfind("OK", 0) == 0 ? "ok" : "refused";
      history.append(R"({"id":")" + write_id + R"(","result":")" + result + R"(","complete_ns":)" +
                     std::to_string(monotonicNs()) + "}");
    }
    const std::string read_id = id_prefix + "r" + std::to_string(seq);
    history.append(R"({"id":")" + read_id + R"(","op":"read","invoke_ns":)" + std::to_string(monotonicNs()) + "}");
    if (auto answer = store.call("R"); answer && answer->rfind("V ", 0) == 0) {
      history.append(R"({"id":")" + read_id + R"(","result":"ok","value":")" + answer->substr(2) +
                     R"(","complete_ns":)" + std::to_string(monotonicNs()) + "}");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
}
