#pragma once

#include <string_view>

#include "common/status.h"

namespace bulkhead::kube {

// Maps an API server response (HTTP code and body) to our Status. A `Status` body contributes its
// reason and message ("namespaces \"x\" not found"); any other body is quoted, shortened.
Status statusFromApi(int httpCode, std::string_view body);

}  // namespace bulkhead::kube
