// OUT/jobs.jsonl: one line per job as it ends (the job object of docs/schema), written as the run
// goes: every job of a run is there, in the order they ended, not in memory. A job that ends
// again (retried while the run is live) gets a new line; its last line counts. summary.json
// copies only the failed jobs' lines, when the run ends.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "baton/runtime.h"
#include "baton/status.h"

namespace baton::runtime {

class JobLines {
 public:
  JobLines() = default;
  ~JobLines();
  JobLines(const JobLines&) = delete;
  JobLines& operator=(const JobLines&) = delete;

  Status Open(const std::filesystem::path& file);  // truncates; a no-op when already open
  bool is_open() const { return fd_ >= 0; }
  // Appends `job`'s line (buffered).
  void Write(uint32_t job, const JobReport& report, const Json& results);
  bool Has(uint32_t job) const { return job < offset_.size() && offset_[job] != kNone; }
  // A new job took `job`'s place (Driver::Forget): its old line stays in the file, unindexed.
  void Drop(uint32_t job) {
    if (job < offset_.size()) offset_[job] = kNone;
  }
  // `job`'s last line (without the newline), appended to `out`. REQUIRES: Has(job).
  Status Read(uint32_t job, std::string* out);
  // The index by job number (its id's suffix): per number, 12 bytes in `file` (where its last line
  // starts, u64, and its length, u32; zeros: no line), written as lines are flushed, so a job that
  // left memory is read back by its number from disk (Runtime::JobDetail, JobsPage).
  Status OpenIndex(const std::filesystem::path& file);  // truncates; a no-op when already open
  // Records that `job`'s line (just written) is job number `number`'s.
  void Index(uint32_t number, uint32_t job);
  // Appends a line kept from an earlier run (EarlierLines) as job number `number`'s, indexed.
  void Copy(uint32_t number, std::string_view line);
  // Number `number`'s last line, appended to `out`; NotFound when it has none.
  Status ReadNumber(uint32_t number, std::string* out);
  Status Flush();

 private:
  static constexpr uint64_t kNone = UINT64_MAX;
  struct Entry {
    uint32_t number;
    uint64_t offset;
    uint32_t length;
  };
  Status ReadAt(uint64_t at, size_t n, std::string* out);
  void FlushIndex();
  int fd_ = -1;
  int index_fd_ = -1;
  std::vector<Entry> pending_;  // index entries not yet in the index file
  std::filesystem::path file_;
  std::string buf_;
  uint64_t flushed_ = 0;          // bytes in the file
  std::vector<uint64_t> offset_;  // per job: where its last line starts
  std::vector<uint32_t> length_;
  Status error_;
};

// The jobs.jsonl and jobs.index of the runs before this one, moved aside while a resume copies the
// lines of the jobs it skips (JobLines::Copy): a succeeded job of a large journal then needs no
// memory (journal::ReplayOptions::settle). Reads go through a 1 MiB window (lines are read roughly
// in the order they were written). The files are removed when the copy is complete (Done); a
// resume that finds them still there (it was killed while copying) takes them again, not the
// half-written jobs.jsonl, whose jobs it restores from the journal instead.
class EarlierLines {
 public:
  EarlierLines() = default;
  ~EarlierLines();
  EarlierLines(const EarlierLines&) = delete;
  EarlierLines& operator=(const EarlierLines&) = delete;
  // Opens OUT/jobs.jsonl and OUT/.baton/jobs.index (or, when a resume killed while copying left
  // them in OUT/.baton as jobs.*.before, those). False when there are none.
  bool Open(const std::filesystem::path& out);
  // Moves them aside (OUT/.baton/jobs.*.before; open, they stay readable) before this run writes
  // its own.
  Status MoveAside();
  // Whether job number `number` has a line there.
  bool Has(uint32_t number);
  // Its last line (without the newline).
  Status Read(uint32_t number, std::string* out);
  // Removes the files (call once the copied lines are flushed).
  void Done();

 private:
  struct Window {
    int fd = -1;
    uint64_t start = 0;
    std::string bytes;
    bool Get(uint64_t at, size_t n, std::string* out);
  };
  bool Entry(uint32_t number, uint64_t* at, uint32_t* length);
  Window lines_, index_;
  std::filesystem::path lines_file_, index_file_;
  bool in_place_ = false;
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> moves_;  // MoveAside's renames
};

}  // namespace baton::runtime
