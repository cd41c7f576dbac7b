#include "chaos/peers.h"

#include <cstdlib>
#include <regex>

#include "support/elect_candidate.h"

namespace singleton::testing::chaos {

namespace fs = std::filesystem;

std::optional<fs::path> clientGoExample(const fs::path& bin_dir) {
  const fs::path binary = bin_dir / "leader-election-example";
  std::error_code ec;
  if (bin_dir.empty() || !fs::is_regular_file(binary, ec)) return std::nullopt;
  return binary;
}

std::unique_ptr<Process> clientGoCandidate(const fs::path& binary, const std::string& kubeconfig,
                                           const std::string& lease, const std::string& identity) {
  const auto slash = lease.find('/');
  return std::make_unique<Process>(
      std::vector<std::string>{binary.string(), "-kubeconfig", kubeconfig, "-lease-lock-namespace",
                               lease.substr(0, slash), "-lease-lock-name", lease.substr(slash + 1), "-id", identity},
      std::map<std::string, std::string>{
          {"LE_LEASE_DURATION", "4s"}, {"LE_RENEW_DEADLINE", "3s"}, {"LE_RETRY_PERIOD", "1s"}});
}

std::optional<fs::path> fakeTimeLibrary() {
  for (const char* candidate : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                                "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                                "/usr/lib/faketime/libfaketimeMT.so.1", "/usr/local/lib/faketime/libfaketimeMT.so.1"}) {
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return fs::path(candidate);
  }
  return std::nullopt;
}

std::optional<fs::path> clockRateLibrary() {
  const fs::path library = fs::path(SINGLETON_BINARY_DIR) / "tests" / "libsingleton-clock-rate.so";
  std::error_code ec;
  if (!fs::is_regular_file(library, ec)) return std::nullopt;
  return library;
}

std::optional<std::string> fakeTimeRate(const std::string& faketime) {
  static const std::regex kRate(R"((^|\s)x([0-9]+(\.[0-9]+)?)(\s|$))");
  std::smatch match;
  if (!std::regex_search(faketime, match, kRate)) return std::nullopt;
  return match[2].str();
}

bool addressSanitizerBuild() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

namespace {

// $ASAN_OPTIONS with the runtime's check that it is loaded first turned off: a preloaded library comes before it.
std::string preloadAsanOptions() {
  const char* asan = std::getenv("ASAN_OPTIONS");
  return std::string(asan != nullptr && *asan != '\0' ? std::string(asan) + ":" : "") + "verify_asan_link_order=0";
}

}  // namespace

std::map<std::string, std::string> fakeTimeEnvironment(const fs::path& library, const std::string& faketime) {
  // libfaketime fakes CLOCK_REALTIME only (FAKETIME_DONT_FAKE_MONOTONIC=1). With CLOCK_MONOTONIC faked too, libfaketime
  // 0.9.10 (Debian 12) moves it by the offset from the epoch and does not translate the absolute deadline of
  // pthread_cond_clockwait, which std::condition_variable::wait_for uses: a 300 ms wait never returns, so an elector
  // under it hangs (it never led nor exited in the campaign's runs). The faked wall clock is what peers could disagree
  // on (Lease renewTime). The monotonic clock, which the electors time their deadlines with, runs at the spec's rate by
  // clockRateLibrary() instead, preloaded before libfaketime: it scales steady_clock and translates the waits timed
  // with it, condition variables' absolute deadlines included (tests/tools/clock_rate.cc). Without it only the wall
  // clock runs at the rate (and libfaketime divides relative sleeps by it, so they end early by steady_clock).
  std::map<std::string, std::string> env = {
      {"LD_PRELOAD", library.string()}, {"FAKETIME", faketime}, {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
  const auto rate_library = clockRateLibrary();
  const auto rate = fakeTimeRate(faketime);
  if (rate_library && rate) {
    env["LD_PRELOAD"] = rate_library->string() + ":" + library.string();
    env["SINGLETON_CLOCK_RATE"] = *rate;
  }
  if (addressSanitizerBuild()) env["ASAN_OPTIONS"] = preloadAsanOptions();
  return env;
}

std::map<std::string, std::string> clockRateEnvironment(const fs::path& library, const std::string& rate) {
  std::map<std::string, std::string> env = {{"LD_PRELOAD", library.string()}, {"SINGLETON_CLOCK_RATE", rate}};
  if (addressSanitizerBuild()) env["ASAN_OPTIONS"] = preloadAsanOptions();
  return env;
}

std::unique_ptr<Process> electCandidateWithEnvironment(const std::string& lease, const std::string& identity,
                                                       const std::vector<std::string>& command,
                                                       const std::string& kubeconfig,
                                                       std::map<std::string, std::string> extra_env) {
  const ElectTimings timings;
  std::vector<std::string> argv = {electBinary(),
                                   "--lease",
                                   lease,
                                   "--kubeconfig",
                                   kubeconfig,
                                   "--lease-duration",
                                   timings.lease_duration,
                                   "--renew-deadline",
                                   timings.renew_deadline,
                                   "--retry-period",
                                   timings.retry_period,
                                   "--identity",
                                   identity,
                                   "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return std::make_unique<Process>(argv, std::move(extra_env));
}

}  // namespace singleton::testing::chaos
