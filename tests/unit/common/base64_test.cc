#include "common/base64.h"

#include <doctest/doctest.h>

namespace bulkhead {
namespace {

TEST_CASE("base64 round-trips the RFC 4648 test vectors") {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},           {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (auto [plain, encoded] : vectors) {
    CHECK(base64Encode(plain) == encoded);
    CHECK(base64Decode(encoded) == std::optional<std::string>(plain));
  }
  std::string binary;
  for (int i = 0; i < 256; ++i) {
    binary += static_cast<char>(i);
  }
  CHECK(base64Decode(base64Encode(binary)) == binary);
}

TEST_CASE("base64 rejects what is not canonical") {
  for (const char* bad : {"Zg=", "Z===", "Zg==Zg==", "Zm9v\n", "Zm 9", "Zm9*", "=Zg="}) {
    CAPTURE(bad);
    CHECK_FALSE(base64Decode(bad).has_value());
  }
}

}  // namespace
}  // namespace bulkhead
