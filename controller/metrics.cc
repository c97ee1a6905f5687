#include "controller/metrics.h"

namespace bulkhead::controller {
namespace {

metrics::Registry& registry() { return metrics::defaultRegistry(); }

}  // namespace

metrics::Counter& apiWrites(const std::string& kind, const char* verb) {
  return registry()
      .counter("bulkhead_api_writes_total", "Writes of generated objects to the API server.",
               {"kind", "verb"})
      .labels({kind, verb});
}

metrics::Counter& driftRepairs(const std::string& kind) {
  return registry()
      .counter("bulkhead_drift_repairs_total",
               "Generated objects restored after they were deleted or edited.", {"kind"})
      .labels({kind});
}

metrics::Gauge& generatedObjects(const std::string& kind) {
  return registry()
      .gauge("bulkhead_generated_objects", "Generated objects present, by kind.", {"kind"})
      .labels({kind});
}

metrics::Gauge& namespacesGauge(const char* state) {
  return registry()
      .gauge("bulkhead_namespaces", "Namespaces by segmentation state.", {"state"})
      .labels({state});
}

metrics::Gauge& exceptionsGauge(std::string_view phase) {
  return registry()
      .gauge("bulkhead_exceptions", "SegmentationExceptions by phase.", {"phase"})
      .labels({std::string(phase)});
}

metrics::Gauge& grantsGauge(std::string_view phase) {
  return registry()
      .gauge("bulkhead_grants", "AccessGrants by phase.", {"phase"})
      .labels({std::string(phase)});
}

}  // namespace bulkhead::controller
