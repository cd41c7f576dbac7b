#include "util/error.h"

namespace singleton::util {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNetwork:
      return "Network";
    case ErrorCode::kTimeout:
      return "Timeout";
    case ErrorCode::kCancelled:
      return "Cancelled";
    case ErrorCode::kBadRequest:
      return "BadRequest";
    case ErrorCode::kUnauthorized:
      return "Unauthorized";
    case ErrorCode::kForbidden:
      return "Forbidden";
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kAlreadyExists:
      return "AlreadyExists";
    case ErrorCode::kConflict:
      return "Conflict";
    case ErrorCode::kGone:
      return "Gone";
    case ErrorCode::kInvalid:
      return "Invalid";
    case ErrorCode::kTooManyRequests:
      return "TooManyRequests";
    case ErrorCode::kServerError:
      return "ServerError";
    case ErrorCode::kBadResponse:
      return "BadResponse";
    case ErrorCode::kInvalidArgument:
      return "InvalidArgument";
    case ErrorCode::kInternal:
      return "Internal";
  }
  return "Unknown";
}

bool Error::retryable() const {
  switch (code) {
    case ErrorCode::kNetwork:
    case ErrorCode::kTimeout:
    case ErrorCode::kTooManyRequests:
    case ErrorCode::kServerError:
    case ErrorCode::kBadResponse:
      return true;
    default:
      return false;
  }
}

std::string Error::describe() const {
  std::string out = errorCodeName(code);
  if (http_status != 0) out += " (HTTP " + std::to_string(http_status) + ")";
  if (!message.empty()) out += ": " + message;
  return out;
}

std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace singleton::util
