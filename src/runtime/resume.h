// The runtime's journal (OUT/.baton/journal): a driver::JobStore that records every attempt,
// every finished step's result and every job end with group commit (src/journal), and the resume
// of a run from it (which jobs to skip, continue, re-run or add). See README.md "Resume".
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "baton/runtime.h"
#include "driver/driver.h"
#include "driver/output.h"
#include "driver/scheduler_setup.h"
#include "journal/journal.h"
#include "journal/records.h"
#include "rates/llm_usage.h"
#include "runtime/job_lines.h"

namespace baton::runtime {

// The reason Ctrl-C gives the jobs it cancels: such an end is not journaled (the job resumes).
inline constexpr const char* kInterrupted = "run interrupted";

// The runtime's store: journals (when it has a writer) and writes each ended job's line to
// jobs.jsonl; with `release`, queues succeeded and cancelled jobs whose detail may leave memory.
class JournalStore final : public driver::JobStore {
 public:
  JournalStore(const driver::Driver& d, std::unique_ptr<journal::Writer> writer, std::vector<std::string> step_names,
               JobLines* lines, bool release)
      : d_(d), writer_(std::move(writer)), names_(std::move(step_names)), lines_(lines), release_(release) {}
  ~JournalStore() override;
  // The lock on OUT/.baton/lock this run holds (closed, so released, with the store).
  void HoldLock(int fd) { lock_fd_ = fd; }
  // Called for every driver job, in order: its journal number and whether its end is journaled.
  void Track(uint32_t job, uint32_t number, bool end_written);
  void Reserve(size_t jobs) { jobs_.reserve(jobs); }
  // Streaming admission (RunOptions::next_input): a new job from the input stream, numbered on from
  // the last, journaled as it is admitted, in the place of a forgotten job when there is one
  // (Driver::Forget). Returns its index.
  uint32_t Admit(driver::Driver& d, uint32_t pipeline, std::string input, double now, const std::string& prefix);
  // True when jobs come from RunOptions::next_input as the run needs them (no journal, or a journal
  // without earlier jobs); false when AddJobs took them all at once (a resume, which matches every
  // input to an earlier job).
  bool streaming() const { return streaming_; }
  // From now on jobs come from the input stream, numbered on from `next_number`.
  void set_streaming(uint32_t next_number = 0) {
    streaming_ = true;
    next_number_ = next_number;
  }
  // Where every attempt recorded from now on is drawn as it ends (--trace), or nullptr.
  void SetTrace(TraceWriter* trace) { trace_ = trace; }
  void Append(const journal::Encoder& e) {
    if (writer_) Check(writer_->Append(e.data()));
  }
  // Called once, from any thread (the journal's writer, the driver's, the limiter's under its
  // lock), when the journal cannot keep a record: a write or sync error, or a record over the
  // journal's limit. The run must stop: what is not journaled is lost to a resumed run (money
  // spent above all). `f` must not block on the runtime's or the limiter's locks.
  void OnFailure(std::function<void(const Status&)> f);
  void JobChanged(uint32_t job) override;
  void AttemptRecorded(uint32_t job, const AttemptReport& attempt) override;
  Status Flush() { return writer_ ? writer_->Flush() : Status::Ok(); }
  bool journaling() const { return writer_ != nullptr; }
  journal::WriterStats stats() const { return writer_ ? writer_->stats() : journal::WriterStats{}; }
  // Jobs written to jobs.jsonl whose detail may now be released (Driver::ReleaseDetail).
  std::vector<uint32_t>& released() { return released_; }
  // The LLM usage of released jobs (their results are gone from the final report), and of the
  // jobs a resume skipped without restoring them.
  const rates::LlmUsage& released_llm() const { return released_llm_; }
  void AddReleasedLlm(const rates::LlmUsage& u) { released_llm_.Add(u); }
  // What LLM requests of earlier runs of this output folder cost (the journal's `spent` records;
  // 0 without a journal, after --rerun all, or for a new folder): where the budget starts.
  double spent_before() const { return spent_before_; }
  void set_spent_before(double usd) { spent_before_ = usd; }
  // Journals one LLM request's cost (thread-safe; the run's limiter calls it as requests settle).
  void AppendSpent(double usd) {
    if (!writer_) return;
    journal::Encoder e;
    journal::EncodeSpent(usd, &e);
    Check(writer_->Append(e.data()));
  }
  // Journals a step's note (ParkContext::note) and waits until it is on disk. Thread-safe.
  bool AppendNote(const std::string& step, const Json& note) {
    if (!writer_) return false;
    journal::Encoder e;
    journal::EncodeNote(step, note.dump(), &e);
    if (!writer_->Append(e.data()).ok()) return false;
    return writer_->Flush().ok();
  }
  // The notes of earlier runs, by step name (Step::RestoreNotes).
  std::map<std::string, std::vector<std::string>>& past_notes() { return past_notes_; }

 private:
  struct PerJob {
    uint32_t number = 0;
    int16_t ok_step = -1;   // a step succeeded; its result is written at the next JobChanged
    bool end_written = false;
    bool lined = false;     // its line in jobs.jsonl is current
  };
  int StepIndex(const std::string& name) const;
  void Check(const Status& st);

  std::mutex failure_mu_;
  std::function<void(const Status&)> on_failure_;  // GUARDED_BY(failure_mu_)
  Status first_failure_;                            // GUARDED_BY(failure_mu_)

  const driver::Driver& d_;
  std::unique_ptr<journal::Writer> writer_;
  std::vector<std::string> names_;
  std::vector<PerJob> jobs_;
  JobLines* lines_;
  TraceWriter* trace_ = nullptr;
  bool release_;
  bool streaming_ = false;
  uint32_t next_number_ = 0;  // streaming: the next job's number (its id's suffix)
  int lock_fd_ = -1;
  std::vector<uint32_t> released_;
  rates::LlmUsage released_llm_;
  double spent_before_ = 0;
  std::map<std::string, std::vector<std::string>> past_notes_;
  journal::Encoder e_, end_, added_;
  std::string held_;  // a succeeded attempt, written together with its step's result
};

// Adds the run's jobs to `d` (pipeline `pipeline`): fresh (ids job_prefix + position) without a
// journal; with one (options.journal), restored from OUT/.baton/journal as README.md "Resume"
// says. The store (journal and jobs.jsonl) is attached to `d`. `notices`: lines for the user (what resumed, what
// changed, what was dropped). An error (one line) when the output folder cannot be locked or the
// journal cannot be read or written.
Result<std::unique_ptr<JournalStore>> AddJobs(driver::Driver& d, uint32_t pipeline, const PipelineSpec& spec,
                                              const driver::StepList& steps, const RunOptions& options,
                                              const std::vector<std::filesystem::path>& node_workdirs,
                                              JobLines* lines, std::vector<std::string>* notices);

}  // namespace baton::runtime
