// File and encoding helpers shared by the config loaders. Private to lib/kube.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace singleton::kube::detail {

// The whole file. The error message is "PATH: <reason>".
util::Result<std::string> readFile(const std::string& path);
bool isRegularFile(const std::string& path);
// Standard base64 (RFC 4648), whitespace ignored, padding optional. nullopt if anything else is wrong.
std::optional<std::string> decodeBase64(std::string_view text);
// `path` unchanged if absolute, else joined to `base_dir`.
std::string resolvePath(const std::string& path, const std::string& base_dir);
std::string trimSpace(std::string_view text);

}  // namespace singleton::kube::detail
