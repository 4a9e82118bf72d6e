// Reports: what a run did, job by job and attempt by attempt (RunReport, returned by Runtime::Run
// and assembled by the cluster client for `baton submit --wait`), its summary.json form, its
// Chrome trace, and JobsQuery, the page of jobs a view of a large run asks for.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "baton/step.h"

namespace baton {

struct AttemptReport {
  std::string step, node, status, error;
  int attempt = 0;
  double start = 0, end = 0;  // seconds since the run started
  std::vector<int> gpus;
  double placed = 0;          // when it was placed, where that is before its start (a cluster agent); else 0
  std::string batch;          // StepOutcome::batch: the worker batch it was served in, "" when alone
};

struct JobReport {
  std::string id, input, status, error;  // status: succeeded, failed, cancelled
  std::vector<AttemptReport> attempts;
  Json results = Json::object();
};

struct RunReport {
  std::vector<JobReport> jobs;
  double seconds = 0;
  int succeeded = 0, failed = 0, cancelled = 0;
  bool interrupted = false;
  // Why the run stopped itself, "" when it did not: its journal failed (a write or sync error, or
  // a record over the journal's limit), so it could not go on without losing what it did.
  std::string error;
  // 0 when every job succeeded, 1 when some failed or were cancelled, 130 when interrupted, 3
  // when the run stopped itself (`error`).
  int ExitCode() const;
  Json ToJson() const;
  // The same JSON as ToJson().dump(1), streamed without building the tree (large runs).
  void WriteJson(std::string* out) const;
};

// One page of jobs, for views of large runs (the dashboard): jobs in any of `states` (all when
// empty) whose id or input contains `text`, from the `offset`-th match, at most `limit`.
struct JobsQuery {
  std::vector<std::string> states;
  std::string text;
  size_t offset = 0, limit = 100;
};

// Writes the Chrome Trace Event Format file for the attempts of `report` (docs/design.md, "Logs,
// trace and summary"): one "X" event per attempt with args {job, step, node, attempt, status,
// gpus}, except that the attempts one resident worker served in one batch (same node and
// AttemptReport::batch) are one event "STEP batch of N" whose args name its jobs; pid per node,
// named by metadata; one lane (tid) per GPU and as many CPU lanes as attempts overlap.
// An error when the file cannot be written.
[[nodiscard]] Status WriteChromeTrace(const std::filesystem::path& file, const RunReport& report,
                                      const std::vector<std::string>& node_names);

}  // namespace baton
