// Errors from the environment (network, API answers) as values. Every fallible call in the library returns
// Result<T>; exceptions are reserved for start-up configuration.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace singleton::util {

enum class ErrorCode {
  kNetwork,          // connection refused/reset, TLS failure, DNS
  kTimeout,          // no answer within the request's timeout
  kCancelled,        // the caller asked us to stop
  kBadRequest,       // 400
  kUnauthorized,     // 401
  kForbidden,        // 403
  kNotFound,         // 404
  kAlreadyExists,    // 409 reason AlreadyExists
  kConflict,         // 409 (resourceVersion precondition failed)
  kGone,             // 410: resourceVersion too old, relist
  kInvalid,          // 422
  kTooManyRequests,  // 429 (Retry-After honoured)
  kServerError,      // 5xx
  kBadResponse,      // an answer we cannot parse
  kInvalidArgument,  // the caller's input, e.g. a malformed duration or kubeconfig
  kInternal,         // anything else
};

const char* errorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  int http_status = 0;  // 0 when no HTTP answer was received
  std::string reason;   // metav1.Status reason, e.g. "Conflict"
  std::optional<std::chrono::milliseconds> retry_after;

  // Worth trying again later with backoff: the environment may heal (network, overload, server errors).
  bool retryable() const;
  std::string describe() const;  // one readable line
};

// `text` with control characters escaped ("\n", "\x1b"), so a message that quotes user input stays one line.
std::string printable(std::string_view text);

inline Error makeError(ErrorCode code, std::string message) {
  Error e;
  e.code = code;
  e.message = std::move(message);
  return e;
}

}  // namespace singleton::util
