// A small command-line flag parser for the project's binaries: flags bound to the caller's variables, whose values
// when registered are the defaults, "--flag value" and "--flag=value", one-line errors, and a generated help section.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace singleton::util {

// How a binary's command line is shaped beyond its flags.
struct FlagSyntax {
  bool version = true;                // "--version" is a flag (FlagSet::Parsed::version)
  bool command_after_dashes = false;  // "--" ends the flags; the arguments after it (at least one) are the command
  // "--a --b": --a's value was forgotten (an error), it is not "--b". Off: "--b" is --a's value.
  bool dashed_value_is_missing = false;
  std::string unexpected_hint{};  // appended in parentheses to the "unexpected argument" error, e.g. "see --help"
};

class FlagSet {
 public:
  struct Parsed {
    bool help = false;                 // -h or --help: parsing stopped there, the flags after it were not read
    bool version = false;              // --version: likewise
    std::vector<std::string> command;  // after "--" (FlagSyntax::command_after_dashes)
  };

  explicit FlagSet(FlagSyntax syntax = {});

  // Each flag writes its value to target; target's value now is the default. In help, "{default}" is replaced by it.
  // metavar names the value in the help ("--kubeconfig FILE"). Registering a name twice throws std::logic_error.
  FlagSet& addString(std::string name, std::string& target, std::string metavar, std::string help);
  // Go-style durations (util::parseDuration): 500ms, 4s, 1m30s.
  FlagSet& addDuration(std::string name, std::chrono::milliseconds& target, std::string metavar, std::string help);
  // A whole number from low to high.
  FlagSet& addInt(std::string name, int& target, int low, int high, std::string metavar, std::string help);
  // "--name" sets true; "--name=true" or "--name=false" sets either. A bool flag never takes the next argument.
  FlagSet& addBool(std::string name, bool& target, std::string help);
  // Any other value: set checks and stores it; its error message is prefixed with "--name: ".
  FlagSet& addFunc(std::string name, std::function<Status(const std::string&)> set, std::string metavar,
                   std::string help);

  // Reads args (without the program name) left to right and stores each value as it comes. The first problem is
  // the error: one line, ErrorCode::kInvalidArgument, naming the flag.
  Result<Parsed> parse(const std::vector<std::string>& args);

  // The flags in registration order, then -h/--help and --version, one per entry ("  --name METAVAR  help"), the
  // help text aligned in one column and wrapped at 114 columns; a '\n' in a help text starts a new line.
  std::string help() const;

 private:
  struct Flag {
    std::string name;
    std::string metavar;  // empty for a bool flag
    std::string help;
    bool takes_value = true;
    std::function<Status(const std::string&)> set;
  };
  FlagSet& add(Flag flag, const std::string& default_text);

  FlagSyntax syntax_;
  std::vector<Flag> flags_;
};

// For main's failure paths: prints "program: message" to stderr as one line and returns code, so that
// `return fail(...)` leaves main through its destructors.
int fail(std::string_view program, int code, std::string_view message);

// The project's version, printed by every binary's --version.
inline constexpr std::string_view kVersion = "0.1.0";
// --help and --version, alike in every binary: prints the usage, or "<program> <kVersion>", to stdout and returns the
// exit code (0); nullopt when neither was asked for.
std::optional<int> answerHelpOrVersion(std::string_view program, bool help, bool version,
                                       const std::function<std::string()>& usage);

}  // namespace singleton::util
