// The download step: parameters, the retry/resume loop around transfer attempts, and the final
// fsync + rename. See download.h for the contract.
#include "steps/download/download.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "baton/status.h"
#include "steps/download/sha256.h"
#include "steps/download/transfer.h"

namespace baton {
namespace {

using download_internal::AttemptEnd;
using download_internal::AttemptRequest;
using download_internal::AttemptResult;
namespace fs = std::filesystem;

// ---- parameters -------------------------------------------------------------------------------

double NumberParam(const Json& with, const char* key, double def, double min) {
  if (!with.contains(key)) return def;
  const Json& v = with[key];
  if (!v.is_number() || v.get<double>() < min) {
    throw ConfigError(fmt::format("with.{}: must be a number >= {} (got {})", key, min, v.dump()));
  }
  return v.get<double>();
}

int64_t IntParam(const Json& with, const char* key, int64_t def, int64_t min) {
  if (!with.contains(key)) return def;
  const Json& v = with[key];
  if (!v.is_number_integer() || v.get<int64_t>() < min) {
    throw ConfigError(fmt::format("with.{}: must be an integer >= {} (got {})", key, min, v.dump()));
  }
  return v.get<int64_t>();
}

std::string Scheme(std::string_view url) {
  const size_t p = url.find("://");
  if (p == std::string_view::npos) return "";
  std::string s(url.substr(0, p));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// A Content-Type for file:// downloads, where no server names one.
std::string GuessContentType(std::string_view name) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".mp4", "video/mp4"}, {".m4v", "video/mp4"}, {".webm", "video/webm"},
      {".mkv", "video/x-matroska"}, {".mov", "video/quicktime"}, {".avi", "video/x-msvideo"},
      {".mp3", "audio/mpeg"}, {".m4a", "audio/mp4"}, {".wav", "audio/wav"}, {".ogg", "audio/ogg"},
      {".flac", "audio/flac"}};
  for (const auto& [ext, type] : kTypes) {
    const std::string_view e(ext);
    if (name.size() >= e.size() && name.substr(name.size() - e.size()) == e) return type;
  }
  return "application/octet-stream";
}

std::string HumanBytes(double bytes) {
  if (bytes >= 1 << 30) return fmt::format("{:.2f} GiB", bytes / (1 << 30));
  if (bytes >= 1 << 20) return fmt::format("{:.1f} MiB", bytes / (1 << 20));
  if (bytes >= 1 << 10) return fmt::format("{:.1f} KiB", bytes / (1 << 10));
  return fmt::format("{:.0f} B", bytes);
}

// ---- the .part file and its sidecar -----------------------------------------------------------

// The sidecar `<name>.part.meta` remembers which URL the partial file belongs to and the server's
// validator, so a later attempt of the step (after a crash or an engine retry) resumes only the
// same resource and asks the server with If-Range whether it is unchanged.
struct PartMeta {
  std::string url;
  std::string validator;
};

PartMeta ReadMeta(const fs::path& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return {};
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  const Json j = Json::parse(text, nullptr, false);
  if (!j.is_object()) return {};
  return {j.value("url", ""), j.value("validator", "")};
}

void WriteMeta(const fs::path& path, const PartMeta& meta) {
  const std::string text = Json{{"url", meta.url}, {"validator", meta.validator}}.dump();
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
}

void RemoveQuietly(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

// The `.part` file of one attempt. Two attempts of one job's step may run at once on one folder
// (an abandoned or partitioned attempt and its retry): the shared `<name>.part` (the one a later
// attempt resumes) belongs to whoever holds its flock; an attempt that finds it held writes a
// private `<name>.part-<attempt>-<pid>-<n>` instead, from byte 0, so no two attempts ever write
// into one file or truncate, rename or remove the other's.
struct PartFile {
  fs::path path;
  fs::path meta;
  int fd = -1;
  bool shared = true;
  ~PartFile() {
    if (fd >= 0) close(fd);  // also drops the flock
  }
};

Status OpenPart(const StepContext& ctx, const std::string& name, PartFile* out) {
  const fs::path shared = fs::absolute(ctx.workdir / (name + ".part"));
  for (int tries = 0; tries < 8; ++tries) {
    const int fd = open(shared.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::Unavailable(fmt::format("cannot open {}: {}", shared.string(), std::strerror(errno)));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      if (errno == EINTR) continue;
      break;  // held by another attempt (or no locks on this file system): a private file
    }
    // The holder before us may have renamed the file to its final name between our open and our
    // lock: then this inode is no longer the .part file, and we open again.
    struct stat by_fd {}, by_name {};
    if (fstat(fd, &by_fd) == 0 && stat(shared.c_str(), &by_name) == 0 && by_fd.st_ino == by_name.st_ino &&
        by_fd.st_dev == by_name.st_dev) {
      out->path = shared;
      out->meta = fs::absolute(ctx.workdir / (name + ".part.meta"));
      out->fd = fd;
      out->shared = true;
      return Status::Ok();
    }
    close(fd);
  }
  static std::atomic<unsigned> serial{0};
  const std::string suffix = fmt::format(".part-{}-{}-{}", ctx.attempt, getpid(), serial.fetch_add(1));
  out->path = fs::absolute(ctx.workdir / (name + suffix));
  out->meta = fs::absolute(ctx.workdir / (name + suffix + ".meta"));
  out->shared = false;
  out->fd = open(out->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out->fd < 0) {
    return Status::Unavailable(fmt::format("cannot open {}: {}", out->path.string(), std::strerror(errno)));
  }
  ctx.info(fmt::format("{}.part is in use by another attempt of this step; writing {} instead", name,
                       out->path.filename().string()));
  return Status::Ok();
}

// ---- the step ---------------------------------------------------------------------------------

class DownloadStep final : public Step {
 public:
  explicit DownloadStep(DownloadOptions options) : options_(std::move(options)) {}
  StepOutcome Run(StepContext& ctx) const override;

 private:
  const DownloadOptions options_;
};

// A local path (no "://"): the file is used where it is, not copied. Its sha256 is computed
// here; the result has the keys of a download, "path" naming the file itself. On a cluster the
// path must be readable on the node that runs the job; otherwise the job fails, saying so.
StepOutcome UseInPlace(StepContext& ctx, const std::string& input) {
  const fs::path path = fs::absolute(fs::path(input)).lexically_normal();
  const std::string where = ctx.node.empty() ? "" : fmt::format(" on node '{}'", ctx.node);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string why = fd < 0 ? std::strerror(errno) : "not a regular file";
    if (fd >= 0) close(fd);
    return StepOutcome::Failure(fmt::format("download: local file {} cannot be read{}: {} (a path is read on the node "
                                            "that runs the job; use an http(s) URL for remote nodes)",
                                            path.string(), where, why),
                                false);
  }
  Sha256 hasher;
  std::vector<char> buf(1 << 20);
  int64_t total = 0;
  for (;;) {
    if (ctx.cancelled()) {
      close(fd);
      return StepOutcome::Cancelled();
    }
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      close(fd);
      return StepOutcome::Failure(fmt::format("download: reading {}: {}", path.string(), why));
    }
    if (n == 0) break;
    hasher.Update(buf.data(), static_cast<size_t>(n));
    total += n;
  }
  close(fd);
  const std::string name = path.filename().string();
  // A hard link in the work folder (no copy) lets another node fetch the file as this step's
  // artifact; where linking is not possible, only nodes that can read the path can use it.
  std::error_code ec;
  if (!ctx.workdir.empty() && !fs::exists(ctx.workdir / name, ec)) fs::create_hard_link(path, ctx.workdir / name, ec);
  const std::string sha = hasher.HexDigest();
  ctx.info(fmt::format("using {} in place: {}, sha256 {}…", path.string(), HumanBytes(static_cast<double>(total)),
                       sha.substr(0, 12)));
  return StepOutcome::Ok({{"path", path.string()},
                          {"file", name},
                          {"bytes", total},
                          {"sha256", sha},
                          {"content_type", GuessContentType(name)},
                          {"url", path.string()},
                          {"effective_url", path.string()},
                          {"title", TitleFromFileName(name)},
                          {"in_place", true},
                          {"resumed", 0},
                          {"retries", 0}});
}

// A private file (another attempt holds the shared one) is never resumed: leave nothing behind.
struct PrivateCleanup {
  const PartFile& part;
  bool keep = false;
  ~PrivateCleanup() {
    if (part.shared || keep) return;
    RemoveQuietly(part.path);
    RemoveQuietly(part.meta);
  }
};

// One download of an http(s) or file:// URL into the work folder. Flow (Run): Open (the .part
// file, resumed when an earlier attempt left some of it) -> Transfer (transfer attempts, retried
// after a backoff or Retry-After) -> Publish (fsync, rename, the result). A stage's outcome, when
// it has one, ends the step.
class Fetch {
 public:
  Fetch(StepContext& ctx, const DownloadOptions& options, std::string url, bool is_http)
      : ctx(ctx), options_(options), url(std::move(url)), is_http(is_http), name(SafeFileName(this->url)),
        final_path(fs::absolute(ctx.workdir / name)), meta{this->url, ""} {}

  StepOutcome Run() {
    if (auto out = Open()) return *out;
    if (auto out = Transfer()) return *out;
    return Publish();
  }

 private:
  std::optional<StepOutcome> Open();
  std::optional<StepOutcome> Transfer();
  std::optional<StepOutcome> Retry(const AttemptResult& r);
  StepOutcome Publish();
  bool Sleep(double seconds) const {
    if (ctx.cancel != nullptr) return ctx.cancel->sleep_for(seconds);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return true;
  }

  StepContext& ctx;
  const DownloadOptions& options_;
  const std::string url;
  const bool is_http;
  const std::string name;
  const fs::path final_path;
  PartFile part;
  PrivateCleanup cleanup{part};
  Sha256 hasher;
  PartMeta meta;
  int64_t offset = 0;
  std::mt19937_64 rng{std::random_device{}()};
  download_internal::ProgressState progress;
  std::chrono::steady_clock::time_point started;
  int retries = 0;
  int resumes = 0;
  AttemptResult done;
};

// The .part file: an earlier attempt's bytes are kept (same URL, shared file, http) or dropped.
std::optional<StepOutcome> Fetch::Open() {
  if (Status s = OpenPart(ctx, name, &part); !s.ok()) return StepOutcome::Failure("download: " + s.message());
  struct stat st {};
  if (fstat(part.fd, &st) == 0 && st.st_size > 0) {
    const PartMeta old = ReadMeta(part.meta);
    // Resume what an earlier attempt left only when it was the same URL; the prefix is hashed
    // again from disk since this process never saw those bytes.
    if (part.shared && is_http && old.url == url && HashFilePrefix(part.fd, st.st_size, hasher)) {
      offset = st.st_size;
      meta.validator = old.validator;
      ctx.info(fmt::format("resuming {} left by an earlier attempt at {}", name + ".part", HumanBytes(offset)));
    } else if (ftruncate(part.fd, 0) != 0) {
      return StepOutcome::Failure(
          fmt::format("download: cannot truncate {}: {}", part.path.string(), std::strerror(errno)));
    } else {
      hasher.Reset();
    }
  }
  WriteMeta(part.meta, meta);
  ctx.info(fmt::format("downloading {} -> {}", url, name));
  return std::nullopt;
}

// Transfer attempts until one completes (nullopt), or the step ends (cancelled, failed).
std::optional<StepOutcome> Fetch::Transfer() {
  started = std::chrono::steady_clock::now();
  for (;;) {
    if (ctx.cancelled()) return StepOutcome::Cancelled();
    AttemptRequest req;
    req.url = url;
    req.is_http = is_http;
    req.fd = part.fd;
    req.offset = offset;
    req.if_range = meta.validator;
    req.options = &options_;
    req.hasher = &hasher;
    req.ctx = &ctx;
    req.progress = &progress;
    AttemptResult r = download_internal::RunAttempt(req);
    offset = r.file_bytes;
    if (r.resumed) ++resumes;
    if (!r.validator.empty() && r.validator != meta.validator) {
      meta.validator = r.validator;
      WriteMeta(part.meta, meta);
    }
    if (r.end == AttemptEnd::kComplete) {
      done = std::move(r);
      return std::nullopt;
    }
    if (r.end == AttemptEnd::kCancelled) return StepOutcome::Cancelled();  // .part kept for a resume
    if (auto out = Retry(r)) return out;
  }
}

// After a failed transfer attempt: the step's failure, or nullopt once it has waited to try again.
std::optional<StepOutcome> Fetch::Retry(const AttemptResult& r) {
  const bool retryable_status = r.status >= 500 || r.status == 408 || r.status == 429;
  const bool retryable = r.end == AttemptEnd::kNetwork || r.end == AttemptEnd::kRangeMismatch ||
                         (r.end == AttemptEnd::kHttpStatus && retryable_status);
  if (!retryable) {
    RemoveQuietly(part.path);
    RemoveQuietly(part.meta);
    // A full disk may clear; everything else is a property of the URL.
    return StepOutcome::Failure("download: " + r.message, r.end == AttemptEnd::kDiskError);
  }
  if (retries >= options_.retries) {
    return StepOutcome::Failure(fmt::format("download: {} (gave up after {} retries)", r.message, retries));
  }
  if (r.end == AttemptEnd::kRangeMismatch) {
    if (ftruncate(part.fd, 0) != 0) return StepOutcome::Failure("download: cannot truncate " + part.path.string());
    offset = 0;
    hasher.Reset();
  }
  ++retries;
  std::optional<double> wait;
  if (!r.retry_after.empty()) wait = RetryAfterSeconds(r.retry_after, std::time(nullptr), options_.max_backoff);
  const char* why = wait ? "Retry-After" : "backoff";
  if (!wait) {
    wait = BackoffSeconds(retries, options_.backoff, options_.max_backoff,
                          std::uniform_real_distribution<double>(0, 1)(rng));
  }
  ctx.info(fmt::format("retry {}/{} in {:.3f} s ({}): {}", retries, options_.retries, *wait, why, r.message));
  if (!Sleep(*wait)) return StepOutcome::Cancelled();
  return std::nullopt;
}

// The complete file made durable under its final name; the step's result.
StepOutcome Fetch::Publish() {
  if (fsync(part.fd) != 0) {
    return StepOutcome::Failure(fmt::format("download: fsync {}: {}", part.path.string(), std::strerror(errno)));
  }
  // An attempt the engine has given up on (cancelled, then abandoned) must not replace the file
  // of the attempt that runs after it.
  if (ctx.cancelled()) return StepOutcome::Cancelled();
  if (std::rename(part.path.c_str(), final_path.c_str()) != 0) {
    return StepOutcome::Failure(fmt::format("download: rename to {}: {}", final_path.string(), std::strerror(errno)));
  }
  // Make the rename itself durable before anyone is told the file exists.
  if (int dir = open(final_path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    fsync(dir);
    close(dir);
  }
  RemoveQuietly(part.meta);
  cleanup.keep = true;

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string sha = hasher.HexDigest();
  ctx.info(fmt::format("downloaded {}: {} in {:.2f} s ({}/s), sha256 {}…, {} retries, {} resumes", name,
                       HumanBytes(static_cast<double>(offset)), seconds,
                       HumanBytes(seconds > 0 ? static_cast<double>(offset) / seconds : 0.0), sha.substr(0, 12),
                       retries, resumes));
  return StepOutcome::Ok({{"path", final_path.string()},
                          {"file", name},
                          {"bytes", offset},
                          {"sha256", sha},
                          {"content_type", done.content_type.empty() ? GuessContentType(name) : done.content_type},
                          {"url", url},
                          {"effective_url", done.effective_url},
                          {"title", TitleFromFileName(name)},
                          {"resumed", resumes},
                          {"retries", retries}});
}

// A local path is used in place (UseInPlace); an http(s) or file:// URL is fetched (Fetch).
StepOutcome DownloadStep::Run(StepContext& ctx) const {
  const std::string url = options_.url.empty() ? Trim(ctx.input) : options_.url;
  if (url.empty())
    return StepOutcome::Failure("download: no URL (the job input is empty and with.url is not set)", false);
  if (url.find("://") == std::string::npos) return UseInPlace(ctx, url);
  const std::string scheme = Scheme(url);
  if (scheme != "http" && scheme != "https" && scheme != "file") {
    return StepOutcome::Failure(
        fmt::format("download: unsupported URL '{}' (expected http://, https:// or file://)", url), false);
  }
  download_internal::EnsureCurlGlobalInit();
  return Fetch(ctx, options_, url, scheme != "file").Run();
}

}  // namespace

DownloadOptions ParseDownloadOptions(const Json& with) {
  DownloadOptions o;
  if (with.is_null()) return o;
  if (!with.is_object()) throw ConfigError("with: must be a mapping of download parameters");
  static const char* const kKnown[] = {"url", "max_redirects", "connect_timeout", "low_speed_limit",
                                       "low_speed_time", "retries", "backoff", "max_backoff",
                                       "max_bytes", "accept_any"};
  for (const auto& [key, value] : with.items()) {
    if (!key.empty() && key[0] == '_') continue;  // set by the loader (_base_dir)
    if (std::find_if(std::begin(kKnown), std::end(kKnown), [&name = key](const char* k) { return name == k; }) ==
        std::end(kKnown)) {
      throw ConfigError(fmt::format("with.{}: unknown parameter of download (known: url, max_redirects, "
                                    "connect_timeout, low_speed_limit, low_speed_time, retries, backoff, "
                                    "max_backoff, max_bytes, accept_any)", key));
    }
  }
  if (with.contains("url")) {
    if (!with["url"].is_string()) throw ConfigError("with.url: must be a string");
    o.url = with["url"].get<std::string>();
  }
  o.max_redirects = static_cast<int>(IntParam(with, "max_redirects", o.max_redirects, 0));
  o.connect_timeout = NumberParam(with, "connect_timeout", o.connect_timeout, 0.001);
  o.low_speed_limit = IntParam(with, "low_speed_limit", o.low_speed_limit, 0);
  o.low_speed_time = NumberParam(with, "low_speed_time", o.low_speed_time, 1);
  o.retries = static_cast<int>(IntParam(with, "retries", o.retries, 0));
  o.backoff = NumberParam(with, "backoff", o.backoff, 0);
  o.max_backoff = NumberParam(with, "max_backoff", o.max_backoff, 0);
  o.max_bytes = IntParam(with, "max_bytes", o.max_bytes, 1);
  if (with.contains("accept_any")) {
    if (!with["accept_any"].is_boolean()) throw ConfigError("with.accept_any: must be true or false");
    o.accept_any = with["accept_any"].get<bool>();
  }
  return o;
}

std::unique_ptr<Step> MakeDownloadStep(DownloadOptions options) {
  return std::make_unique<DownloadStep>(std::move(options));
}

void RegisterDownloadStep(StepRegistry& registry) {
  registry.Register("download",
                    StepFactoryOf([](const Json& with) { return MakeDownloadStep(ParseDownloadOptions(with)); }));
}

}  // namespace baton
