#include "webhooks/admission_review.h"

#include <simdjson.h>

#include <vector>

#include "policy/pod_facts_decoder.h"
#include "webhooks/admission_rules.h"

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;

// Nesting depth of a JSON text, counting brackets outside strings; stops early past `limit`.
int depthOf(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        inString = false;
      }
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) {
        return deepest;
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

// pod_facts_decoder.h's Node over a simdjson DOM element. member() takes the last of duplicate
// keys, as Go's decoder (and so the API server) does.
class SimdNode {
 public:
  explicit SimdNode(simdjson::dom::element e) : e_(e) {}
  bool isObject() const { return e_.type() == simdjson::dom::element_type::OBJECT; }
  bool isArray() const { return e_.type() == simdjson::dom::element_type::ARRAY; }
  bool isString() const { return e_.type() == simdjson::dom::element_type::STRING; }
  bool isBool() const { return e_.type() == simdjson::dom::element_type::BOOL; }
  bool isInteger() const {
    auto t = e_.type();
    return t == simdjson::dom::element_type::INT64 || t == simdjson::dom::element_type::UINT64;
  }
  std::optional<SimdNode> member(std::string_view key) const {
    std::optional<SimdNode> found;
    if (!isObject()) {
      return found;
    }
    for (auto field : simdjson::dom::object(e_)) {
      if (field.key == key) {
        found = field.value.type() == simdjson::dom::element_type::NULL_VALUE
                    ? std::nullopt
                    : std::optional<SimdNode>(SimdNode(field.value));
      }
    }
    return found;
  }
  size_t size() const { return simdjson::dom::array(e_).size(); }
  SimdNode at(size_t i) const { return SimdNode(simdjson::dom::array(e_).at(i).value_unsafe()); }
  std::string string() const { return std::string(std::string_view(e_)); }
  bool boolean() const { return bool(e_); }
  std::optional<int64_t> int64() const {
    int64_t v = 0;
    if (e_.get_int64().get(v) != simdjson::SUCCESS) {
      return std::nullopt;  // a UINT64 beyond int64
    }
    return v;
  }
  template <class F>
  void forEachMember(F f) const {
    // Go's decoder keeps the last of duplicate keys; emplace keeps the first, so feed in reverse
    // by collecting first. Objects here are small.
    std::vector<std::pair<std::string_view, simdjson::dom::element>> fields;
    for (auto field : simdjson::dom::object(e_)) {
      fields.emplace_back(field.key, field.value);
    }
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      f(it->first, SimdNode(it->second));
    }
  }
  json toNlohmann() const {
    return json::parse(simdjson::minify(e_), nullptr, /*allow_exceptions=*/false);
  }
  std::string minified() const { return simdjson::minify(e_); }

 private:
  simdjson::dom::element e_;
};

std::string stringMember(const SimdNode& obj, std::string_view key) {
  auto m = obj.member(key);
  return m && m->isString() ? m->string() : "";
}

// The pod spec of a Pod, or the pod template spec of a workload, serialized as it came; nullopt
// when the object has none.
std::optional<std::string> podSpecText(const SimdNode& object) {
  std::optional<std::string_view> templatePath =
      policy::podTemplatePath(stringMember(object, "kind"));
  if (!templatePath.has_value()) {
    return std::nullopt;
  }
  std::string path = templatePath->empty() ? "spec" : std::string(*templatePath) + ".spec";
  std::optional<SimdNode> node = object;
  for (size_t start = 0; start <= path.size();) {
    size_t dot = std::min(path.find('.', start), path.size());
    if (!node->isObject()) {
      return std::nullopt;
    }
    node = node->member(std::string_view(path).substr(start, dot - start));
    if (!node) {
      return std::nullopt;
    }
    start = dot + 1;
  }
  return node->minified();
}

}  // namespace

bool isPodLike(std::string_view resource, std::string_view subResource) {
  const AdmissionRule* rule = findAdmissionRule(resource, subResource);
  return rule != nullptr && rule->decider == Decider::kPod;
}

StatusOr<AdmissionRequest> decodeAdmissionReview(std::string_view body) {
  if (body.empty()) {
    return invalidError("empty request body; expected an admission.k8s.io/v1 AdmissionReview");
  }
  if (depthOf(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return invalidError("request body is nested more than " + std::to_string(kMaxJsonDepth) +
                        " levels deep");
  }
  // One parser per thread: it keeps its buffers between requests.
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS) {
    return invalidError("request body is not valid JSON");
  }
  SimdNode root(doc);
  if (!root.isObject() || stringMember(root, "apiVersion") != "admission.k8s.io/v1" ||
      stringMember(root, "kind") != "AdmissionReview") {
    return invalidError("request body is not an admission.k8s.io/v1 AdmissionReview");
  }
  std::optional<SimdNode> req = root.member("request");
  if (!req || !req->isObject()) {
    return invalidError("AdmissionReview has no request");
  }
  AdmissionRequest out;
  out.uid = stringMember(*req, "uid");
  if (out.uid.empty()) {
    return invalidError("AdmissionReview request.uid is missing");
  }
  if (auto kind = req->member("kind"); kind && kind->isObject()) {
    out.kind = stringMember(*kind, "kind");
  }
  if (auto resource = req->member("resource"); resource && resource->isObject()) {
    out.resource = stringMember(*resource, "resource");
  }
  out.subResource = stringMember(*req, "subResource");
  out.ns = stringMember(*req, "namespace");
  out.name = stringMember(*req, "name");
  out.operation = stringMember(*req, "operation");
  if (auto ui = req->member("userInfo"); ui && ui->isObject()) {
    out.user.username = stringMember(*ui, "username");
    if (auto groups = ui->member("groups"); groups && groups->isArray()) {
      for (size_t i = 0; i < groups->size(); ++i) {
        if (SimdNode g = groups->at(i); g.isString()) {
          out.user.groups.push_back(g.string());
        }
      }
    }
  }
  if (auto dry = req->member("dryRun"); dry && dry->isBool()) {
    out.dryRun = dry->boolean();
  }
  std::optional<SimdNode> object = req->member("object");
  if (isPodLike(out.resource, out.subResource) && object) {
    out.pod = policy::podfacts::decode(*object);
    if (auto old = req->member("oldObject")) {
      out.oldPod = policy::podfacts::decode(*old);
      std::optional<std::string> was = podSpecText(*old);
      out.podSpecChanged = !was.has_value() || was != podSpecText(*object);
    }
    return out;
  }
  if (object) {
    out.object = object->toNlohmann();
  }
  if (auto old = req->member("oldObject")) {
    out.oldObject = old->toNlohmann();
  }
  return out;
}

std::string encodeAdmissionReview(const std::string& uid, const policy::Decision& decision) {
  json response = {{"uid", uid}, {"allowed", decision.allowed}};
  if (!decision.allowed) {
    response["status"] = {
        {"code", decision.code}, {"reason", "Forbidden"}, {"message", decision.message}};
  }
  if (!decision.warnings.empty()) {
    response["warnings"] = decision.warnings;
  }
  if (!decision.auditAnnotations.empty()) {
    response["auditAnnotations"] = decision.auditAnnotations;
  }
  json review = {{"apiVersion", "admission.k8s.io/v1"},
                 {"kind", "AdmissionReview"},
                 {"response", std::move(response)}};
  return review.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace bulkhead::webhooks
