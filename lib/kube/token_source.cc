#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "kube/config.h"
#include "kube/config_files.h"
#include "util/log.h"

namespace singleton::kube {
namespace {
const log::Logger kLog("token");
}  // namespace

FileTokenSource::FileTokenSource(std::string path, const util::Clock& clock, util::Millis max_age)
    : path_(std::move(path)), clock_(clock), max_age_(max_age) {}

util::Result<std::string> FileTokenSource::token() {
  std::lock_guard guard(mutex_);
  const util::MonoTime now = clock_.now();

  struct stat st {};
  const bool stat_ok = ::stat(path_.c_str(), &st) == 0;
  const long long mtime_ns = stat_ok ? st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec : -1;
  const long long size = stat_ok ? static_cast<long long>(st.st_size) : -1;
  if (!cached_.empty() && mtime_ns == cached_mtime_ns_ && size == cached_size_ && now - read_at_ < max_age_) {
    return cached_;
  }

  auto text = detail::readFile(path_);
  std::string token = text.ok() ? detail::trimSpace(*text) : std::string();
  if (token.empty()) {
    const std::string why = text.ok() ? path_ + ": empty token file" : text.error().message;
    if (cached_.empty()) return util::makeError(util::ErrorCode::kUnauthorized, "bearer token: " + why);
    // The kubelet swaps the file atomically, so a failed re-read is unusual; the token we have is still better than
    // none. Remember the attempt so we retry on the next change or after max_age, not on every request.
    kLog.warn("re-reading bearer token failed, keeping the previous one", {.err = why, .values = {{"path", path_}}});
    cached_mtime_ns_ = mtime_ns;
    cached_size_ = size;
    read_at_ = now;
    return cached_;
  }
  cached_ = std::move(token);
  cached_mtime_ns_ = mtime_ns;
  cached_size_ = size;
  read_at_ = now;
  return cached_;
}

}  // namespace singleton::kube
