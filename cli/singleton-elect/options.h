// singleton-elect's command line: its interface is part of the contract, so it is parsed in one place and tested.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/clock.h"
#include "util/log.h"
#include "util/result.h"

namespace singleton::cli {

struct ElectOptions {
  std::string lease_namespace;  // empty: the kubeconfig context's namespace
  std::string lease_name;
  std::string identity;  // default: election::uniqueIdentity(), "<hostname>_<random>"
  std::string kubeconfig;
  std::string context;
  util::Millis lease_duration{15'000};
  util::Millis renew_deadline{10'000};
  util::Millis retry_period{2'000};
  util::Millis renew_interval{0};  // 0: election::defaultRenewInterval()
  // Between SIGTERM and SIGKILL of the command. Default: election::defaultGracePeriod(), what the timings leave.
  util::Millis grace_period{0};
  bool grace_period_set = false;
  // Logs on stderr; text by default, since people read these binaries' stderr (--log-format json for a collector).
  log::Format log_format = log::Format::kText;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::vector<std::string> command;  // after "--"
  bool help = false;
  bool version = false;
};

// Accepts "--flag value" and "--flag=value". Errors are one readable line.
util::Result<ElectOptions> parseElectOptions(const std::vector<std::string>& args);
std::string electUsage();

}  // namespace singleton::cli
