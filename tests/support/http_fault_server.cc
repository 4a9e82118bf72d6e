#include "support/http_fault_server.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include <httplib.h>

namespace baton::testing {
namespace {

constexpr size_t kChunk = 1 << 20;

const char kHtmlPage[] =
    "<!DOCTYPE html>\n<html><head><title>Video unavailable</title></head>"
    "<body><h1>This video is not available in your country</h1></body></html>\n";

// A read-only mapping of one served file, shared by the provider calls of one response.
struct Mapped {
  const char* data = nullptr;
  size_t size = 0;
  ~Mapped() {
    if (data != nullptr && size > 0) munmap(const_cast<char*>(data), size);
  }
};

std::string ContentTypeFor(const std::string& name) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".mp4")) return "video/mp4";
  if (ends(".webm")) return "video/webm";
  if (ends(".wav")) return "audio/wav";
  return "application/octet-stream";
}

}  // namespace

// The route handlers, kept out of the header so tests do not compile httplib.
struct HttpFaultServer::Handlers {
  HttpFaultServer* self;

  // Maps root/NAME when NAME is a plain file name in the folder; nullptr otherwise.
  std::shared_ptr<Mapped> Open(const std::string& name) const {
    if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos ||
        name == "." || name == "..") {
      return nullptr;
    }
    const std::string path = (self->root_ / name).string();
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    struct stat st {};
    auto mapped = std::make_shared<Mapped>();
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      mapped->size = static_cast<size_t>(st.st_size);
      if (mapped->size > 0) {
        void* p = mmap(nullptr, mapped->size, PROT_READ, MAP_PRIVATE, fd, 0);
        mapped->data = p == MAP_FAILED ? nullptr : static_cast<const char*>(p);
      }
    }
    close(fd);
    if (mapped->size > 0 && mapped->data == nullptr) return nullptr;
    return S_ISREG(st.st_mode) ? mapped : nullptr;
  }

  // Serves the file; httplib applies a single Range itself (206 + Content-Range) because the
  // provider is given the total length. `cut_at` < size closes the connection after that byte.
  bool ServeFile(const std::string& name, httplib::Response& res, size_t cut_at = SIZE_MAX) const {
    auto file = Open(name);
    if (file == nullptr) {
      res.status = 404;
      res.set_content("no such file\n", "text/plain");
      return false;
    }
    res.set_header("ETag", "\"" + std::to_string(file->size) + "\"");
    res.set_content_provider(file->size, ContentTypeFor(name),
                             [file, cut_at](size_t offset, size_t length, httplib::DataSink& sink) {
                               if (offset >= cut_at) return false;
                               const size_t n = std::min({length, kChunk, cut_at - offset});
                               return sink.write(file->data + offset, n);
                             });
    return true;
  }

  int Count(const httplib::Request& req) const { return self->requests(req.path); }
};

HttpFaultServer::HttpFaultServer(std::filesystem::path root)
    : root_(std::move(root)), server_(std::make_unique<httplib::Server>()) {
  auto h = std::make_shared<Handlers>(Handlers{this});
  httplib::Server& s = *server_;
  // Keep-alive waits would otherwise delay Stop() by up to 5 s.
  s.set_keep_alive_timeout(1);
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    Record(req.path, req.get_header_value("Range"));
    return httplib::Server::HandlerResponse::Unhandled;
  });

  s.Get(R"(/files/(.*))", [h](const httplib::Request& req, httplib::Response& res) {
    h->ServeFile(req.matches[1], res);
  });
  s.Get(R"(/status/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    res.status = std::stoi(req.matches[1]);
    res.set_content("status " + std::string(req.matches[1]) + "\n", "text/plain");
  });
  s.Get(R"(/flaky/(.*))", [h, this](const httplib::Request& req, httplib::Response& res) {
    if (h->Count(req) <= flaky_failures_) {
      res.status = 500;
      res.set_content("temporarily broken\n", "text/plain");
      return;
    }
    h->ServeFile(req.matches[1], res);
  });
  s.Get(R"(/retry-after/(.*))", [h, this](const httplib::Request& req, httplib::Response& res) {
    if (h->Count(req) == 1) {
      std::lock_guard lock(mu_);
      res.status = 429;
      res.set_header("Retry-After", retry_after_);
      res.set_content("slow down\n", "text/plain");
      return;
    }
    h->ServeFile(req.matches[1], res);
  });
  s.Get(R"(/cut/(.*))", [h](const httplib::Request& req, httplib::Response& res) {
    if (h->Count(req) == 1) {
      auto file = h->Open(req.matches[1]);
      h->ServeFile(req.matches[1], res, file ? file->size / 2 : 0);
      return;
    }
    h->ServeFile(req.matches[1], res);
  });
  s.Get(R"(/cut-norange/(.*))", [h](const httplib::Request& req, httplib::Response& res) {
    auto file = h->Open(req.matches[1]);
    if (h->Count(req) == 1) {
      h->ServeFile(req.matches[1], res, file ? file->size / 2 : 0);
      return;
    }
    // Behave like a server without range support. httplib applies req.ranges after the handler;
    // the Request object itself is not const (the handler only sees a const reference).
    const_cast<httplib::Request&>(req).ranges.clear();
    res.status = 200;
    h->ServeFile(req.matches[1], res);
  });
  s.Get(R"(/drip/(.*))", [h, this](const httplib::Request& req, httplib::Response& res) {
    auto file = h->Open(req.matches[1]);
    if (file == nullptr) {
      res.status = 404;
      return;
    }
    res.set_content_provider(file->size, ContentTypeFor(req.matches[1]),
                             [file, this](size_t offset, size_t length, httplib::DataSink& sink) {
                               // One small write every 50 ms adds up to drip_rate_ bytes/s.
                               if (stopping_) return false;
                               const size_t n = std::min<size_t>(length, std::max<int64_t>(1, drip_rate_ / 20));
                               if (!sink.write(file->data + offset, n)) return false;
                               std::this_thread::sleep_for(std::chrono::milliseconds(50));
                               return !stopping_.load();
                             });
  });
  s.Get(R"(/stall/(.*))", [h, this](const httplib::Request& req, httplib::Response& res) {
    if (h->Count(req) > 1) {
      const_cast<httplib::Request&>(req).ranges.clear();
      res.status = 200;
      h->ServeFile(req.matches[1], res);
      return;
    }
    auto file = h->Open(req.matches[1]);
    if (file == nullptr) {
      res.status = 404;
      return;
    }
    res.set_content_provider(file->size, ContentTypeFor(req.matches[1]),
                             [file, this](size_t offset, size_t length, httplib::DataSink& sink) {
                               const size_t half = file->size / 2;
                               if (offset >= half) {
                                 stalled_ = true;
                                 while (!stall_released_ && !stopping_) {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(5));
                                 }
                                 if (stopping_) return false;
                               }
                               const size_t end = offset < half ? half : file->size;
                               return sink.write(file->data + offset, std::min({length, kChunk, end - offset}));
                             });
  });
  s.Get(R"(/nolength/(.*))", [h](const httplib::Request& req, httplib::Response& res) {
    auto file = h->Open(req.matches[1]);
    if (file == nullptr) {
      res.status = 404;
      return;
    }
    res.set_chunked_content_provider(ContentTypeFor(req.matches[1]),
                                     [file](size_t offset, httplib::DataSink& sink) {
                                       if (offset >= file->size) {
                                         sink.done();
                                         return true;
                                       }
                                       return sink.write(file->data + offset, std::min(kChunk, file->size - offset));
                                     });
  });
  s.Get(R"(/redirect/(.*))", [](const httplib::Request& req, httplib::Response& res) {
    res.set_redirect("/files/" + std::string(req.matches[1]));
  });
  s.Get("/loop", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/loop"); });
  s.Get("/html", [](const httplib::Request&, httplib::Response& res) { res.set_content(kHtmlPage, "text/html"); });
  s.Get("/html-as-video", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kHtmlPage, "video/mp4");
  });
  s.Get(R"(/any/(.*))", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(1000, 'v'), "video/mp4");
  });
  s.Get("/big", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(static_cast<size_t>(big_length_.load()), "video/mp4",
                             [this](size_t, size_t length, httplib::DataSink& sink) {
                               static const std::string zeros(kChunk, '\0');
                               if (stopping_) return false;
                               return sink.write(zeros.data(), std::min(length, zeros.size()));
                             });
  });

  port_ = s.bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("HttpFaultServer: cannot bind 127.0.0.1");
  thread_ = std::thread([&s] { s.listen_after_bind(); });
  // listen_after_bind is accepting once is_running() turns true.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!s.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      Stop();
      throw std::runtime_error("HttpFaultServer: server thread did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

HttpFaultServer::~HttpFaultServer() { Stop(); }

std::string HttpFaultServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpFaultServer::Stop() {
  stopping_ = true;
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpFaultServer::Record(const std::string& path, const std::string& range) {
  std::lock_guard lock(mu_);
  ranges_[path].push_back(range);
}

int HttpFaultServer::requests(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = ranges_.find(path);
  return it == ranges_.end() ? 0 : static_cast<int>(it->second.size());
}

std::vector<std::string> HttpFaultServer::ranges(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = ranges_.find(path);
  return it == ranges_.end() ? std::vector<std::string>{} : it->second;
}

}  // namespace baton::testing
