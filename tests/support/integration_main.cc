// main() of every integration test binary: one real control plane for all of its test cases.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <iostream>

#include "tests/support/control_plane.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  if (context.shouldExit()) {
    return context.run();
  }
  if (!bulkhead::testing::ControlPlane::start()) {
    return 1;
  }
  int rc = context.run();
  bulkhead::testing::ControlPlane::stop();
  return rc;
}
