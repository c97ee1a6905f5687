#pragma once

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
  // Requests shutdown from inside the process (e.g. after losing leadership).
  static void request();
};

}  // namespace bulkhead
