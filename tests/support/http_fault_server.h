// HttpFaultServer: a real HTTP server on 127.0.0.1 (cpp-httplib, background thread) that serves
// files from a folder and misbehaves on purpose, for tests and benchmarks of HTTP clients.
//
// Routes (NAME is a file in the served folder; every file route supports single Range requests
// and answers 206 with Content-Range):
//   /files/NAME          the file (Content-Type from the extension, e.g. .mp4 -> video/mp4)
//   /status/CODE         an empty response with that status (e.g. /status/404)
//   /flaky/NAME          500 for the first `flaky_failures` requests to that path, then the file
//   /retry-after/NAME    first request 429 with `Retry-After: <retry_after>`, then the file
//   /cut/NAME            first request: full Content-Length, half the body, connection closed;
//                        later requests: the file with Range honoured (so a client can resume)
//   /cut-norange/NAME    like /cut, but later requests ignore Range and send 200 with the file
//   /drip/NAME           the file at `drip_rate` bytes per second
//   /stall/NAME          first request: the file as it was then, half of it, then nothing until
//                        ReleaseStall(), then the rest; later requests: 200 with the whole file as
//                        it is now (Range ignored)
//   /nolength/NAME       the file, chunked (no Content-Length)
//   /redirect/NAME       302 to /files/NAME
//   /loop                302 to /loop, forever
//   /html                200 text/html error page
//   /html-as-video       200 with Content-Type video/mp4 but an HTML body
//   /big                 200 video/mp4 declaring Content-Length `big_length`, streaming zeros
//   /any/REST            200 video/mp4, 1000 bytes of 'v', whatever REST is (for URL-name tests)
// Requests are counted per path (and their Range headers kept) so tests can assert on them.
//
// Thread-safety: all methods may be called from any thread while the server runs. The setters
// affect later requests. Stop() (also run by the destructor) stops listening, ends slow
// responses early and joins the server thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace baton::testing {

class HttpFaultServer {
 public:
  // Serves files from `root`. Throws std::runtime_error when it cannot listen.
  explicit HttpFaultServer(std::filesystem::path root);
  ~HttpFaultServer();
  HttpFaultServer(const HttpFaultServer&) = delete;
  HttpFaultServer& operator=(const HttpFaultServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:PORT" + path.
  std::string url(const std::string& path) const;
  void Stop();

  void set_flaky_failures(int n) { flaky_failures_ = n; }
  void set_retry_after(std::string value) {
    std::lock_guard lock(mu_);
    retry_after_ = std::move(value);
  }
  void set_drip_rate(int64_t bytes_per_second) { drip_rate_ = bytes_per_second; }
  void set_big_length(int64_t n) { big_length_ = n; }
  // /stall: true once the first response has sent its first half; lets it go on.
  bool stalled() const { return stalled_; }
  void ReleaseStall() { stall_released_ = true; }

  // Requests received for exactly `path` (e.g. "/flaky/a.mp4").
  int requests(const std::string& path) const;
  // The Range header of each request to `path`, in order ("" when absent).
  std::vector<std::string> ranges(const std::string& path) const;

 private:
  struct Handlers;
  void Record(const std::string& path, const std::string& range);

  std::filesystem::path root_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> flaky_failures_{2};
  std::atomic<int64_t> drip_rate_{1024};
  std::atomic<bool> stalled_{false};
  std::atomic<bool> stall_released_{false};
  std::atomic<int64_t> big_length_{int64_t{16} << 30};
  mutable std::mutex mu_;
  std::string retry_after_ = "1";
  std::map<std::string, std::vector<std::string>> ranges_;  // GUARDED_BY(mu_)
};

}  // namespace baton::testing
