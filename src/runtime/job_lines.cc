#include "runtime/job_lines.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/report.h"

namespace baton::runtime {

JobLines::~JobLines() {
  Flush().IgnoreError();
  if (fd_ >= 0) ::close(fd_);
}

Status JobLines::Open(const std::filesystem::path& file) {
  file_ = file;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return error_ = Status::Unavailable(file.string() + ": cannot write: " + std::strerror(errno));
  return Status::Ok();
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
  return error_;
}

Status JobLines::Read(uint32_t job, std::string* out) {
  const uint64_t at = offset_[job];
  const size_t n = length_[job];
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
