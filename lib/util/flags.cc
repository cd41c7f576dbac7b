#include "util/flags.h"

#include <algorithm>
#include <charconv>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "util/duration.h"

namespace singleton::util {
namespace {

constexpr std::size_t kHelpWidth = 114;  // as wide as the widest lines of the binaries' usage texts

Error usageError(const std::string& message) { return makeError(ErrorCode::kInvalidArgument, printable(message)); }

std::string withDefault(std::string help, const std::string& default_text) {
  static constexpr std::string_view kPlaceholder = "{default}";
  for (auto at = help.find(kPlaceholder); at != std::string::npos; at = help.find(kPlaceholder, at)) {
    help.replace(at, kPlaceholder.size(), default_text);
    at += default_text.size();
  }
  return help;
}

// Appends text's words to out, starting at column `column` of the current line, breaking lines at kHelpWidth.
void appendWrapped(std::string& out, const std::string& text, std::size_t column) {
  std::istringstream paragraphs(text);
  std::string paragraph;
  bool first_paragraph = true;
  while (std::getline(paragraphs, paragraph)) {
    if (!first_paragraph) out += "\n" + std::string(column, ' ');
    first_paragraph = false;
    std::istringstream words(paragraph);
    std::string word;
    std::size_t used = column;
    bool line_empty = true;
    while (words >> word) {
      if (!line_empty && used + 1 + word.size() > kHelpWidth) {
        out += "\n" + std::string(column, ' ');
        used = column;
        line_empty = true;
      }
      if (!line_empty) {
        out += ' ';
        ++used;
      }
      out += word;
      used += word.size();
      line_empty = false;
    }
  }
  out += '\n';
}

}  // namespace

FlagSet::FlagSet(FlagSyntax syntax) : syntax_(std::move(syntax)) {}

FlagSet& FlagSet::add(Flag flag, const std::string& default_text) {
  const bool taken = flag.name == "help" || (syntax_.version && flag.name == "version") ||
                     std::any_of(flags_.begin(), flags_.end(), [&](const Flag& f) { return f.name == flag.name; });
  if (taken) throw std::logic_error("flag --" + flag.name + " registered twice");
  flag.help = withDefault(std::move(flag.help), default_text);
  flags_.push_back(std::move(flag));
  return *this;
}

FlagSet& FlagSet::addString(std::string name, std::string& target, std::string metavar, std::string help) {
  auto set = [&target](const std::string& value) -> Status {
    target = value;
    return {};
  };
  return add({std::move(name), std::move(metavar), std::move(help), true, set}, target);
}

FlagSet& FlagSet::addDuration(std::string name, std::chrono::milliseconds& target, std::string metavar,
                              std::string help) {
  auto set = [&target](const std::string& value) -> Status {
    auto d = parseDuration(value);
    if (!d.ok()) return std::move(d).takeError();
    target = *d;
    return {};
  };
  return add({std::move(name), std::move(metavar), std::move(help), true, set}, formatDuration(target));
}

FlagSet& FlagSet::addInt(std::string name, int& target, int low, int high, std::string metavar, std::string help) {
  auto set = [&target, low, high](const std::string& value) -> Status {
    int n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || n < low || n > high) {
      return usageError("\"" + value + "\" is not a number from " + std::to_string(low) + " to " +
                        std::to_string(high));
    }
    target = n;
    return {};
  };
  return add({std::move(name), std::move(metavar), std::move(help), true, set}, std::to_string(target));
}

FlagSet& FlagSet::addBool(std::string name, bool& target, std::string help) {
  auto set = [&target](const std::string& value) -> Status {
    if (value != "true" && value != "false") return usageError("\"" + value + "\" is not true or false");
    target = value == "true";
    return {};
  };
  return add({std::move(name), "", std::move(help), false, set}, target ? "true" : "false");
}

FlagSet& FlagSet::addFunc(std::string name, std::function<Status(const std::string&)> set, std::string metavar,
                          std::string help) {
  return add({std::move(name), std::move(metavar), std::move(help), true, std::move(set)}, "");
}

Result<FlagSet::Parsed> FlagSet::parse(const std::vector<std::string>& args) {
  Parsed parsed;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (syntax_.command_after_dashes && arg == "--") {
      parsed.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      if (parsed.command.empty()) return usageError("-- must be followed by a command");
      break;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      return parsed;
    }
    if (syntax_.version && arg == "--version") {
      parsed.version = true;
      return parsed;
    }
    if (!arg.starts_with("--") || arg == "--") {
      const std::string hint = syntax_.unexpected_hint.empty() ? "" : " (" + syntax_.unexpected_hint + ")";
      return usageError("unexpected argument \"" + arg + "\"" + hint);
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const auto flag = std::find_if(flags_.begin(), flags_.end(), [&](const Flag& f) { return f.name == name; });
    if (flag == flags_.end()) return usageError("unknown flag --" + name + " (see --help)");
    if (!value && !flag->takes_value) value = "true";
    if (!value) {
      // With dashed_value_is_missing, "--namespace --workers 3" is a forgotten value, not a namespace "--workers".
      if (i + 1 >= args.size() || (syntax_.dashed_value_is_missing && args[i + 1].starts_with("--"))) {
        return usageError("flag --" + name + " needs a value");
      }
      value = args[++i];
    }
    if (auto s = flag->set(*value); !s.ok()) return usageError("--" + name + ": " + s.error().message);
  }
  return parsed;
}

std::string FlagSet::help() const {
  struct Entry {
    std::string left;
    const std::string* help;
  };
  static const std::string kHelpHelp = "this text";
  static const std::string kVersionHelp = "the version";
  std::vector<Entry> entries;
  for (const Flag& f : flags_) entries.push_back({"--" + f.name + (f.metavar.empty() ? "" : " " + f.metavar), &f.help});
  entries.push_back({"-h, --help", &kHelpHelp});
  if (syntax_.version) entries.push_back({"--version", &kVersionHelp});

  std::size_t widest = 0;
  for (const Entry& e : entries) widest = std::max(widest, e.left.size());
  const std::size_t column = 2 + widest + 2;
  std::string out;
  for (const Entry& e : entries) {
    out += "  " + e.left + std::string(column - 2 - e.left.size(), ' ');
    appendWrapped(out, *e.help, column);
  }
  return out;
}

int fail(std::string_view program, int code, std::string_view message) {
  std::cerr << program << ": " << message << std::endl;
  return code;
}

std::optional<int> answerHelpOrVersion(std::string_view program, bool help, bool version,
                                       const std::function<std::string()>& usage) {
  if (help) {
    std::cout << usage();
    return 0;
  }
  if (version) {
    std::cout << program << ' ' << kVersion << '\n';
    return 0;
  }
  return std::nullopt;
}

}  // namespace singleton::util
