#include "webhooks/admission_review.h"

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return "";
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

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

}  // namespace

StatusOr<AdmissionRequest> decodeAdmissionReview(std::string_view body) {
  if (body.empty()) {
    return invalidError("empty request body; expected an admission.k8s.io/v1 AdmissionReview");
  }
  if (depthOf(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return invalidError("request body is nested more than " + std::to_string(kMaxJsonDepth) +
                        " levels deep");
  }
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return invalidError("request body is not valid JSON");
  }
  if (!doc.is_object() || str(doc, "apiVersion") != "admission.k8s.io/v1" ||
      str(doc, "kind") != "AdmissionReview") {
    return invalidError("request body is not an admission.k8s.io/v1 AdmissionReview");
  }
  auto req = doc.find("request");
  if (req == doc.end() || !req->is_object()) {
    return invalidError("AdmissionReview has no request");
  }
  AdmissionRequest out;
  out.uid = str(*req, "uid");
  if (out.uid.empty()) {
    return invalidError("AdmissionReview request.uid is missing");
  }
  out.kind = str(req->value("kind", json::object()), "kind");
  out.resource = str(req->value("resource", json::object()), "resource");
  out.subResource = str(*req, "subResource");
  out.ns = str(*req, "namespace");
  out.name = str(*req, "name");
  out.operation = str(*req, "operation");
  if (auto ui = req->find("userInfo"); ui != req->end() && ui->is_object()) {
    out.user.username = str(*ui, "username");
    if (auto groups = ui->find("groups"); groups != ui->end() && groups->is_array()) {
      for (const auto& g : *groups) {
        if (g.is_string()) {
          out.user.groups.push_back(g.get<std::string>());
        }
      }
    }
  }
  if (auto dry = req->find("dryRun"); dry != req->end() && dry->is_boolean()) {
    out.dryRun = dry->get<bool>();
  }
  if (auto o = req->find("object"); o != req->end()) {
    out.object = std::move(*o);
  }
  if (auto o = req->find("oldObject"); o != req->end()) {
    out.oldObject = std::move(*o);
  }
  return out;
}

std::string encodeAdmissionReview(const std::string& uid, const policy::Decision& decision) {
  json response = {{"uid", uid}, {"allowed", decision.allowed}};
  if (!decision.allowed) {
    response["status"] = {{"code", decision.code},
                          {"reason", "Forbidden"},
                          {"message", decision.message}};
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
