#include <gtest/gtest.h>

#include "kube/client.h"

namespace singleton::kube {
namespace {

using util::ErrorCode;

std::string status(int code, const std::string& reason, const std::string& message) {
  return Json{{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
              {"message", message}, {"reason", reason},   {"code", code}}
      .dump();
}

struct Case {
  int http;
  std::string reason;
  ErrorCode expected;
};

TEST(ClassifyResponse, Table) {
  const Case cases[] = {
      {400, "BadRequest", ErrorCode::kBadRequest},
      {401, "Unauthorized", ErrorCode::kUnauthorized},
      {403, "Forbidden", ErrorCode::kForbidden},
      {404, "NotFound", ErrorCode::kNotFound},
      {409, "AlreadyExists", ErrorCode::kAlreadyExists},
      {409, "Conflict", ErrorCode::kConflict},
      {409, "", ErrorCode::kConflict},
      {410, "Gone", ErrorCode::kGone},
      {410, "Expired", ErrorCode::kGone},
      {410, "", ErrorCode::kGone},
      {422, "Invalid", ErrorCode::kInvalid},
      {429, "TooManyRequests", ErrorCode::kTooManyRequests},
      {500, "InternalError", ErrorCode::kServerError},
      {503, "ServiceUnavailable", ErrorCode::kServerError},
      {504, "Timeout", ErrorCode::kServerError},
      {405, "MethodNotAllowed", ErrorCode::kInternal},
      {302, "", ErrorCode::kInternal},
      {415, "UnsupportedMediaType", ErrorCode::kInternal},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.http) + " " + c.reason);
    const util::Error error = classifyResponse({c.http, status(c.http, c.reason, "something"), {}});
    EXPECT_EQ(error.code, c.expected);
    EXPECT_EQ(error.http_status, c.http);
    EXPECT_EQ(error.reason, c.reason);
    EXPECT_EQ(error.message, "something");
  }
}

TEST(ClassifyResponse, ExpiredListContinueIsGone) {
  // A paged list whose continue token expired answers 410 reason Expired; relisting is the remedy either way.
  EXPECT_EQ(classifyResponse({410, status(410, "Expired", "too old resource version"), {}}).code, ErrorCode::kGone);
}

TEST(ClassifyResponse, KeepsTheServersMessage) {
  const util::Error error =
      classifyResponse({404, status(404, "NotFound", "leases.coordination.k8s.io \"x\" not found"), {}});
  EXPECT_EQ(error.message, "leases.coordination.k8s.io \"x\" not found");
  EXPECT_EQ(error.describe(), "NotFound (HTTP 404): leases.coordination.k8s.io \"x\" not found");
}

TEST(ClassifyResponse, RetryAfterHeaderOn429And503) {
  util::Error error = classifyResponse({429, status(429, "TooManyRequests", "slow down"), {{"retry-after", "3"}}});
  EXPECT_EQ(error.code, ErrorCode::kTooManyRequests);
  ASSERT_TRUE(error.retry_after);
  EXPECT_EQ(*error.retry_after, std::chrono::seconds(3));
  EXPECT_TRUE(error.retryable());

  error = classifyResponse({503, "", {{"retry-after", " 7 "}}});
  EXPECT_EQ(error.code, ErrorCode::kServerError);
  ASSERT_TRUE(error.retry_after);
  EXPECT_EQ(*error.retry_after, std::chrono::seconds(7));
}

TEST(ClassifyResponse, RetryAfterFromStatusDetails) {
  const Json body = {{"kind", "Status"},
                     {"reason", "TooManyRequests"},
                     {"message", "the server has received too many requests"},
                     {"details", {{"retryAfterSeconds", 2}}}};
  const util::Error error = classifyResponse({429, body.dump(), {}});
  ASSERT_TRUE(error.retry_after);
  EXPECT_EQ(*error.retry_after, std::chrono::seconds(2));
}

TEST(ClassifyResponse, IgnoresMalformedRetryAfter) {
  EXPECT_FALSE(classifyResponse({429, "", {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}}).retry_after);
  EXPECT_FALSE(classifyResponse({429, "", {{"retry-after", "-1"}}}).retry_after);
  EXPECT_FALSE(classifyResponse({429, "", {{"retry-after", "1x"}}}).retry_after);
  EXPECT_FALSE(classifyResponse({404, "", {{"retry-after", "1"}}}).retry_after);  // only where it means something
}

TEST(ClassifyResponse, NonStatusBodies) {
  util::Error error = classifyResponse({502, "<html>\n<b>Bad Gateway</b>\n</html>", {}});
  EXPECT_EQ(error.code, ErrorCode::kServerError);
  EXPECT_EQ(error.message, "<html> <b>Bad Gateway</b> </html>");

  error = classifyResponse({403, "", {}});
  EXPECT_EQ(error.code, ErrorCode::kForbidden);
  EXPECT_EQ(error.message, "HTTP 403");

  error = classifyResponse({500, std::string(1000, 'x'), {}});
  EXPECT_EQ(error.message.size(), 203u);  // an excerpt, not the whole page

  error = classifyResponse({404, "[1,2", {}});  // broken JSON is just text
  EXPECT_EQ(error.code, ErrorCode::kNotFound);
  EXPECT_EQ(error.message, "[1,2");

  error = classifyResponse({409, R"({"reason": 5, "message": ["x"]})", {}});  // wrong types are ignored
  EXPECT_EQ(error.code, ErrorCode::kConflict);
}

}  // namespace
}  // namespace singleton::kube
