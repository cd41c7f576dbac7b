// Processes of the fault campaign that are not our own code's usual set-up: client-go's leader-election example as a
// 4th candidate in an elect group (a mixed fleet on one Lease), and clock faults: libfaketime offsets a process's
// CLOCK_REALTIME and runs it at another rate, our libsingleton-clock-rate.so runs its CLOCK_MONOTONIC at that rate.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/process.h"

namespace singleton::testing::chaos {

// <bin_dir>/leader-election-example (built by e2e/cluster/build-binaries.sh), if it is there.
std::optional<std::filesystem::path> clientGoExample(const std::filesystem::path& bin_dir);

// client-go's example campaigning for `lease` ("ns/name") as `identity`, with the campaign's 4 s / 3 s / 1 s (the
// example patched to read LE_LEASE_DURATION, LE_RENEW_DEADLINE, LE_RETRY_PERIOD). It runs no command: while it leads,
// nobody writes to the group's store. It exits 0 when it loses the lease (OnStoppedLeading).
std::unique_ptr<Process> clientGoCandidate(const std::filesystem::path& binary, const std::string& kubeconfig,
                                           const std::string& lease, const std::string& identity);

// libfaketime's multi-threaded library, if installed (Debian's libfaketime).
std::optional<std::filesystem::path> fakeTimeLibrary();
// ${SINGLETON_BINARY_DIR}/tests/libsingleton-clock-rate.so (tests/tools/clock_rate.cc), if it was built: an
// LD_PRELOAD library that runs CLOCK_MONOTONIC (steady_clock) at $SINGLETON_CLOCK_RATE and translates the waits timed
// with it (condition variables, sleeps, timerfds).
std::optional<std::filesystem::path> clockRateLibrary();
// The rate of a FAKETIME spec as written: its "xR" part ("+30s x1.02" -> "1.02"), or nullopt when it has none.
std::optional<std::string> fakeTimeRate(const std::string& faketime);
// Whether this test binary (and so the binaries beside it) was built with AddressSanitizer.
bool addressSanitizerBuild();
// The environment that runs a process under libfaketime with `faketime` (e.g. "+30s x1.02": CLOCK_REALTIME 30 s ahead
// and 2 % fast). CLOCK_MONOTONIC runs at the spec's rate too when clockRateLibrary() exists (preloaded before
// libfaketime, with SINGLETON_CLOCK_RATE), else it is left alone (see peers.cc). Under ASan, the runtime's check that
// it is loaded first is turned off.
std::map<std::string, std::string> fakeTimeEnvironment(const std::filesystem::path& library,
                                                       const std::string& faketime);
// The environment that runs a process with clockRateLibrary() `library` alone at `rate` (e.g. "1.02"): its
// CLOCK_MONOTONIC scaled, its wall clock real. Under ASan, as above.
std::map<std::string, std::string> clockRateEnvironment(const std::filesystem::path& library, const std::string& rate);

// singleton-elect as electCandidate() starts it, with `extra_env` (e.g. fakeTimeEnvironment()).
std::unique_ptr<Process> electCandidateWithEnvironment(const std::string& lease, const std::string& identity,
                                                       const std::vector<std::string>& command,
                                                       const std::string& kubeconfig,
                                                       std::map<std::string, std::string> extra_env);

}  // namespace singleton::testing::chaos
