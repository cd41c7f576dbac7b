#include "kube/config_files.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace singleton::kube::detail {
namespace {

// Anything larger is not a kubeconfig, token or CA bundle (and keeps a mistaken /dev/zero from eating memory).
constexpr std::uintmax_t kMaxFileSize = 16 << 20;

int base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

util::Result<std::string> readFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return util::makeError(util::ErrorCode::kInvalidArgument, path + ": " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) return util::makeError(util::ErrorCode::kInvalidArgument, path + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return util::makeError(util::ErrorCode::kInvalidArgument, path + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxFileSize) {
      return util::makeError(util::ErrorCode::kInvalidArgument, path + ": larger than 16 MiB");
    }
  }
  if (in.bad()) return util::makeError(util::ErrorCode::kInvalidArgument, path + ": read error");
  return text;
}

bool isRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::optional<std::string> decodeBase64(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned int accumulator = 0;
  int bits = 0;
  int symbols = 0;
  int padding = 0;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isspace(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    const int value = base64Value(c);
    if (value < 0) return std::nullopt;
    ++symbols;
    accumulator = (accumulator << 6) | static_cast<unsigned int>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((accumulator >> bits) & 0xFF);
    }
  }
  // A lone symbol in the last group cannot encode a byte; padding only ever completes a group.
  if (symbols % 4 == 1 || padding > 2 || (padding > 0 && (symbols + padding) % 4 != 0)) return std::nullopt;
  return out;
}

std::string resolvePath(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

std::string trimSpace(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return std::string(text);
}

}  // namespace singleton::kube::detail
