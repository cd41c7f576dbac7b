// singleton-activity: a leader's work that records when it is active, for benchmarks and tests of the in-pod agent.
// Run as singleton-agent's COMMAND, it appends to DIR/$POD_NAME.log, with times in µs on CLOCK_MONOTONIC (the clock
// std::chrono::steady_clock reads, so an observer on the same machine compares them with its own instants):
//
//   start <µs> <SINGLETON_FENCING_TOKEN> <POD_UID>
//   beat <µs>            every --beat-ms (default 10)
//   stop <µs>            on SIGTERM, then exit 0 at once (a COMMAND that stops immediately)
//
// A window is a start and the last beat or stop after it; the windows of one workload's pods must never overlap.
// This is the log format of tests/integration/operator_handoff_test.cc, whose COMMAND takes 2 s to stop instead.
//
//   singleton-activity DIR [--beat-ms N]
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace {

volatile sig_atomic_t stop_requested = 0;

void onTerm(int) { stop_requested = 1; }

long long monotonicMicros() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr, "singleton-activity: %s\nusage: singleton-activity DIR [--beat-ms N]\n", message.c_str());
  std::exit(2);
}

// One write(2) per line on an O_APPEND descriptor: a reader never sees half a line, and nothing is lost in a buffer
// when the process is SIGKILLed.
void record(int fd, const std::string& line) {
  const std::string text = line + "\n";
  if (::write(fd, text.data(), text.size()) < 0) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no DIR");
  if (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf("usage: singleton-activity DIR [--beat-ms N]\n");
    return 0;
  }
  const std::string dir = argv[1];
  long beat_ms = 10;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--beat-ms" && i + 1 < argc) {
      beat_ms = std::strtol(argv[++i], nullptr, 10);
      if (beat_ms <= 0) usage("--beat-ms must be a positive number");
    } else {
      usage("unknown argument " + arg);
    }
  }
  const char* pod = std::getenv("POD_NAME");
  if (!pod || !*pod) usage("POD_NAME is not set");
  const char* token = std::getenv("SINGLETON_FENCING_TOKEN");
  const char* uid = std::getenv("POD_UID");

  struct sigaction action {};
  action.sa_handler = onTerm;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);

  const std::string path = dir + "/" + pod + ".log";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) usage("cannot open " + path);
  record(fd, "start " + std::to_string(monotonicMicros()) + " " + (token ? token : "-1") + " " + (uid ? uid : ""));
  const timespec period{beat_ms / 1000, (beat_ms % 1000) * 1'000'000};
  while (!stop_requested) {
    record(fd, "beat " + std::to_string(monotonicMicros()));
    ::nanosleep(&period, nullptr);
  }
  record(fd, "stop " + std::to_string(monotonicMicros()));
  ::close(fd);
  return 0;
}
