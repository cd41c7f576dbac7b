// Splits a streamed body into lines, whatever the chunk boundaries: a watch sends one JSON event per line, and the
// transport hands us pieces that may end in the middle of one.
#pragma once

#include <string>
#include <string_view>

namespace singleton::watch {

class LineSplitter {
 public:
  // Calls on_line(std::string_view) for every complete line (without the '\n'; a trailing '\r' is dropped too).
  template <typename OnLine>
  void feed(std::string_view chunk, OnLine&& on_line) {
    while (!chunk.empty()) {
      const auto newline = chunk.find('\n');
      if (newline == std::string_view::npos) {
        partial_.append(chunk);
        return;
      }
      std::string_view line = chunk.substr(0, newline);
      chunk.remove_prefix(newline + 1);
      if (!partial_.empty()) {
        partial_.append(line);
        emit(partial_, on_line);
        partial_.clear();
      } else {
        emit(line, on_line);
      }
    }
  }
  // Bytes held back waiting for the end of their line.
  std::size_t pending() const { return partial_.size(); }
  void reset() { partial_.clear(); }

 private:
  template <typename OnLine>
  static void emit(std::string_view line, OnLine& on_line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) on_line(line);
  }
  std::string partial_;
};

}  // namespace singleton::watch
