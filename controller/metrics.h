#pragma once

#include <string>
#include <string_view>

#include "common/metrics.h"

// The controllers' metrics (the reconcile counters are kube::Controller's).
namespace bulkhead::controller {

// bulkhead_api_writes_total{kind,verb}
metrics::Counter& apiWrites(const std::string& kind, const char* verb);
// bulkhead_drift_repairs_total{kind}
metrics::Counter& driftRepairs(const std::string& kind);
// bulkhead_generated_objects{kind}
metrics::Gauge& generatedObjects(const std::string& kind);
// bulkhead_namespaces{state}: selected, segmented, unsegmented
metrics::Gauge& namespacesGauge(const char* state);
// bulkhead_exceptions{phase}
metrics::Gauge& exceptionsGauge(std::string_view phase);
// bulkhead_grants{phase}
metrics::Gauge& grantsGauge(std::string_view phase);

}  // namespace bulkhead::controller
