#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bulkhead::testing {

// One request as the scripted server read it.
struct RecordedRequest {
  std::string method;
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::chrono::steady_clock::time_point received;

  std::string path() const;
  // The query's parameters, percent-decoded; a repeated key keeps its last value.
  std::map<std::string, std::string> params() const;
};

// One piece of a chunked body: sent as one HTTP chunk after `pauseBefore`.
struct Chunk {
  std::string data;  // not empty (an empty chunk would end the body)
  std::chrono::milliseconds pauseBefore{0};
};

// How a chunked body ends.
enum class StreamEnd {
  kComplete,  // the last (zero-length) chunk; the connection stays open for the next request
  kAbort,     // the TCP connection is closed at once: no last chunk, no TLS close_notify
  kHold,      // nothing more is sent until the client hangs up or the server stops
};

struct ScriptedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  // Waited (interruptibly) before anything is sent, headers included.
  std::chrono::milliseconds delay{0};
  // Without `chunked`: the whole body, with a Content-Length.
  std::string body;
  bool chunked = false;
  std::vector<Chunk> chunks;
  StreamEnd end = StreamEnd::kComplete;  // for chunked bodies only

  // A complete response with Content-Type application/json (or any `body`).
  static ScriptedResponse json(int status, std::string body);
  // A 200 application/json response whose body is `chunks`, then `end`.
  static ScriptedResponse stream(std::vector<Chunk> chunks, StreamEnd end);
};

// Answers one request. Runs on the connection's thread; different connections call it
// concurrently, so it must be thread-safe.
using ScriptedHandler = std::function<ScriptedResponse(const RecordedRequest&)>;

// An HTTPS/1.1 server on 127.0.0.1 (port chosen by the kernel) for unit tests of HTTP clients:
// every request is recorded and answered by the handler, which can also misbehave (cut a
// stream, stall, hold it open). Its certificate is a throwaway self-signed one for
// IP:127.0.0.1, made at construction; trusting caPem() is enough to reach url().
// One thread per connection, all joined by stop().
class ScriptedServer {
 public:
  // Throws std::runtime_error when the certificate or the socket cannot be set up.
  explicit ScriptedServer(ScriptedHandler handler);
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  // Closes every connection, wakes every pause and hold, joins all threads. Idempotent.
  void stop();

  unsigned short port() const;
  std::string url() const;  // "https://127.0.0.1:<port>"
  const std::string& caPem() const;

  std::vector<RecordedRequest> requests() const;
  size_t requestCount() const;
  // Waits (real time) until at least `n` requests arrived; returns whether they did.
  bool waitForRequests(size_t n, std::chrono::milliseconds timeout) const;

  // Responses currently in StreamEnd::kHold after their last chunk.
  int holding() const;
  // Held responses that ended because the client closed the connection (not because of stop()).
  int clientHangUps() const;

 private:
  class Impl;  // asio, TLS and the connection threads, kept out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::testing
