#include "steps/download/transfer.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

namespace baton::download_internal {
namespace {

// Bytes of the body held back until they can be sniffed for HTML.
constexpr size_t kSniffBytes = 64;
constexpr auto kProgressInterval = std::chrono::milliseconds(250);
// Writeback is started every this many bytes so the final fsync has little left to do and a
// multi-GiB download does not pile up dirty pages.
constexpr int64_t kWritebackBytes = int64_t{8} << 20;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Per-attempt state shared by the libcurl callbacks.
class HttpTransfer {
 public:
  explicit HttpTransfer(const AttemptRequest& req) : req_(req), pos_(req.offset), writeback_from_(req.offset) {
    result_.file_bytes = pos_;
  }

  AttemptResult Run();

 private:
  static size_t OnHeader(char* data, size_t size, size_t n, void* self) {
    return static_cast<HttpTransfer*>(self)->Header(std::string_view(data, size * n)) ? size * n : 0;
  }
  static size_t OnBody(char* data, size_t size, size_t n, void* self) {
    return static_cast<HttpTransfer*>(self)->Body(data, size * n) ? size * n : 0;
  }
  static int OnProgress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<HttpTransfer*>(self)->Progress() ? 0 : 1;
  }

  bool Header(std::string_view line);
  bool Body(const char* data, size_t size);
  bool Progress();
  // Decides, once per attempt, whether the final response is acceptable; false aborts.
  bool Evaluate();
  bool Write(const char* data, size_t size);
  bool Sniff();
  void Fail(AttemptEnd end, std::string message) {
    result_.end = end;
    result_.message = std::move(message);
    failed_ = true;
  }

  const AttemptRequest& req_;
  CURL* curl_ = nullptr;
  AttemptResult result_;
  int64_t pos_;                 // bytes in the file
  int64_t writeback_from_;      // first byte not yet handed to writeback
  int64_t total_ = -1;          // expected final file size, when known
  int64_t content_length_ = -1; // of the current response
  std::string content_range_;
  std::string location_;
  std::string etag_, last_modified_;
  bool evaluated_ = false;
  bool sniffing_ = false;
  std::string sniff_;
  bool failed_ = false;
  bool cancelled_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

bool HttpTransfer::Header(std::string_view line) {
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a redirect or a 100 Continue): forget the previous one's headers.
    const size_t space = line.find(' ');
    result_.status = space == std::string_view::npos ? 0 : std::atoi(std::string(line.substr(space + 1, 3)).c_str());
    content_length_ = -1;
    content_range_.clear();
    location_.clear();
    result_.content_type.clear();
    result_.retry_after.clear();
    etag_.clear();
    last_modified_.clear();
    return true;
  }
  if (line == "\r\n" || line == "\n") {
    const int s = result_.status;
    const bool followed = s >= 300 && s < 400 && !location_.empty();
    if (s < 200 || followed) return true;  // interim or redirect: curl goes on
    return Evaluate();
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return true;
  const std::string name = Lower(std::string(line.substr(0, colon)));
  const std::string value = Trim(line.substr(colon + 1));
  if (name == "content-type") result_.content_type = value;
  else if (name == "content-length") content_length_ = std::strtoll(value.c_str(), nullptr, 10);
  else if (name == "content-range") content_range_ = value;
  else if (name == "location") location_ = value;
  else if (name == "retry-after") result_.retry_after = value;
  else if (name == "etag") etag_ = value;
  else if (name == "last-modified") last_modified_ = value;
  return true;
}

bool HttpTransfer::Evaluate() {
  if (evaluated_) return !failed_;
  evaluated_ = true;
  const DownloadOptions& opt = *req_.options;
  char* effective = nullptr;
  curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &effective);
  result_.effective_url = effective ? effective : req_.url;
  result_.validator = !etag_.empty() && etag_.rfind("W/", 0) != 0 ? etag_ : last_modified_;

  if (req_.is_http) {
    const int s = result_.status;
    if (s == 416 && pos_ > 0) {
      Fail(AttemptEnd::kRangeMismatch, fmt::format("HTTP 416 for a resume at byte {} of {}", pos_, req_.url));
      return false;
    }
    if (s < 200 || s >= 300) {
      Fail(AttemptEnd::kHttpStatus, fmt::format("HTTP {} from {}", s, result_.effective_url));
      return false;
    }
    if (pos_ > 0 && s == 206) {
      long long first = -1, last = -1, size = -1;
      if (std::sscanf(content_range_.c_str(), "bytes %lld-%lld/%lld", &first, &last, &size) < 2 ||
          first != pos_) {
        Fail(AttemptEnd::kRangeMismatch,
             fmt::format("resume at byte {} got Content-Range '{}' from {}", pos_, content_range_, req_.url));
        return false;
      }
      total_ = size >= 0 ? size : -1;
      result_.resumed = true;
    } else if (pos_ > 0) {
      // The server ignored Range and sends the whole body: start the file over.
      if (ftruncate(req_.fd, 0) != 0) {
        Fail(AttemptEnd::kDiskError, fmt::format("truncating the partial file: {}", std::strerror(errno)));
        return false;
      }
      pos_ = 0;
      writeback_from_ = 0;
      result_.file_bytes = 0;
      req_.hasher->Reset();
      result_.restarted = true;
    }
    if (total_ < 0 && content_length_ >= 0) total_ = pos_ + content_length_;
  } else {
    curl_off_t length = -1;
    if (curl_easy_getinfo(curl_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK && length >= 0) {
      total_ = pos_ + length;
    }
  }

  if (!opt.accept_any && IsNonMediaContentType(result_.content_type)) {
    const std::string type = result_.content_type.substr(0, result_.content_type.find(';'));
    const std::string what = Lower(type).find("html") != std::string::npos ? "an HTML page" : "a " + type + " document";
    Fail(AttemptEnd::kNotMedia,
         fmt::format("{}: server sent {}, not media (Content-Type {}); set with.accept_any: true to keep it anyway",
                     result_.effective_url, what, type));
    return false;
  }
  if (total_ > opt.max_bytes) {
    Fail(AttemptEnd::kTooBig, fmt::format("{}: size {} bytes (from Content-Length) exceeds with.max_bytes {}",
                                          result_.effective_url, total_, opt.max_bytes));
    return false;
  }
  sniffing_ = !opt.accept_any && pos_ == 0;
  return true;
}

bool HttpTransfer::Sniff() {
  sniffing_ = false;
  if (LooksLikeHtml(sniff_)) {
    const std::string type = result_.content_type.empty() ? "none" : result_.content_type;
    Fail(AttemptEnd::kNotMedia,
         fmt::format("{}: server sent an HTML page, not media (Content-Type {}, body starts with HTML); "
                     "set with.accept_any: true to keep it anyway",
                     result_.effective_url, type));
    return false;
  }
  std::string held;
  held.swap(sniff_);
  return Write(held.data(), held.size());
}

bool HttpTransfer::Body(const char* data, size_t size) {
  if (!Evaluate()) return false;
  if (sniffing_) {
    const size_t take = std::min(size, kSniffBytes - sniff_.size());
    sniff_.append(data, take);
    data += take;
    size -= take;
    if (sniff_.size() < kSniffBytes) return true;
    if (!Sniff()) return false;
  }
  return Write(data, size);
}

bool HttpTransfer::Write(const char* data, size_t size) {
  if (size == 0) return true;
  if (pos_ + static_cast<int64_t>(size) > req_.options->max_bytes) {
    Fail(AttemptEnd::kTooBig, fmt::format("{}: body exceeds with.max_bytes {} (stopped at {} bytes)",
                                          result_.effective_url, req_.options->max_bytes, pos_));
    return false;
  }
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(req_.fd, data + done, size - done, pos_ + static_cast<int64_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Fail(AttemptEnd::kDiskError, fmt::format("writing the partial file: {}", std::strerror(errno)));
      return false;
    }
    done += static_cast<size_t>(n);
  }
  req_.hasher->Update(data, size);
  pos_ += static_cast<int64_t>(size);
  if (pos_ - writeback_from_ >= kWritebackBytes) {
    sync_file_range(req_.fd, writeback_from_, pos_ - writeback_from_, SYNC_FILE_RANGE_WRITE);
    writeback_from_ = pos_;
  }
  result_.received += static_cast<int64_t>(size);
  result_.file_bytes = pos_;
  return true;
}

bool HttpTransfer::Progress() {
  if (req_.ctx->cancelled()) {
    cancelled_ = true;
    return false;
  }
  const auto now = std::chrono::steady_clock::now();
  if (req_.ctx->progress && now - req_.progress->last_emit >= kProgressInterval) {
    req_.progress->last_emit = now;
    const double seconds = std::chrono::duration<double>(now - started_).count();
    Json event = {{"bytes", pos_}, {"total", total_ >= 0 ? Json(total_) : Json()},
                  {"rate", seconds > 0 ? static_cast<double>(result_.received) / seconds : 0.0}};
    req_.ctx->progress(event);
  }
  return true;
}

AttemptResult HttpTransfer::Run() {
  curl_ = curl_easy_init();
  if (curl_ == nullptr) {
    result_.message = "curl_easy_init failed";
    return result_;
  }
  const DownloadOptions& opt = *req_.options;
  char error[CURL_ERROR_SIZE] = {0};
  std::string range = fmt::format("{}-", pos_);
  curl_slist* headers = nullptr;
  if (req_.is_http && pos_ > 0 && !req_.if_range.empty()) {
    headers = curl_slist_append(headers, ("If-Range: " + req_.if_range).c_str());
  }
  curl_easy_setopt(curl_, CURLOPT_URL, req_.url.c_str());
  curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https,file");
  // A web server must not be able to redirect us to a local file.
  curl_easy_setopt(curl_, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl_, CURLOPT_MAXREDIRS, static_cast<long>(opt.max_redirects));
  curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opt.connect_timeout * 1000));
  if (opt.low_speed_limit > 0) {
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(opt.low_speed_limit));
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, static_cast<long>(std::max(1.0, opt.low_speed_time + 0.5)));
  }
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_USERAGENT, "baton-download/0.1");
  curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &HttpTransfer::OnHeader);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &HttpTransfer::OnBody);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, &HttpTransfer::OnProgress);
  curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, this);
  curl_easy_setopt(curl_, CURLOPT_BUFFERSIZE, 256L * 1024);
  if (headers != nullptr) curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
  if (req_.is_http && pos_ > 0) curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());

  const CURLcode code = curl_easy_perform(curl_);
  if (!failed_ && !cancelled_ && code == CURLE_OK) {
    // An empty body never reached Body(); a short one is still held for sniffing.
    if (Evaluate() && sniffing_) Sniff();
    if (!failed_ && pos_ == 0 && !opt.accept_any) {
      Fail(AttemptEnd::kNotMedia, fmt::format("{}: server sent an empty body", result_.effective_url));
    }
    if (!failed_ && total_ >= 0 && pos_ != total_) {
      Fail(AttemptEnd::kNetwork, fmt::format("{}: body ended at {} of {} bytes", result_.effective_url, pos_, total_));
    }
    if (!failed_) result_.end = AttemptEnd::kComplete;
  } else if (cancelled_) {
    result_.end = AttemptEnd::kCancelled;
    result_.message = "cancelled";
  } else if (!failed_) {
    const std::string detail = error[0] != 0 ? error : curl_easy_strerror(code);
    switch (code) {
      case CURLE_TOO_MANY_REDIRECTS:
        Fail(AttemptEnd::kRedirects,
             fmt::format("{}: too many redirects (more than with.max_redirects {})", req_.url, opt.max_redirects));
        break;
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_FILE_COULDNT_READ_FILE:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CACERT_BADFILE:
        Fail(AttemptEnd::kBadUrl, fmt::format("{}: {}", req_.url, detail));
        break;
      case CURLE_OPERATION_TIMEDOUT:
        Fail(AttemptEnd::kNetwork, fmt::format("{}: timed out: {}", req_.url, detail));
        break;
      default:
        Fail(AttemptEnd::kNetwork, fmt::format("{}: {}", req_.url, detail));
    }
  }
  if (result_.effective_url.empty()) {
    char* effective = nullptr;
    curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &effective);
    result_.effective_url = effective ? effective : req_.url;
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl_);
  return result_;
}

}  // namespace

void EnsureCurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

AttemptResult RunAttempt(const AttemptRequest& request) {
  HttpTransfer attempt(request);
  return attempt.Run();
}

}  // namespace baton::download_internal
