// The built-in `download` step: fetches one URL (http, https, file) into the job's folder.
//
// A transfer goes to `<workdir>/<name>.part` and is renamed to `<name>` only once complete and
// fsynced, so a later step never mistakes a partial file for a video. Network errors, 5xx, 408
// and 429 are retried inside the step with exponential backoff and jitter (Retry-After honoured);
// a broken transfer resumes with `Range: bytes=N-`. Other 4xx, HTML error pages, redirect loops
// and oversized bodies fail at once as non-retryable. docs/steps/download.md lists `with:`.
//
// Thread-safety: the step object is immutable after construction; Run may be called from many
// threads at once (one libcurl easy handle per attempt, curl_global_init once). The free
// functions below are pure and thread-safe; they are exposed so tests can check them directly.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "baton/step.h"

namespace baton {

// Registers "download" in `registry`.
void RegisterDownloadStep(StepRegistry& registry);

// The step's `with:` parameters, defaults as documented in docs/steps/download.md.
struct DownloadOptions {
  std::string url;                  // empty: use the job's input
  int max_redirects = 5;
  double connect_timeout = 15;      // seconds
  int64_t low_speed_limit = 1024;   // bytes/s; 0 disables the low-speed timeout
  double low_speed_time = 30;       // seconds below low_speed_limit before giving up
  int retries = 4;                  // retries inside the step (so up to retries+1 requests)
  double backoff = 0.5;             // first backoff, seconds; doubles per retry
  double max_backoff = 30;          // cap on backoff and on Retry-After
  int64_t max_bytes = int64_t{8} << 30;
  bool accept_any = false;          // true: skip the "is this media?" checks
};

// Parses `with` (an object or null). Throws ConfigError("with.NAME: ...") on a bad or unknown key.
DownloadOptions ParseDownloadOptions(const Json& with);

std::unique_ptr<Step> MakeDownloadStep(DownloadOptions options);

// A file name for `url` that cannot leave the folder it is joined to: the last segment of the
// URL's path, percent-decoded; every run of characters outside [A-Za-z0-9._-] becomes one '_';
// leading '.', '_' and '-' are dropped (no hidden files, no "..", nothing that reads as a
// command-line option); at most 120 characters, keeping the extension; "download.bin" when nothing
// is left.
std::string SafeFileName(std::string_view url);

// A readable title from a safe file name: "intro_to-ML.lecture_3.mp4" -> "intro to ML lecture 3".
std::string TitleFromFileName(std::string_view file_name);

// Seconds to wait from a Retry-After header value (delta-seconds or an HTTP date, relative to
// `now_unix`), capped at `cap`; nullopt when the value cannot be parsed.
std::optional<double> RetryAfterSeconds(std::string_view value, int64_t now_unix, double cap);

// Backoff before retry number `retry` (1-based): base * 2^(retry-1), capped at `cap`, then scaled
// by `jitter` in [0, 1] into [50%, 100%] of that (so concurrent jobs do not retry in lockstep).
double BackoffSeconds(int retry, double base, double cap, double jitter);

// True for Content-Types that are never media: text/html, application/xhtml+xml,
// application/json, text/plain (parameters and case ignored).
bool IsNonMediaContentType(std::string_view content_type);

// True when the first bytes of a body look like an HTML page ("<!doctype html", "<html", after
// optional BOM and whitespace, case-insensitive).
bool LooksLikeHtml(std::string_view head);

}  // namespace baton
