#include "runtime/job_lines.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/report.h"

namespace baton::runtime {

JobLines::~JobLines() {
  Flush().IgnoreError();
  if (fd_ >= 0) ::close(fd_);
  if (index_fd_ >= 0) ::close(index_fd_);
}

Status JobLines::OpenIndex(const std::filesystem::path& file, bool keep) {
  if (index_fd_ >= 0) return Status::Ok();
  index_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | (keep ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
  if (index_fd_ < 0) return Status::Unavailable(file.string() + ": cannot write: " + std::strerror(errno));
  return Status::Ok();
}

void JobLines::Index(uint32_t number, uint32_t job) {
  if (Has(job)) pending_.push_back({number, offset_[job], length_[job]});
}

// Runs of consecutive numbers (jobs end roughly in order) go out in one pwrite each.
void JobLines::FlushIndex() {
  if (index_fd_ < 0 || pending_.empty()) return;
  std::stable_sort(pending_.begin(), pending_.end(),
                   [](const Entry& a, const Entry& b) { return a.number < b.number; });
  std::string run;
  for (size_t i = 0; i < pending_.size();) {
    const uint32_t first = pending_[i].number;
    run.clear();
    uint32_t next = first;
    for (; i < pending_.size() && pending_[i].number <= next; ++i) {
      if (pending_[i].number < next) run.resize(run.size() - 12);  // a later line of the same job
      char rec[12];
      std::memcpy(rec, &pending_[i].offset, 8);
      std::memcpy(rec + 8, &pending_[i].length, 4);
      run.append(rec, 12);
      next = pending_[i].number + 1;
    }
    const ssize_t wrote = ::pwrite(index_fd_, run.data(), run.size(), static_cast<off_t>(first) * 12);
    if (wrote != static_cast<ssize_t>(run.size()) && error_.ok())
      error_ = Status::Unavailable(file_.string() + ": index write failed");
  }
  pending_.clear();
}

Status JobLines::ReadNumber(uint32_t number, std::string* out) {
  for (size_t i = pending_.size(); i-- > 0;)
    if (pending_[i].number == number) return ReadAt(pending_[i].offset, pending_[i].length, out);
  if (index_fd_ < 0) return Status::NotFound("no index");
  char rec[12];
  if (::pread(index_fd_, rec, 12, static_cast<off_t>(number) * 12) != 12) return Status::NotFound("no line");
  uint64_t at;
  uint32_t n;
  std::memcpy(&at, rec, 8);
  std::memcpy(&n, rec + 8, 4);
  if (n == 0) return Status::NotFound("no line");
  return ReadAt(at, n, out);
}

Status JobLines::Open(const std::filesystem::path& file, bool keep) {
  if (fd_ >= 0) return Status::Ok();
  file_ = file;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | (keep ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
  if (fd_ < 0) return error_ = Status::Unavailable(file.string() + ": cannot write: " + std::strerror(errno));
  if (!keep) return Status::Ok();
  // Back to the end of the last whole line: a torn one (never indexed) goes.
  const off_t size = ::lseek(fd_, 0, SEEK_END);
  uint64_t end = size > 0 ? static_cast<uint64_t>(size) : 0;
  char tail[4096];
  while (end > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(end, sizeof tail));
    if (::pread(fd_, tail, n, static_cast<off_t>(end - n)) != static_cast<ssize_t>(n)) {
      end = 0;
      break;
    }
    const void* nl = ::memrchr(tail, '\n', n);
    if (nl != nullptr) {
      end -= n - 1 - static_cast<size_t>(static_cast<const char*>(nl) - tail);
      break;
    }
    end -= n;
  }
  if (end != static_cast<uint64_t>(size) && ::ftruncate(fd_, static_cast<off_t>(end)) != 0)
    return error_ = Status::Unavailable(file.string() + ": cannot cut its torn last line: " + std::strerror(errno));
  if (::lseek(fd_, static_cast<off_t>(end), SEEK_SET) < 0)
    return error_ = Status::Unavailable(file.string() + ": cannot seek: " + std::strerror(errno));
  flushed_ = kept_bytes_ = end;
  return Status::Ok();
}

Status JobLines::Reset() {
  if ((fd_ >= 0 && (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) < 0)) ||
      (index_fd_ >= 0 && ::ftruncate(index_fd_, 0) != 0))
    return error_ = Status::Unavailable(file_.string() + ": cannot empty it: " + std::strerror(errno));
  flushed_ = kept_bytes_ = 0;
  window_.clear();
  return Status::Ok();
}

bool JobLines::Kept(uint32_t number) {
  constexpr size_t kWindow = 1u << 20;
  const uint64_t at = static_cast<uint64_t>(number) * 12;
  if (index_fd_ < 0) return false;
  if (at < window_at_ || at + 12 > window_at_ + window_.size()) {
    window_.resize(kWindow);
    const ssize_t got = ::pread(index_fd_, window_.data(), kWindow, static_cast<off_t>(at));
    window_.resize(got > 0 ? static_cast<size_t>(got) : 0);
    window_at_ = at;
    if (window_.size() < 12) return false;
  }
  uint64_t offset;
  uint32_t length;
  std::memcpy(&offset, window_.data() + (at - window_at_), 8);
  std::memcpy(&length, window_.data() + (at - window_at_) + 8, 4);
  return length > 0 && offset + length < kept_bytes_;  // the newline after it is there too
}

void JobLines::Write(uint32_t job, const JobReport& report, const Json& results) {
  if (job >= offset_.size()) {
    offset_.resize(job + 1, kNone);
    length_.resize(job + 1, 0);
  }
  const size_t start = buf_.size();
  AppendJobJson(report, results, &buf_);
  offset_[job] = flushed_ + start;
  length_[job] = static_cast<uint32_t>(buf_.size() - start);
  buf_.push_back('\n');
  if (buf_.size() >= (1u << 20)) Flush().IgnoreError();
}

Status JobLines::Flush() {
  if (fd_ < 0) return error_;
  size_t off = 0;
  while (off < buf_.size()) {
    const ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (error_.ok()) error_ = Status::Unavailable(file_.string() + ": write failed: " + std::strerror(errno));
      break;
    }
    off += static_cast<size_t>(n);
  }
  flushed_ += off;
  buf_.erase(0, off);
  if (buf_.empty()) FlushIndex();  // entries point into the file only
  return error_;
}

Status JobLines::Read(uint32_t job, std::string* out) { return ReadAt(offset_[job], length_[job], out); }

Status JobLines::ReadAt(uint64_t at, size_t n, std::string* out) {
  if (at >= flushed_) {  // still in the buffer
    out->append(buf_, at - flushed_, n);
    return Status::Ok();
  }
  const size_t old = out->size();
  out->resize(old + n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd_, out->data() + old + got, n - got, static_cast<off_t>(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      out->resize(old);
      return Status::Unavailable(file_.string() + ": read failed");
    }
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace baton::runtime
