#pragma once

namespace bulkhead {

// `bulkhead explain`: whether a flow between two pods is allowed, and which objects decide it;
// or the pod-to-pod matrix of namespaces. From the cluster or from files. Exit code 0 when
// answered (allowed or not), 2 for unusable input.
int runExplain(int argc, char** argv);

}  // namespace bulkhead
