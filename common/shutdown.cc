#include "common/shutdown.h"

#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace bulkhead {
namespace {

std::mutex gMu;
std::condition_variable gCv;
bool gRequested = false;  // guarded by gMu

}  // namespace

void Shutdown::install() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    log::info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    request();
  }).detach();
}

bool Shutdown::requested() {
  std::lock_guard lock(gMu);
  return gRequested;
}

void Shutdown::wait() {
  std::unique_lock lock(gMu);
  gCv.wait(lock, [] { return gRequested; });
}

void Shutdown::request() {
  {
    std::lock_guard lock(gMu);
    gRequested = true;
  }
  gCv.notify_all();
}

}  // namespace bulkhead
