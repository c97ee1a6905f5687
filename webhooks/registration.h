#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "kube/client.h"

namespace bulkhead::webhooks {

// The ValidatingWebhookConfiguration `bulkhead` (the chart's, with `url` instead of `service`):
// the resources and operations SPEC 3.1 guards, failurePolicy Fail, timeout 3 s, and a
// namespaceSelector that skips kube-system, kube-node-lease and the install namespace.
nlohmann::json webhookConfiguration(const std::string& url, const std::string& caBundlePem,
                                    const std::string& installNamespace);

// Creates or updates it with server-side apply.
Status registerWebhook(kube::Client& client, const nlohmann::json& configuration);

}  // namespace bulkhead::webhooks
