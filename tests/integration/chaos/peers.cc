#include "chaos/peers.h"

#include <cstdlib>

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

std::map<std::string, std::string> fakeTimeEnvironment(const fs::path& library, const std::string& faketime) {
  // CLOCK_REALTIME only. With CLOCK_MONOTONIC faked too, libfaketime 0.9.10 (Debian 12) moves it by the offset from
  // the epoch and does not translate the absolute deadline of pthread_cond_clockwait, which
  // std::condition_variable::wait_for uses: a 300 ms wait never returns, so an elector under it hangs (it never led
  // nor exited in the campaign's runs). The faked wall clock is what peers could disagree on (Lease renewTime).
  std::map<std::string, std::string> env = {
      {"LD_PRELOAD", library.string()}, {"FAKETIME", faketime}, {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
  if (addressSanitizerBuild()) {
    const char* asan = std::getenv("ASAN_OPTIONS");
    env["ASAN_OPTIONS"] =
        std::string(asan != nullptr && *asan != '\0' ? std::string(asan) + ":" : "") + "verify_asan_link_order=0";
  }
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
