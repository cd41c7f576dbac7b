#include <cctype>
#include <charconv>

#include "kube/client.h"

namespace singleton::kube {
namespace {

using util::ErrorCode;

// Only the delta-seconds form: the apiserver never sends an HTTP date here.
std::optional<std::chrono::milliseconds> parseRetryAfter(const std::map<std::string, std::string>& headers) {
  const auto it = headers.find("retry-after");
  if (it == headers.end()) return std::nullopt;
  std::string_view text = it->second;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  long long seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || seconds < 0) return std::nullopt;
  return std::chrono::seconds(seconds);
}

ErrorCode codeFor(int status, const std::string& reason) {
  if (reason == "Expired" || reason == "Gone") return ErrorCode::kGone;
  switch (status) {
    case 400:
      return ErrorCode::kBadRequest;
    case 401:
      return ErrorCode::kUnauthorized;
    case 403:
      return ErrorCode::kForbidden;
    case 404:
      return ErrorCode::kNotFound;
    case 409:
      return reason == "AlreadyExists" ? ErrorCode::kAlreadyExists : ErrorCode::kConflict;
    case 410:
      return ErrorCode::kGone;
    case 422:
      return ErrorCode::kInvalid;
    case 429:
      return ErrorCode::kTooManyRequests;
    default:
      break;
  }
  if (status >= 500 && status <= 599) return ErrorCode::kServerError;
  return ErrorCode::kInternal;
}

// A body that is not a Status (a proxy's HTML page, say) still says something useful at its start.
std::string excerpt(const std::string& body) {
  constexpr std::size_t kMax = 200;
  std::string out;
  for (const char c : body.substr(0, kMax)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (body.size() > kMax) out += "...";
  return out;
}

}  // namespace

util::Error classifyResponse(const HttpResponse& response) {
  util::Error error;
  error.http_status = response.status;

  // metav1.Status: {"kind":"Status","status":"Failure","message":...,"reason":...,"code":...,"details":{...}}
  const Json status = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  std::optional<long long> retry_after_seconds;
  if (status.is_object()) {
    if (const auto it = status.find("reason"); it != status.end() && it->is_string()) error.reason = *it;
    if (const auto it = status.find("message"); it != status.end() && it->is_string()) error.message = *it;
    if (const auto details = status.find("details"); details != status.end() && details->is_object()) {
      if (const auto it = details->find("retryAfterSeconds"); it != details->end() && it->is_number_integer()) {
        retry_after_seconds = it->get<long long>();
      }
    }
  }
  if (error.message.empty()) error.message = excerpt(response.body);
  if (error.message.empty()) error.message = "HTTP " + std::to_string(response.status);

  error.code = codeFor(response.status, error.reason);
  if (error.code == ErrorCode::kTooManyRequests || error.code == ErrorCode::kServerError) {
    error.retry_after = parseRetryAfter(response.headers);
    if (!error.retry_after && retry_after_seconds && *retry_after_seconds >= 0) {
      error.retry_after = std::chrono::seconds(*retry_after_seconds);
    }
  }
  return error;
}

}  // namespace singleton::kube
