// One HTTP(S)/file transfer attempt of the download step: a single libcurl easy handle that
// streams the body into an open `.part` file at a given offset, hashing as it goes, and says how
// the attempt ended. The retry policy lives in download.cc; this file only classifies.
//
// Thread-safety: RunAttempt is reentrant; each call owns its curl handle. The caller must have
// called EnsureCurlGlobalInit() (idempotent, thread-safe) first.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "baton/step.h"
#include "steps/download/download.h"
#include "steps/download/sha256.h"

namespace baton::download_internal {

void EnsureCurlGlobalInit();

enum class AttemptEnd {
  kComplete,      // whole body written
  kCancelled,     // ctx.cancelled() seen
  kHttpStatus,    // non-2xx final status (see status)
  kNotMedia,      // HTML/JSON/text where media was expected
  kTooBig,        // over max_bytes (declared or streamed)
  kRedirects,     // redirect limit hit
  kBadUrl,        // malformed URL, unsupported protocol, missing local file, TLS refusal
  kRangeMismatch, // 206/416 that does not continue our prefix: start over
  kDiskError,     // writing the .part file failed
  kNetwork,       // connect/recv errors, timeouts, a body cut short
};

// Emits at most ~4 progress events a second across the attempts of one Run.
struct ProgressState {
  std::chrono::steady_clock::time_point last_emit{};
};

struct AttemptRequest {
  std::string url;
  bool is_http = true;      // false for file://: no status, no Range
  int fd = -1;              // the .part file, open for writing
  int64_t offset = 0;       // bytes already in the file and in `hasher`
  std::string if_range;     // ETag or Last-Modified from an earlier response, or ""
  const DownloadOptions* options = nullptr;
  Sha256* hasher = nullptr;
  StepContext* ctx = nullptr;
  ProgressState* progress = nullptr;
};

struct AttemptResult {
  AttemptEnd end = AttemptEnd::kNetwork;
  std::string message;      // one line naming what failed and the URL
  int status = 0;           // final HTTP status (0 for file:// or when none came)
  int64_t file_bytes = 0;   // bytes in the .part file afterwards (== hashed bytes)
  int64_t received = 0;     // body bytes written in this attempt
  bool resumed = false;     // a 206 continued a non-empty prefix
  bool restarted = false;   // the server ignored Range; the file was truncated and rewritten
  std::string content_type;
  std::string effective_url;
  std::string retry_after;  // raw Retry-After header of the final response
  std::string validator;    // ETag, else Last-Modified: for If-Range on a later resume
};

AttemptResult RunAttempt(const AttemptRequest& request);

}  // namespace baton::download_internal
