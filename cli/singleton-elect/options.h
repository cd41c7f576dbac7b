// singleton-elect's command line: its interface is part of the contract, so it is parsed in one place and tested.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/clock.h"
#include "util/result.h"

namespace singleton::cli {

struct ElectOptions {
  std::string lease_namespace;  // empty: the kubeconfig context's namespace
  std::string lease_name;
  std::string identity;
  std::string kubeconfig;
  std::string context;
  util::Millis lease_duration{15'000};
  util::Millis renew_deadline{10'000};
  util::Millis retry_period{2'000};
  util::Millis grace_period{10'000};  // between SIGTERM and SIGKILL of the command
  std::string log_level = "info";
  std::vector<std::string> command;  // after "--"
  bool help = false;
  bool version = false;
};

// Accepts "--flag value" and "--flag=value". Errors are one readable line.
util::Result<ElectOptions> parseElectOptions(const std::vector<std::string>& args);
std::string electUsage();

}  // namespace singleton::cli
