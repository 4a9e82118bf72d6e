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

Status JobLines::OpenIndex(const std::filesystem::path& file) {
  if (index_fd_ >= 0) return Status::Ok();
  index_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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

Status JobLines::Open(const std::filesystem::path& file) {
  if (fd_ >= 0) return Status::Ok();
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

void JobLines::Copy(uint32_t number, std::string_view line) {
  pending_.push_back({number, flushed_ + buf_.size(), static_cast<uint32_t>(line.size())});
  buf_.append(line);
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

EarlierLines::~EarlierLines() {
  if (lines_.fd >= 0) ::close(lines_.fd);
  if (index_.fd >= 0) ::close(index_.fd);
}

bool EarlierLines::Open(const std::filesystem::path& out) {
  lines_file_ = out / ".baton" / "jobs.jsonl.before";
  index_file_ = out / ".baton" / "jobs.index.before";
  // The files a resume killed while copying left aside are whole (the ones in OUT are its
  // half-written ones); else this folder's own.
  std::error_code ec;
  in_place_ = !std::filesystem::exists(lines_file_, ec) || !std::filesystem::exists(index_file_, ec);
  const auto lines = in_place_ ? out / "jobs.jsonl" : lines_file_;
  const auto index = in_place_ ? out / ".baton" / "jobs.index" : index_file_;
  lines_.fd = ::open(lines.c_str(), O_RDONLY | O_CLOEXEC);
  index_.fd = ::open(index.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_place_) {
    moves_ = {{lines, lines_file_}, {index, index_file_}};
  }
  return lines_.fd >= 0 && index_.fd >= 0;
}

Status EarlierLines::MoveAside() {
  for (const auto& [from, to] : moves_) {
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    if (ec) return Status::Unavailable(from.string() + ": cannot move it to " + to.string() + ": " + ec.message());
  }
  moves_.clear();
  return Status::Ok();
}

bool EarlierLines::Window::Get(uint64_t at, size_t n, std::string* out) {
  constexpr size_t kWindow = 1u << 20;
  if (at < start || at + n > start + bytes.size()) {
    bytes.resize(std::max(kWindow, n));
    size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t r = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(at + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    bytes.resize(got);
    start = at;
    if (n > got) return false;
  }
  out->append(bytes, at - start, n);
  return true;
}

bool EarlierLines::Entry(uint32_t number, uint64_t* at, uint32_t* length) {
  std::string rec;
  if (index_.fd < 0 || !index_.Get(static_cast<uint64_t>(number) * 12, 12, &rec)) return false;
  std::memcpy(at, rec.data(), 8);
  std::memcpy(length, rec.data() + 8, 4);
  return *length > 0;
}

bool EarlierLines::Has(uint32_t number) {
  uint64_t at;
  uint32_t length;
  return Entry(number, &at, &length);
}

Status EarlierLines::Read(uint32_t number, std::string* out) {
  uint64_t at;
  uint32_t length;
  if (!Entry(number, &at, &length) || !lines_.Get(at, length, out))
    return Status::Unavailable(lines_file_.string() + ": cannot read job number " + std::to_string(number) +
                               "'s line");
  return Status::Ok();
}

void EarlierLines::Done() {
  if (lines_file_.empty() || !moves_.empty()) return;  // not opened, or never moved aside
  std::error_code ec;
  std::filesystem::remove(lines_file_, ec);
  std::filesystem::remove(index_file_, ec);
}

}  // namespace baton::runtime
