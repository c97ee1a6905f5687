#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace bulkhead {

// Process-wide graceful shutdown on SIGTERM/SIGINT. install() blocks those signals in the calling
// thread (call it first in main(), before any thread starts, so every thread inherits the mask)
// and starts one thread that waits for them; components poll requested() or block in wait().
class Shutdown {
 public:
  static void install();
  static bool requested();
  // Blocks until shutdown is requested.
  static void wait();
  // Blocks until shutdown is requested or `timeout` passes; returns requested().
  static bool waitFor(std::chrono::milliseconds timeout);
  // Requests shutdown from inside the process (e.g. after losing leadership).
  static void request();
};

}  // namespace bulkhead
