// libFuzzer target over everything the webhook does with untrusted bytes: AdmissionReview
// decoding, then pod facts, the rule engine, denial messages, and the CRD decoders, on whatever
// object arrived. Nothing may crash, hang, leak or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "policy/admission.h"
#include "policy/exceptions.h"
#include "policy/pod_facts.h"
#include "policy/pod_rules.h"
#include "policy/segmentation.h"
#include "webhooks/admission_review.h"

namespace {

using namespace bulkhead;

const policy::SegmentationPolicy& strictPolicy() {
  static const policy::SegmentationPolicy p = [] {
    auto decoded = policy::decodeSegmentationPolicy(
        {{"metadata", {{"name", "fuzz"}}},
         {"spec", {{"podRules", {{"forbiddenCapabilities", {"ALL", "NET_ADMIN"}}}}}}});
    return *decoded;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto req = webhooks::decodeAdmissionReview(body);
  if (!req.ok()) {
    return 0;
  }
  const WallTime now = WallTime(std::chrono::seconds(1'800'000'000));
  // Pods and pod templates come decoded straight from the request's bytes (the webhook's own
  // path); anything else is tried through the DOM decoder as well.
  std::optional<StatusOr<policy::PodFacts>> domFacts;
  if (!req->pod) {
    domFacts = policy::decodePodFacts(req->object);
  }
  const auto& facts = req->pod ? *req->pod : *domFacts;
  if (facts.ok()) {
    std::vector<policy::SegmentationException> exceptions;
    if (auto ex = policy::decodeSegmentationException(req->oldObject); ex.ok()) {
      exceptions.push_back(*ex);
    }
    for (policy::Mode mode : {policy::Mode::kEnforce, policy::Mode::kWarn}) {
      policy::SegmentationPolicy p = strictPolicy();
      p.mode = mode;
      policy::PodReview review{&*facts, &p, true, false, &exceptions, now};
      auto decision = policy::decidePod(review);
      (void)webhooks::encodeAdmissionReview(req->uid, decision);
    }
  }
  (void)policy::decodeSegmentationPolicy(req->object);
  if (auto p = policy::decodeSegmentationPolicy(req->object); p.ok()) {
    (void)policy::desiredObjects(*p, {req->ns.empty() ? "ns" : req->ns, {}}, {"x", true, {}});
  }
  policy::ExceptionReview review;
  review.operation = req->operation;
  review.object = req->object;
  review.oldObject = req->oldObject;
  review.user = req->user;
  (void)policy::checkExceptionRequest(review, &strictPolicy(), now);
  (void)policy::decideNamespaceLabels(req->name, policy::labelsOf(req->oldObject),
                                      policy::labelsOf(req->object), {strictPolicy()}, "x",
                                      req->user);
  return 0;
}
