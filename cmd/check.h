#pragma once

namespace bulkhead {

// `bulkhead check`: the webhook's pod and Service rules applied to manifests, without a cluster
// (or with --cluster, reading policies, namespaces and exceptions from one). Exit code 0 when
// every object would be admitted, 1 when one would be refused, 2 for unusable input.
int runCheck(int argc, char** argv);

}  // namespace bulkhead
