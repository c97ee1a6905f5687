#include "common/status.h"

#include <doctest/doctest.h>

#include <memory>

namespace bulkhead {
namespace {

StatusOr<int> half(int x) {
  if (x % 2 != 0) {
    return invalidError(std::to_string(x) + " is odd");
  }
  return x / 2;
}

StatusOr<int> quarter(int x) {
  ASSIGN_OR_RETURN(int h, half(x));
  ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

Status checkEven(int x) {
  RETURN_IF_ERROR(half(x).status());
  return okStatus();
}

TEST_CASE("Status carries a code and message and prints like the API server's reasons") {
  CHECK(okStatus().ok());
  CHECK(okStatus().toString() == "OK");
  Status s = notFoundError("namespaces \"x\" not found");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == StatusCode::kNotFound);
  CHECK(s.toString() == "NotFound: namespaces \"x\" not found");
  CHECK(s.withContext("reading x").toString() == "NotFound: reading x: namespaces \"x\" not found");
  CHECK(okStatus().withContext("ignored").ok());
  CHECK(statusCodeName(StatusCode::kGone) == "Gone");
  CHECK(statusCodeName(StatusCode::kTooManyRequests) == "TooManyRequests");
}

TEST_CASE("StatusOr and the macros propagate the first error") {
  CHECK(*quarter(8) == 2);
  auto odd = quarter(6);  // 6 -> 3 -> odd
  REQUIRE_FALSE(odd.ok());
  CHECK(odd.status().toString() == "Invalid: 3 is odd");
  CHECK(checkEven(4).ok());
  CHECK(checkEven(5).message() == "5 is odd");
}

TEST_CASE("StatusOr holds move-only values") {
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(7);
  REQUIRE(p.ok());
  std::unique_ptr<int> owned = std::move(p).value();
  CHECK(*owned == 7);
}

}  // namespace
}  // namespace bulkhead
