#include "journal/records.h"

#include <fstream>

#include <fmt/format.h>

namespace baton::journal {

namespace {

uint64_t Fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

uint64_t InputHash(std::string_view input) { return std::hash<std::string_view>{}(input); }

std::vector<StepPrint> Fingerprint(const PipelineSpec& pipeline) {
  std::vector<StepPrint> out;
  for (const auto& s : pipeline.steps) {
    uint64_t h = Fnv1a(s.uses);
    h = Fnv1a("\x1f", h);
    h = Fnv1a(s.with.dump(), h);  // object keys are sorted: the same `with` gives the same text
    out.push_back({s.name, h});
  }
  return out;
}

void EncodeHeader(const std::string& version, const std::vector<StepPrint>& steps, const std::string& pipeline,
                  Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kHeader)).Str(version).U32(static_cast<uint32_t>(steps.size()));
  for (const auto& s : steps) e->Str(s.name).U64(s.fingerprint);
  e->Str(pipeline);
}

void EncodeJobAdded(uint32_t job, std::string_view id, std::string_view input, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kJobAdded)).U32(job).Str(id).Str(input);
}

void EncodeAttempt(uint32_t job, uint16_t step, uint16_t attempt, std::string_view status, std::string_view error,
                   std::string_view node, double start, double end, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kAttempt)).U32(job).U16(step).U16(attempt).Str(status).Str(error).Str(node);
  e->F64(start).F64(end);
}

void EncodeStepDone(uint32_t job, uint16_t step, std::string_view node, uint16_t attempt, double seconds,
                    std::string_view result, std::string_view main_output, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kStepDone)).U32(job).U16(step).Str(node).U16(attempt).F64(seconds);
  e->Str(result).Str(main_output);
}

void EncodeJobEnded(uint32_t job, End end, std::string_view error, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kJobEnded)).U32(job).U8(static_cast<uint8_t>(end)).Str(error);
}

void EncodeSpent(double usd, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kSpent)).F64(usd);
}

void EncodeNote(std::string_view step, std::string_view json, Encoder* e) {
  e->Clear();
  e->U8(static_cast<uint8_t>(Kind::kNote)).Str(step).Str(json);
}

uint16_t PastJob::NextStep() const {
  for (size_t s = 0; s < steps.size(); ++s)
    if (!steps[s].done) return static_cast<uint16_t>(s);
  return static_cast<uint16_t>(steps.size());
}

Change Compare(const std::vector<StepPrint>& before, const std::vector<StepPrint>& after) {
  Change c;
  for (size_t s = 0; s < after.size(); ++s) {
    if (s >= before.size()) {
      c.step = static_cast<int>(s);
      c.description = fmt::format("step '{}' added", after[s].name);
      return c;
    }
    if (before[s].name != after[s].name) {
      c.step = static_cast<int>(s);
      c.description = fmt::format("step {} is now '{}' (was '{}')", s + 1, after[s].name, before[s].name);
      return c;
    }
    if (before[s].fingerprint != after[s].fingerprint) {
      c.step = static_cast<int>(s);
      c.description = fmt::format("step '{}' changed (uses/with)", after[s].name);
      return c;
    }
  }
  if (before.size() > after.size()) {
    // Steps removed at the end: what ran stays valid, but a job is done only when its last
    // remaining step is; nothing to re-run.
    c.description = fmt::format("{} step{} removed at the end", before.size() - after.size(),
                                before.size() - after.size() == 1 ? "" : "s");
  }
  return c;
}

size_t Past::Invalidate(int step) {
  size_t touched = 0;
  if (settled > 0) settled_needed = true;  // a settled job's results from `step` on are gone too
  for (auto& jp : jobs) {
    if (!jp) continue;
    PastJob& j = *jp;
    bool cleared = false;
    for (size_t s = static_cast<size_t>(step); s < j.steps.size(); ++s)
      if (j.steps[s].done) {
        j.steps[s] = PastStep{};
        cleared = true;
      }
    // A succeeded job missing a step now runs it; a job that failed (or was cancelled) at or past
    // the changed step gets another go; one that failed before it stays failed.
    const bool revive = j.end == End::kSucceeded ? j.NextStep() < j.steps.size()
                                                 : j.end != End::kLive && j.NextStep() >= step;
    if (revive) {
      j.end = End::kLive;
      j.error.clear();
    }
    if (cleared || revive) ++touched;
  }
  return touched;
}

Change Past::Rebase(const std::vector<StepPrint>& now) {
  Change c = Compare(steps, now);
  for (auto& j : jobs)
    if (j) j->steps.resize(now.size());
  if (c.step >= 0) c.jobs_affected = Invalidate(c.step);
  steps = now;
  return c;
}

Result<Past> Replay(const std::filesystem::path& file, const ReplayOptions& options) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::filesystem::exists(file) ? Status::Unavailable(file.string() + ": cannot read journal")
                                                : Status::NotFound(file.string() + ": no journal");
  return Replay(in, file.string(), options);
}

Result<Past> Replay(std::istream& in, const std::string& file, const ReplayOptions& options) {
  Past past;
  Status bad;
  std::string why;  // what was wrong with a record that does not decode, when more can be said
  PastJob settled_job;  // a settled job's stand-in: known, but its records no longer apply (settled_needed)
  Status st = Read(
      in, file,
      [&](std::string_view payload) {
        if (!bad.ok()) return;
        Decoder d(payload);
        const auto kind = static_cast<Kind>(d.U8());
        auto job_at = [&](uint32_t j) -> PastJob* {
          if (j >= past.jobs.size()) return nullptr;
          if (!past.jobs[j]) {
            past.settled_needed = true;
            settled_job = PastJob{};
            settled_job.steps.resize(past.steps.size());
            return &settled_job;
          }
          return past.jobs[j].get();
        };
        auto step_at = [&](PastJob* j, uint16_t s) -> PastStep* {
          return j && s < j->steps.size() ? &j->steps[s] : nullptr;
        };
        switch (kind) {
          case Kind::kHeader: {
            std::string version(d.Str());
            // Bounded before anything is allocated: each step takes at least 12 bytes here.
            const uint32_t count = d.U32();
            if (!d.ok()) break;
            if (count > kMaxSteps || count > d.remaining() / 12) {
              why = fmt::format(": its header declares {} steps (at most {}, and {} bytes follow)", count, kMaxSteps,
                                d.remaining());
              break;
            }
            std::vector<StepPrint> steps(count);
            for (auto& s : steps) {
              s.name = d.Str();
              s.fingerprint = d.U64();
            }
            std::string name(d.Str());
            if (!d.ok()) break;
            past.pipeline = std::move(name);
            if (past.headers++ > 0) {
              Change c = past.Rebase(steps);
              if (c.step >= 0) past.changes.push_back(std::move(c));
            } else {
              past.steps = std::move(steps);
            }
            past.version = std::move(version);
            return;
          }
          case Kind::kJobAdded: {
            const uint32_t n = d.U32();
            auto j = std::make_unique<PastJob>();
            j->id = d.Str();
            j->input = d.Str();
            j->steps.resize(past.steps.size());
            if (!d.ok() || n != past.jobs.size()) break;
            past.input_hash.push_back(InputHash(j->input));
            past.jobs.push_back(std::move(j));
            return;
          }
          case Kind::kAttempt: {
            PastJob* j = job_at(d.U32());
            d.U16();
            if (!d.ok() || !j) break;
            ++past.attempts;
            if (j->end == End::kFailed || j->end == End::kCancelled) {  // retried: live again
              j->end = End::kLive;
              j->error.clear();
            }
            return;
          }
          case Kind::kStepDone: {
            PastJob* j = job_at(d.U32());
            PastStep* s = step_at(j, d.U16());
            PastStep v;
            v.done = true;
            v.node = d.Str();
            v.attempt = d.U16();
            v.seconds = d.F64();
            v.result = d.Str();
            v.main_output = d.Str();
            if (!d.ok() || !s) break;
            *s = std::move(v);
            return;
          }
          case Kind::kJobEnded: {
            const uint32_t n = d.U32();
            PastJob* j = job_at(n);
            const auto end = static_cast<End>(d.U8());
            std::string error(d.Str());
            if (!d.ok() || !j || end == End::kLive || end > End::kCancelled) break;
            j->end = end;
            j->error = std::move(error);
            if (end == End::kSucceeded && options.settle && past.jobs[n] && j->NextStep() >= j->steps.size() &&
                options.settle(n, *j)) {
              past.jobs[n].reset();
              ++past.settled;
            }
            return;
          }
          case Kind::kSpent: {
            const double usd = d.F64();
            if (!d.ok()) break;
            past.spent_usd += usd;
            return;
          }
          case Kind::kNote: {
            std::string step(d.Str());
            std::string json(d.Str());
            if (!d.ok()) break;
            past.notes[step].push_back(std::move(json));
            return;
          }
        }
        bad = Status::Invalid(fmt::format("{}: record {} does not decode (kind {}){}", file,
                                          past.read.records + 1, static_cast<int>(kind), why));
      },
      &past.read);
  if (!st.ok()) return st;
  if (!bad.ok()) return bad;
  return past;
}

}  // namespace baton::journal
