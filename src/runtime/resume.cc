#include "runtime/resume.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#ifndef BATON_VERSION
#define BATON_VERSION "dev"
#endif

namespace baton::runtime {

namespace {

journal::End EndOf(driver::JobEnd e) {
  switch (e) {
    case driver::JobEnd::kSucceeded: return journal::End::kSucceeded;
    case driver::JobEnd::kFailed: return journal::End::kFailed;
    case driver::JobEnd::kCancelled: return journal::End::kCancelled;
    default: return journal::End::kLive;
  }
}

std::filesystem::path FreeName(const std::filesystem::path& base) {
  for (int n = 1;; ++n) {
    std::filesystem::path p = base.string() + "." + std::to_string(n);
    if (!std::filesystem::exists(p)) return p;
  }
}

// One run at a time per output folder: an exclusive lock on OUT/.baton/lock, held for the run.
// Returns the locked descriptor, or an error naming the holder when another run has it.
Result<int> LockOut(const std::filesystem::path& out) {
  const auto dir = out / ".baton";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable(dir.string() + ": cannot create: " + ec.message());
  const auto file = dir / "lock";
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Unavailable(file.string() + ": cannot open: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    std::ifstream(file) >> holder;
    ::close(fd);
    return Status::FailedPrecondition(
        fmt::format("{}: another baton run{} is using this output folder; wait for it or use another --out",
                    out.string(), holder.empty() ? "" : " (pid " + holder + ")"));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) < 0) {
    // The pid is only for the message above; the lock is what counts.
  }
  return fd;
}

}  // namespace

JournalStore::~JournalStore() {
  writer_.reset();  // flushed before the lock goes
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void JournalStore::OnFailure(std::function<void(const Status&)> f) {
  Status earlier;  // a failure while the run's jobs were added, before anyone listened
  {
    std::lock_guard lock(failure_mu_);
    on_failure_ = f;
    earlier = first_failure_;
  }
  if (writer_) writer_->OnError([this](const Status& st) { Check(st); });
  if (!earlier.ok() && f) f(earlier);
}

void JournalStore::Check(const Status& st) {
  if (st.ok()) return;
  std::function<void(const Status&)> tell;
  {
    std::lock_guard lock(failure_mu_);
    if (!first_failure_.ok()) return;
    first_failure_ = st;
    tell = on_failure_;
  }
  if (tell) tell(st);
}

uint32_t JournalStore::Admit(driver::Driver& d, uint32_t pipeline, std::string input, double now,
                             const std::string& prefix) {
  const uint32_t number = next_number_++;
  std::string id = prefix + std::to_string(number);
  if (writer_) {
    journal::EncodeJobAdded(number, id, input, &added_);
    Check(writer_->Append(added_.data()));
  }
  const uint32_t job = d.NextIndex();
  Track(job, number, false);  // before Submit, which tells the store of the new job
  lines_->Drop(job);
  [[maybe_unused]] const uint32_t got = d.Submit(std::move(id), std::move(input), pipeline, now, true);
  BATON_ASSERT(got == job, "Submit takes the index NextIndex said");
  return job;
}

void JournalStore::Track(uint32_t job, uint32_t number, bool end_written) {
  if (jobs_.size() <= job) jobs_.resize(job + 1);  // amortized; AddJobs reserves the run's count
  jobs_[job] = {number, -1, end_written, false};
}

int JournalStore::StepIndex(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return static_cast<int>(i);
  return -1;
}

void JournalStore::AttemptRecorded(uint32_t job, const AttemptReport& a) {
  if (trace_) trace_->Add(d_.job(job).report.id, a);
  if (!writer_) return;
  PerJob& p = jobs_[job];
  const int step = StepIndex(a.step);
  journal::EncodeAttempt(p.number, static_cast<uint16_t>(step), static_cast<uint16_t>(a.attempt), a.status, a.error,
                         a.node, a.start, a.end, &e_);
  if (a.status == "ok") {
    held_ = e_.data();
    p.ok_step = static_cast<int16_t>(step);
  } else {
    Check(writer_->Append(e_.data()));
  }
}

void JournalStore::JobChanged(uint32_t job) {
  PerJob& p = jobs_[job];
  const driver::JobRecord& j = d_.job(job);
  if (j.end != driver::JobEnd::kLive && !p.lined) {
    lines_->Write(job, j.report, *j.results);
    lines_->Index(p.number, job);
    p.lined = true;
    if (release_ && j.end != driver::JobEnd::kFailed) {  // a failed job keeps what a retry needs
      released_llm_.Add(rates::JobLlmUsage(*j.results));
      released_.push_back(job);
    }
  } else if (j.end == driver::JobEnd::kLive) {
    p.lined = false;
  }
  if (!writer_) return;
  // What changed goes out in one append: a step's attempt, its result and the job's end are on
  // disk together or not at all.
  std::string_view out[3];
  size_t n = 0;
  if (p.ok_step >= 0) {
    // Finish has stored the result by the time it tells the store of the change.
    const std::string& name = names_[p.ok_step];
    const auto it = j.results->find(name);
    const std::string result =
        it == j.results->end() ? "null" : it->dump(-1, ' ', false, Json::error_handler_t::replace);
    const StepRun* run = j.history->empty() ? nullptr : &j.history->back();
    journal::EncodeStepDone(p.number, static_cast<uint16_t>(p.ok_step), run ? run->node : "",
                            static_cast<uint16_t>(run ? run->attempt : 1), run ? run->seconds : 0, result,
                            j.main_output, &e_);
    out[n++] = held_;
    out[n++] = e_.data();
    p.ok_step = -1;
  }
  if (j.end != driver::JobEnd::kLive && !p.end_written &&
      !(j.end == driver::JobEnd::kCancelled && j.report.error == kInterrupted)) {  // interrupted: resumes next run
    journal::EncodeJobEnded(p.number, EndOf(j.end), j.report.error, &end_);
    out[n++] = end_.data();
    p.end_written = true;
  } else if (j.end == driver::JobEnd::kLive && p.end_written) {
    p.end_written = false;  // retried
  }
  if (n > 0) Check(writer_->Append(out, n));
}

namespace {

// OUT's lock, closed unless handed to the store.
struct OutLock {
  int fd = -1;
  ~OutLock() {
    if (fd >= 0) ::close(fd);
  }
  int Release() { return std::exchange(fd, -1); }
};

// How a resume treated the earlier jobs, for its notice.
struct ResumeCounts {
  size_t skipped = 0, kept_failed = 0, continued = 0, rerun = 0, added = 0, left_out = 0;
  bool stream_goes_on = false;  // every earlier job matched before the stream ended
};

// Earlier jobs by input, for matching a resume's inputs to them: the n-th input with a given text
// is the n-th earlier job whose input had that text. The common resume gives the same inputs in
// the same order: while every job before it is taken, an input whose hash is the next job's takes
// it in O(1), and nothing more is built. Otherwise (an input inserted, removed or moved) the job
// numbers sorted by (input hash, number) are built once, 4 bytes per earlier job, and searched;
// within one hash the jobs are taken in number order, a cursor per repeated input.
class PastIndex {
 public:
  explicit PastIndex(const std::vector<uint64_t>& hash) : hash_(hash), taken_(hash.size()) {}
  // The earliest job with this hash not taken yet (taken now), or -1.
  int64_t Take(uint64_t h) {
    const uint32_t next = last_ + 1;
    if (next == untaken_ && next < hash_.size() && hash_[next] == h) return Mark(next);
    if (order_.empty()) Build();
    auto cursor = cursors_.find(h);
    size_t at;
    if (cursor != cursors_.end()) {
      at = cursor->second;
    } else {
      const auto it =
          std::lower_bound(order_.begin(), order_.end(), h, [&](uint32_t n, uint64_t v) { return hash_[n] < v; });
      if (it == order_.end() || hash_[*it] != h) return -1;  // a new input: nothing kept for it
      at = static_cast<size_t>(it - order_.begin());
    }
    while (at < order_.size() && hash_[order_[at]] == h && taken_[order_[at]]) ++at;
    if (at >= order_.size() || hash_[order_[at]] != h) return -1;
    const bool repeated = at + 1 < order_.size() && hash_[order_[at + 1]] == h;
    if (repeated || cursor != cursors_.end()) cursors_[h] = at + 1;
    return Mark(order_[at]);
  }

 private:
  void Build() {
    std::vector<std::pair<uint64_t, uint32_t>> sorted(hash_.size());
    for (uint32_t n = 0; n < hash_.size(); ++n) sorted[n] = {hash_[n], n};
    std::sort(sorted.begin(), sorted.end());
    order_.resize(sorted.size());
    for (size_t i = 0; i < sorted.size(); ++i) order_[i] = sorted[i].second;
  }
  int64_t Mark(uint32_t n) {
    taken_[n] = true;
    last_ = n;
    while (untaken_ < taken_.size() && taken_[untaken_]) ++untaken_;
    return n;
  }
  const std::vector<uint64_t>& hash_;
  std::vector<bool> taken_;  // by job number
  uint32_t last_ = UINT32_MAX, untaken_ = 0;  // the job taken last; the first not taken
  std::vector<uint32_t> order_;               // job numbers by (hash, number), built when needed
  std::unordered_map<uint64_t, size_t> cursors_;  // repeated inputs: where in `order_` to go on
};

// AddJobs's parts, over what they share. Flow: lock OUT -> without a journal, submit (or stream)
// the inputs -> with one, read the past (ReadPast: replay, another pipeline's journal set aside,
// the pipeline's changes) -> open the journal (OpenJournal) -> match every input to an earlier job
// and restore it, or submit it as new (Match, RestoreOf) -> say what the resume did.
struct Adder {
  driver::Driver& d;
  uint32_t pipeline;
  const PipelineSpec& spec;
  const driver::StepList& steps;
  const RunOptions& options;
  const std::vector<std::filesystem::path>& node_workdirs;
  JobLines* lines;
  std::vector<std::string>* notices;
  std::vector<std::string> names;

  std::unique_ptr<JournalStore> Unjournaled(OutLock& lock) {
    auto store = std::make_unique<JournalStore>(d, nullptr, names, lines, !options.keep_finished);
    store->HoldLock(lock.Release());
    if (options.next_input) {  // jobs come as the run admits them (Runtime)
      store->set_streaming();
      return store;
    }
    store->Reserve(options.inputs.size());
    for (size_t i = 0; i < options.inputs.size(); ++i) {  // all ready at 0; Snapshot() sees them before Run()
      const uint32_t job = d.Submit(options.job_prefix + std::to_string(i), options.inputs[i], pipeline, 0, false);
      store->Track(job, job, false);
    }
    return store;
  }

  // The journal's past, rebased on today's pipeline; `resumed` false when there is none to follow.
  // With `settle`, a job that succeeded and whose line earlier runs left in jobs.jsonl (opened
  // with keep) is settled: dropped from the replay, its LLM usage added to `settled_llm`.
  Result<journal::Past> ReadPast(const std::filesystem::path& file, const std::vector<journal::StepPrint>& prints,
                                 bool settle, rates::LlmUsage* settled_llm, bool* resumed) {
    if (options.rerun == RunOptions::Rerun::kAll && std::filesystem::exists(file)) {
      const auto aside = FreeName(file);
      std::filesystem::rename(file, aside);
      notices->push_back(fmt::format("--rerun all: every job starts over; the old journal is now {}", aside.string()));
    }
    journal::ReplayOptions settling;
    if (settle)
      settling.settle = [&](uint32_t number, const journal::PastJob& job) {
        if (!lines->Kept(number)) return false;  // its line was lost (a kill before it was written)
        for (const auto& s : job.steps)
          if (s.result.find("\"usage\"") != std::string::npos) {
            Json results = Json::object();
            for (size_t k = 0; k < job.steps.size() && k < spec.steps.size(); ++k)
              results[spec.steps[k].name] = Json::parse(job.steps[k].result, nullptr, false);
            settled_llm->Add(rates::JobLlmUsage(results));
            break;
          }
        return true;
      };
    // A settled job needed after all (a record for it, or a pipeline change that revives it):
    // replayed again, whole.
    auto replay = [&](bool settle) {
      *settled_llm = {};
      auto r = journal::Replay(file, settle ? settling : journal::ReplayOptions{});
      if (settle && r.ok() && r->settled_needed) return journal::Replay(file);
      return r;
    };
    journal::Past past;
    *resumed = false;
    if (auto r = replay(settle); r.ok()) {
      past = std::move(*r);
      *resumed = true;
    } else if (r.status().code() != StatusCode::kNotFound) {
      return Status::Invalid(r.error() + " (move it aside or use --rerun all)");
    }
    if (*resumed && past.headers > 0 && past.pipeline != spec.name) {
      // Another pipeline's run: nothing in it applies to this one.
      const auto aside = FreeName(file);
      std::filesystem::rename(file, aside);
      notices->push_back(
          fmt::format("{} holds a run of pipeline '{}', not '{}': starting afresh; its journal is now {}",
                      options.out.string(), past.pipeline, spec.name, aside.string()));
      past = journal::Past{};
      *resumed = false;
    }
    if (past.read.dropped_records > 0 || past.read.dropped_bytes > 0)
      notices->push_back(fmt::format(
          "journal {}: {}; dropped {} record{} ({} bytes) after the last good one, kept in {}.dropped", file.string(),
          past.read.why, past.read.dropped_records, past.read.dropped_records == 1 ? "" : "s", past.read.dropped_bytes,
          file.string()));
    if (*resumed && past.headers > 0) {
      if (past.settled > 0 && journal::Compare(past.steps, prints).step >= 0) {
        auto whole = replay(false);
        if (!whole.ok()) return Status::Invalid(whole.error() + " (move it aside or use --rerun all)");
        past = std::move(*whole);
      }
      const journal::Change c = past.Rebase(prints);
      if (c.step >= 0)
        notices->push_back(fmt::format("pipeline changed since the last run: {}; {} job{} re-run from it",
                                       c.description, c.jobs_affected, c.jobs_affected == 1 ? "" : "s"));
      else if (!c.description.empty())
        notices->push_back("pipeline changed since the last run: " + c.description);
    } else {
      past.steps = prints;
    }
    return past;
  }

  // The journal opened after its last good record, this run's header appended.
  Result<std::unique_ptr<JournalStore>> OpenJournal(const std::filesystem::path& file, const journal::Past& past,
                                                    bool resumed, const std::vector<journal::StepPrint>& prints,
                                                    OutLock& lock) {
    auto writer = journal::Writer::Open(file, resumed ? past.read.good_bytes : 0, options.journal_sync);
    if (!writer.ok()) return writer.status();
    auto store = std::make_unique<JournalStore>(d, std::move(*writer), names, lines, !options.keep_finished);
    store->HoldLock(lock.Release());
    store->set_spent_before(past.spent_usd);
    store->past_notes() = past.notes;
    if (past.spent_usd > 0)
      notices->push_back(fmt::format(
          "LLM requests of earlier runs in {} cost ${:.4f}{}", options.out.string(), past.spent_usd,
          spec.budget_usd > 0 ? fmt::format("; the budget of ${:.2f} counts them (${:.4f} left)", spec.budget_usd,
                                            std::max(0.0, spec.budget_usd - past.spent_usd))
                              : ""));
    journal::Encoder e;
    journal::EncodeHeader(BATON_VERSION, prints, spec.name, &e);
    store->Append(e);
    return store;
  }

  // An earlier job as the driver takes it back: its done steps' results and homes (a step whose
  // files left its node is re-run through lineage), and where it goes on from.
  driver::RestoredJob RestoreOf(const journal::PastJob& p, const std::string& input, ResumeCounts* counts,
                                bool* end_written) {
    const uint16_t n_steps = static_cast<uint16_t>(spec.steps.size());
    driver::RestoredJob r;
    r.id = p.id;
    r.input = input;
    r.pipeline = pipeline;
    const uint16_t next = p.NextStep();
    r.results = Json::object();
    r.homes.assign(n_steps, -1);
    for (uint16_t s = 0; s < n_steps && s < p.steps.size(); ++s) {
      const journal::PastStep& ps = p.steps[s];
      if (!ps.done) continue;
      r.results[spec.steps[s].name] = Json::parse(ps.result, nullptr, false);
      r.history.push_back({spec.steps[s].name, ps.node, ps.attempt, ps.seconds, {}});
      // Locality: the step's files must still be in its node's job folder, else lineage re-runs it.
      const int node = d.NodeIndex(ps.node);
      if (node >= 0 && (!steps[s]->NeedsWorkdir() || std::filesystem::exists(node_workdirs[node] / p.id)))
        r.homes[s] = node;
    }
    *end_written = false;
    if (next >= n_steps) {  // every step has its result
      r.phase = core::Phase::kSucceeded;
      r.step = static_cast<uint16_t>(n_steps - 1);
      *end_written = p.end == journal::End::kSucceeded;
      ++counts->skipped;
    } else if ((p.end == journal::End::kFailed || p.end == journal::End::kCancelled) &&
               options.rerun != RunOptions::Rerun::kFailed) {
      r.phase = p.end == journal::End::kFailed ? core::Phase::kFailed : core::Phase::kCancelled;
      r.step = next;
      r.error = p.error;
      *end_written = true;
      ++counts->kept_failed;
    } else {
      r.phase = core::Phase::kReady;
      r.step = next;
      if (p.end != journal::End::kLive) ++counts->rerun;
      else ++counts->continued;
    }
    return r;
  }

  // Every input matched to an earlier job (by its text and occurrence: PastIndex) and restored,
  // skipped (a settled job: its line stays in jobs.jsonl), or submitted as a new one. A stream is
  // read only until every earlier job has its input; the rest of it is admitted as the run goes
  // (JournalStore::set_streaming), so a resume holds the jobs in flight, not the run.
  ResumeCounts Match(JournalStore& store, journal::Past& past, bool resumed) {
    PastIndex index(past.input_hash);
    ResumeCounts counts;
    journal::Encoder e;
    uint32_t next_number = static_cast<uint32_t>(past.jobs.size());
    size_t position = 0, matched = 0, settled = 0;
    std::string input;
    auto next = [&](std::string* in) {
      if (options.next_input) return matched < past.jobs.size() && options.next_input(in);
      if (position >= options.inputs.size()) return false;
      *in = options.inputs[position++];
      return true;
    };
    while (next(&input)) {
      const int64_t number = index.Take(journal::InputHash(input));
      // A hash that matches a job whose input differs (a collision): the input is a new job.
      const bool same = number >= 0 && (!past.jobs[number] || past.jobs[number]->input == input);
      if (!same) {
        const uint32_t n = next_number++;
        const std::string id = options.job_prefix + std::to_string(n);
        const uint32_t job = d.Submit(id, input, pipeline, 0, false);
        store.Track(job, n, false);
        journal::EncodeJobAdded(n, id, input, &e);
        store.Append(e);
        if (resumed) ++counts.added;
        continue;
      }
      ++matched;
      if (!past.jobs[number]) {  // settled: succeeded, its line in jobs.jsonl
        ++counts.skipped;
        ++settled;
        continue;
      }
      journal::PastJob& p = *past.jobs[number];
      bool end_written = false;
      driver::RestoredJob r = RestoreOf(p, input, &counts, &end_written);
      const bool ended = r.phase != core::Phase::kReady;
      const uint32_t job = d.Restore(std::move(r), 0);
      store.Track(job, static_cast<uint32_t>(number), end_written);
      if (ended) {
        store.JobChanged(job);  // its line in jobs.jsonl; its end journaled if it was not
        for (uint32_t k : store.released()) d.ReleaseDetail(k);  // as they come: a large resume stays small
        store.released().clear();
      }
      past.jobs[number].reset();  // what was replayed for it is in the driver now
    }
    d.CountSettled(settled);
    counts.left_out = past.jobs.size() - matched;
    if (options.next_input) {
      store.set_streaming(next_number);
      counts.stream_goes_on = matched == past.jobs.size();
    }
    return counts;
  }

  void SayResumed(const std::filesystem::path& file, const ResumeCounts& c) {
    notices->push_back(fmt::format(
        "resuming from {}: {} job{} already succeeded (skipped), {} continue where they stopped, {} failed or "
        "cancelled job{} {}, {} new{}",
        file.string(), c.skipped, c.skipped == 1 ? "" : "s", c.continued, c.kept_failed + c.rerun,
        c.kept_failed + c.rerun == 1 ? "" : "s",
        options.rerun == RunOptions::Rerun::kFailed ? "re-run (--rerun failed)"
                                                    : "kept as they were (--rerun failed retries them)",
        c.added, c.stream_goes_on ? "; later inputs are new jobs, admitted as the run goes" : ""));
    if (c.left_out > 0) {
      const size_t gone = c.left_out;
      notices->push_back(
          fmt::format("{} job{} of earlier runs no longer in the inputs: left out", gone, gone == 1 ? "" : "s"));
    }
  }
};

}  // namespace

Result<std::unique_ptr<JournalStore>> AddJobs(driver::Driver& d, uint32_t pipeline, const PipelineSpec& spec,
                                              const driver::StepList& steps, const RunOptions& options,
                                              const std::vector<std::filesystem::path>& node_workdirs,
                                              JobLines* lines, std::vector<std::string>* notices) {
  Adder add{d, pipeline, spec, steps, options, node_workdirs, lines, notices, {}};
  for (const auto& s : spec.steps) add.names.push_back(s.name);
  d.Reserve(d.job_count() + options.inputs.size());
  // Before anything reads or writes OUT: without a journal a run still truncates jobs.jsonl, removes
  // work folders and writes reports there, so the lock does not depend on journaling.
  OutLock lock;
  if (options.lock_out || options.journal) {
    Result<int> locked = LockOut(options.out);
    if (!locked.ok()) return locked.status();
    lock.fd = *locked;
  }
  if (!options.journal) {
    std::unique_ptr<JournalStore> store = add.Unjournaled(lock);
    d.SetStore(store.get());
    return store;
  }
  const std::filesystem::path file = options.out / ".baton" / "journal";
  if (spec.steps.size() > journal::kMaxSteps)
    return Status::Invalid(
        fmt::format("pipeline '{}' has {} steps; a journaled run takes at most {} (or use --no-journal)", spec.name,
                    spec.steps.size(), journal::kMaxSteps));
  const auto prints = journal::Fingerprint(spec);
  // A run whose jobs stream and leave memory (baton run) settles the succeeded jobs of a large
  // journal: skipped without being restored, their lines left where they are in jobs.jsonl, which
  // this run appends to. (One that lists every job, `baton run --dashboard`, restores them all.)
  const bool settle = options.next_input && !options.keep_finished && options.rerun != RunOptions::Rerun::kAll &&
                      std::filesystem::exists(file);
  if (settle) {
    if (Status st = lines->Open(options.out / "jobs.jsonl", true); !st.ok()) return st;
    if (Status st = lines->OpenIndex(options.out / ".baton" / "jobs.index", true); !st.ok()) return st;
  }
  bool resumed = false;
  rates::LlmUsage settled_llm;
  Result<journal::Past> past = add.ReadPast(file, prints, settle, &settled_llm, &resumed);
  if (!past.ok()) return past.status();
  if (settle && past->jobs.empty())  // another pipeline's journal, set aside: this run starts afresh
    if (Status st = lines->Reset(); !st.ok()) return st;
  Result<std::unique_ptr<JournalStore>> opened = add.OpenJournal(file, *past, resumed, prints, lock);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<JournalStore> store = std::move(*opened);
  store->AddReleasedLlm(settled_llm);
  const ResumeCounts counts = add.Match(*store, *past, resumed);
  if (resumed && !(options.next_input && past->jobs.empty())) add.SayResumed(file, counts);
  d.SetStore(store.get());
  return store;
}

}  // namespace baton::runtime
