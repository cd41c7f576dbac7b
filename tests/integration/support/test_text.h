// Small helpers the integration tests share for reading what processes wrote and how many rounds to run.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace singleton::testing {

// The whole file ("" if it cannot be read), e.g. an operator's log.
inline std::string fileText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Occurrences of `needle` in `text`.
inline long long countOf(const std::string& text, const std::string& needle) {
  long long n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A positive count from the environment variable `name` (e.g. SINGLETON_FENCE_ROUNDS), else `fallback`.
inline int roundsFromEnv(const char* name, int fallback) {
  const char* text = std::getenv(name);
  const int n = text ? std::atoi(text) : fallback;
  return n > 0 ? n : fallback;
}

}  // namespace singleton::testing
