// Pieces of summary.json shared by RunReport::WriteJson and the runtime's incremental writer
// (job_lines.h): one job's object on one line, and the head (totals) before the jobs.
#pragma once

#include <string>

#include "baton/runtime.h"

namespace baton::runtime {

// The "schema" of summary.json (docs/schema/baton.schema.json "summary"): 2 since it lists only the
// failed jobs and points to jobs.jsonl for every job (1 repeated every job).
inline constexpr int kSummarySchema = 2;

// One job as summary.json and jobs.jsonl hold it, on one line, without a newline.
void AppendJobJson(const JobReport& job, const Json& results, std::string* out);
// `{"schema": ..., totals ..., "llm": llm, "jobs": [` (the caller appends the jobs and "\n ]\n}\n").
void WriteSummaryHead(const RunReport& report, const Json& llm, std::string* out);

}  // namespace baton::runtime
