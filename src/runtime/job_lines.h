// OUT/jobs.jsonl: one line per job as it ends (the job object of docs/schema), written as the run
// goes: every job of a run is there, in the order they ended, not in memory. A job that ends
// again (retried while the run is live) gets a new line; its last line counts. summary.json
// copies only the failed jobs' lines, when the run ends.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
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

  // Truncates; with `keep`, appends to what earlier runs wrote instead (a resume: the lines of
  // the jobs it skips stay where they are), after cutting a torn last line (a kill mid-write).
  // A no-op when already open.
  Status Open(const std::filesystem::path& file, bool keep = false);
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
  // Truncates, unless `keep` (a resume). A no-op when already open.
  Status OpenIndex(const std::filesystem::path& file, bool keep = false);
  // Records that `job`'s line (just written) is job number `number`'s.
  void Index(uint32_t number, uint32_t job);
  // Empties the file and the index (a resume that found nothing to resume after all).
  Status Reset();
  // Whether job number `number` has a whole line in the file as it was opened with `keep` (the
  // index read through a 1 MiB window: numbers are asked in about increasing order). For a
  // resume, before this run writes anything.
  bool Kept(uint32_t number);
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
  uint64_t kept_bytes_ = 0;  // the whole lines earlier runs left (Open with keep)
  uint64_t window_at_ = 0;   // Kept's window into the index
  std::string window_;
};

}  // namespace baton::runtime
