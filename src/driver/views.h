// The JSON views of jobs, attempts and nodes: one rendering shared by the dashboard, `baton
// status --json` (read back from Redis) and the embedded runtime's Snapshot()/JobDetail(), so
// every backend shows the same shapes (documented in src/dashboard/source.h and docs/cli.md).
//
//   Job:     {"id", "input", "state", "step", "steps": [{"name", "state", "wait"?, "node"?,
//             "attempt"?}], "attempts": [Attempt] (ended ones, then the running one), "error"?,
//             "llm"? (LLM requests, tokens and cost so far)};
//             with detail also "results" (the step results).
// Both field lists live in driver/job_fields.h (every writer and reader walks them).
// The published form is docs/schema/baton.schema.json (`"schema": 1` at the top of each output).
//   Attempt: {"step", "attempt" (from 1), "node", "status", "start", "end", "seconds", "gpus",
//             "error"?, "placed"?} (a running one has "status": "running" and no end; "placed":
//             when the head placed it, for attempts an agent started later).
//
// Plain functions; thread-compatible. views.cc also holds the Driver's own views (driver.h
// "Views": Snapshot, JobDetail, the nodes, the progress line), which feed these functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "baton/report.h"

namespace baton::driver {

struct JobViewInput {
  std::string id, input;
  std::string status;                      // core::PhaseName (the JSON "state")
  size_t step = 0;                         // current step index
  const std::vector<std::string>* step_names = nullptr;
  std::vector<std::string> homes;          // per step: node that ran it, "" unknown
  std::string node;                        // node of the attempt in flight, "" none
  int step_attempt = 0;
  std::string wait;                        // why the current step is not running
  std::string error;
  const std::vector<AttemptReport>* attempts = nullptr;  // ended attempts
  std::optional<AttemptReport> running;    // the attempt in flight (status "running")
  const Json* results = nullptr;           // with detail
  Json llm;                                // the job's LLM usage (JobLlm), null when it made no request
};

// The "llm" object of a job ({requests, prompt_tokens, completion_tokens, cached_tokens, cost_usd},
// the sum of its step results' `usage`, src/rates/llm_usage.h); null when it made no request.
Json JobLlm(const Json& results);
// Adds a job view's "llm" into `total` (an object of the same keys, starting from EmptyLlm()).
void AddLlm(const Json& job_view, Json* total);
Json EmptyLlm();

inline constexpr int kSchemaVersion = 1;  // the "schema" field of summary.json, snapshots, status

Json JobView(const JobViewInput& in, bool detail);
Json AttemptJson(const AttemptReport& a);
// Parses what AttemptJson wrote (a Redis attempt record); missing fields stay default.
AttemptReport AttemptFromJson(const Json& j);

}  // namespace baton::driver
