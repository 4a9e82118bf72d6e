// Runtime: runs a pipeline over many inputs in one process, on this machine or on virtual local
// nodes described by a cluster file (the embedded backend of docs/design.md, "Architecture").
//
//   baton::RegisterBuiltinSteps();
//   auto pipeline = baton::LoadPipeline("examples/seed-demo.yaml");      // Result<PipelineSpec>
//   auto cluster = baton::LoadCluster("examples/clusters/seed-node.yaml");  // Result<ClusterSpec>
//   if (!pipeline.ok()) return Fail(pipeline.error());  // one line naming file, line and key
//   baton::RunOptions opts;
//   opts.inputs = {"", "", "", ""};            // four jobs
//   auto runtime = baton::Runtime::Create(*pipeline, *cluster, opts);  // validates
//   if (!runtime.ok()) return Fail(runtime.error());  // one line: a step no node can run, ...
//   const baton::RunReport& report = (*runtime)->Run();  // blocks until every job ended
//
// One driver thread owns the scheduling core; attempts run on a pool of worker threads (built-in
// steps in-process, `command` steps as subprocesses). Every state change is an Event delivered to
// the sinks on the driver thread; logs, the progress line, the trace, the summary and the
// dashboard are all built from events. RequestStop() and CancelJob() may be called from any
// thread; Snapshot() too.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// Events, reports and inputs have their own headers (shared with the cluster backend and the
// driver kit); this header includes them so that code written against it alone still compiles.
#include "baton/events.h"
#include "baton/inputs.h"
#include "baton/pipeline.h"
#include "baton/report.h"
#include "baton/step.h"

namespace baton {

class Clock;  // src/util/clock.h

struct RunOptions {
  std::vector<std::string> inputs;  // one job per entry ("" for --jobs N)
  // Streaming admission (what `baton run` uses; `inputs` is then empty): the next input, false at
  // the end. The run reads it as its admission window has room, so a job not yet admitted costs
  // nothing; with keep_finished false a succeeded or cancelled job leaves memory once its line is
  // in OUT/jobs.jsonl and its place goes to the next job, so memory follows the window, not the
  // number of jobs. Called on the driver thread. A resume (a journal with earlier jobs) reads the
  // stream whole first, to match each input to its earlier job.
  std::function<bool(std::string* input)> next_input;
  // Live jobs (admitted, not ended) the run holds at most while streaming; 0: 4096, or four per
  // CPU slot of the cluster when that is more.
  size_t admit_window = 0;
  std::filesystem::path out = "out";
  std::filesystem::path trace;      // "" = no trace file
  using LogFormat = baton::LogFormat;  // baton/events.h
  LogFormat log_format = LogFormat::kText;
  bool progress_line = false;       // live line (for terminals)
  FILE* log_stream = stderr;
  std::string job_prefix = "job-";
  double cancel_grace = 10;         // seconds a cancelled attempt may take before it is abandoned
  const Clock* clock = nullptr;     // time source (tests pass a FakeClock); null: the real clock
  // The run journal, OUT/.baton/journal (off by default here; `baton run` turns it on): every
  // attempt, step result and job end, written with group commit. With a journal from an earlier
  // run in `out`, the run resumes: succeeded jobs are skipped, others continue at their first
  // unfinished step, failed ones stay failed unless `rerun` says otherwise, inputs keep their ids.
  bool journal = false;
  // One run at a time per output folder, journal or not: the Runtime holds an exclusive lock on
  // OUT/.baton/lock from its creation to its end, and Create fails, naming the folder and the
  // holder's pid, while another Runtime (this process or another) holds it. false only for a
  // Runtime that will never Run (`baton validate`), which then writes nothing.
  bool lock_out = true;
  enum class Rerun { kNone, kFailed, kAll } rerun = Rerun::kNone;  // kAll: the old journal is moved aside
  bool journal_sync = true;         // fdatasync each group commit (false: benchmarks of the CPU cost)
  // Every job's line goes to OUT/jobs.jsonl as it ends; summary.json holds counts and the failed
  // jobs. false: a succeeded or cancelled job's attempts and results then leave memory
  // (JobDetail reads them back from its line), and Run()'s report lists only the failed jobs
  // (its counts cover every job), so memory does not grow with finished jobs' detail.
  // `baton run` sets false (its trace is written as attempts end).
  bool keep_finished = true;
  // Keep every job's node work folders (OUT/nodes/<node>/<job>/). By default a succeeded job's
  // are removed when it ends (its deliverables are in OUT/<job>/); failed and cancelled jobs'
  // stay for debugging.
  bool keep_work = false;
};

class Runtime {
 public:
  // Validates the pipeline against the registry and the nodes (unknown steps, bad `with`,
  // a step no node can run, an unreadable journal): the runtime, or an error with one line naming
  // the problem. The only way to make a Runtime; nothing is thrown out of it. (A program that
  // treats a bad pipeline as fatal writes `Runtime::Create(...).value()`: an error aborts, printed.)
  static Result<std::unique_ptr<Runtime>> Create(PipelineSpec pipeline, ClusterSpec cluster, RunOptions options,
                                                 StepRegistry& registry = StepRegistry::Global());
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  void AddSink(std::shared_ptr<EventSink> sink);  // REQUIRES: before Run
  // Blocks until every job ended (or Stop). The report stays owned by the Runtime, which keeps
  // serving Snapshot()/JobDetail() from it after the run.
  const RunReport& Run();
  void RequestStop();                              // Ctrl-C: no new attempts, running ones end
  bool CancelJob(const std::string& job_id);       // false when unknown or already ended
  // Gives a failed job another go from its failed step while the run is live; false otherwise.
  bool RetryJob(const std::string& job_id);
  // One job: as in Snapshot() plus every attempt (node, times, status, error, gpus) and its
  // results (small JSON). Null JSON when unknown.
  Json JobDetail(const std::string& job_id) const;
  // The output folder and the node work folders, for serving reports and logs.
  const RunOptions& options() const;
  // What Create found in the journal, for the user: resumed jobs, a changed pipeline,
  // a dropped journal tail. Empty without a journal or on a first run.
  const std::vector<std::string>& notices() const;
  std::filesystem::path JobWorkdir(const std::string& job_id, const std::string& node) const;
  // Jobs (steps, states, wait reasons, attempts), nodes (resources used/total, labels) as JSON.
  Json Snapshot() const;
  // What a view of a large run needs without a JSON object per job: {"pipeline", "time", "total",
  // "counts": {state: n}, "steps": [{"step", "state", "jobs"}] (unfinished jobs by the step they
  // are at), "nodes"}; and {"total", "jobs": [...]} for one page (jobs as in Snapshot()).
  Json Overview() const;
  Json JobsPage(const JobsQuery& query) const;

 private:
  Runtime();
  Status Load(PipelineSpec pipeline, ClusterSpec cluster, RunOptions options, StepRegistry& registry);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton
