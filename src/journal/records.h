// What a run journals (records.cc) and how a later run reads it back (Replay).
//
// Records (first byte: the kind; then fields as journal::Encoder writes them):
//   header     version, steps: (name, fingerprint = hash of `uses` + `with`)*,  once per run
//              pipeline name
//   job added  job number, id, input                                           once per job
//   attempt    job, step, attempt, status, error, node, start, end            every attempt
//   step done  job, step, node, attempt, seconds, result JSON, main_output     every success
//   job ended  job, end (succeeded/failed/cancelled), error                    every job end
//   spent      usd (f64)                                                        every LLM request
//              that cost something: what the run's budget has spent (src/rates), whatever
//              became of the step, so a resumed run starts from the sum (Past::spent_usd)
//   note       step name, JSON text                                           what a step made
//              durable (Step::CheckPark's ParkContext::note: an LLM batch's ids), handed back
//              to the step on resume (Past::notes), in order, whatever the pipeline became
// Steps are indexes into the pipeline of the latest header; job numbers are dense in the order
// jobs were first added (their ids stay those of their first run).
//
// A header whose steps differ from the previous one invalidates, for every job, the results of
// the first changed step and every step after it (the job goes back to live), so replaying the
// whole file always gives the state the latest pipeline sees.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "baton/pipeline.h"
#include "baton/status.h"
#include "journal/journal.h"

namespace baton::journal {

// The most steps a journaled pipeline may have (a header declaring more is refused unread).
inline constexpr uint32_t kMaxSteps = 1024;

enum class Kind : uint8_t {
  kHeader = 1, kJobAdded = 2, kAttempt = 3, kStepDone = 4, kJobEnded = 5, kSpent = 6, kNote = 7
};
enum class End : uint8_t { kLive = 0, kSucceeded = 1, kFailed = 2, kCancelled = 3 };

struct StepPrint {
  std::string name;
  uint64_t fingerprint = 0;
  bool operator==(const StepPrint&) const = default;
};
std::vector<StepPrint> Fingerprint(const PipelineSpec& pipeline);

// Encoders (each returns the payload in `e`, cleared first).
void EncodeHeader(const std::string& version, const std::vector<StepPrint>& steps, const std::string& pipeline,
                  Encoder* e);
void EncodeJobAdded(uint32_t job, std::string_view id, std::string_view input, Encoder* e);
void EncodeAttempt(uint32_t job, uint16_t step, uint16_t attempt, std::string_view status, std::string_view error,
                   std::string_view node, double start, double end, Encoder* e);
void EncodeStepDone(uint32_t job, uint16_t step, std::string_view node, uint16_t attempt, double seconds,
                    std::string_view result, std::string_view main_output, Encoder* e);
void EncodeJobEnded(uint32_t job, End end, std::string_view error, Encoder* e);
void EncodeSpent(double usd, Encoder* e);
void EncodeNote(std::string_view step, std::string_view json, Encoder* e);

struct PastStep {
  bool done = false;
  uint16_t attempt = 0;
  double seconds = 0;
  std::string node, result, main_output;  // result: JSON text
};
struct PastJob {
  std::string id, input;
  End end = End::kLive;
  std::string error;
  std::vector<PastStep> steps;  // one per step of the latest header
  // The first step without a result (the step count when all have one).
  uint16_t NextStep() const;
};

// A pipeline change: the first step whose name or fingerprint differs ("" when none).
struct Change {
  int step = -1;             // index in the new pipeline; -1: no change
  std::string description;   // "step 'b' changed (uses/with)", "step 'e' added", ...
  size_t jobs_affected = 0;  // jobs that had a result at or past it
};
Change Compare(const std::vector<StepPrint>& before, const std::vector<StepPrint>& after);

// An input's 64-bit hash (what a resume matches inputs to earlier jobs by, with their occurrence).
uint64_t InputHash(std::string_view input);

struct Past {
  // By job number; null for a job the replay settled (ReplayOptions::settle): it succeeded, and
  // the caller keeps what it needs of it elsewhere, so a large journal replays in little memory.
  std::vector<std::unique_ptr<PastJob>> jobs;
  std::vector<uint64_t> input_hash;   // by job number: InputHash of its input
  size_t settled = 0;                 // jobs settled (null in `jobs`)
  // A record or a pipeline change reached a settled job (its results were needed after all):
  // replay again without settling.
  bool settled_needed = false;
  std::vector<StepPrint> steps;       // of the latest header
  std::string version;                // of the latest header
  std::string pipeline;               // the pipeline's name in the latest header
  uint64_t attempts = 0, headers = 0;
  double spent_usd = 0;               // the sum of every `spent` record (kept across pipeline changes)
  std::map<std::string, std::vector<std::string>> notes;  // step name -> its `note` records' JSON, in order
  ReadStats read;
  std::vector<Change> changes;        // pipeline changes met while replaying
  // Invalidates every job's results from `step` on (live again); returns the jobs touched.
  size_t Invalidate(int step);
  // Applies `now` as a new header would (Compare + Invalidate); the change found.
  Change Rebase(const std::vector<StepPrint>& now);
};

struct ReplayOptions {
  // Asked when a job ends succeeded with every step's result: true settles it (the replay drops
  // it, Past::jobs[number] null). A record for it later (a pipeline change that revives it, say)
  // sets Past::settled_needed instead of applying.
  std::function<bool(uint32_t number, const PastJob& job)> settle;
};

// Replays a journal. NotFound when there is none; an error when it is not a journal or a record
// does not decode (a record that passed its CRC but does not decode is a bug, not a power loss).
Result<Past> Replay(const std::filesystem::path& file, const ReplayOptions& options = {});
// The same from a stream (`file` names it in messages); the pure part, for tests and fuzzing.
Result<Past> Replay(std::istream& in, const std::string& file, const ReplayOptions& options = {});

}  // namespace baton::journal
