#include "journal/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

namespace baton::journal {

namespace {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table lookup per byte.
const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

constexpr size_t kMaxRecord = kMaxRecordBytes;  // a larger length field is corruption
constexpr size_t kMaxQueued = 64u << 20;   // Append waits beyond this

uint32_t Load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string Errno(const char* what, const std::filesystem::path& file) {
  return fmt::format("{}: {} failed: {}", file.string(), what, std::strerror(errno));
}

// Makes a folder's entries (a new file's name) durable.
Status SyncDir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Unavailable(Errno("open", dir));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  errno = err;
  return rc == 0 ? Status::Ok() : Status::Unavailable(Errno("fsync", dir));
}

}  // namespace

uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  const auto& t = CrcTable();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void Frame(std::string_view payload, std::string* out) {
  const auto len = static_cast<uint32_t>(payload.size());
  const uint32_t crc = Crc32c(payload.data(), payload.size());
  out->append(reinterpret_cast<const char*>(&len), 4);
  out->append(reinterpret_cast<const char*>(&crc), 4);
  out->append(payload);
}

std::string_view Decoder::Str() {
  const uint32_t n = U32();
  if (!ok_ || data_.size() - pos_ < n) {
    ok_ = false;
    return {};
  }
  std::string_view s = data_.substr(pos_, n);
  pos_ += n;
  return s;
}

void Decoder::Raw(void* p, size_t n) {
  if (!ok_ || data_.size() - pos_ < n) {
    ok_ = false;
    return;
  }
  std::memcpy(p, data_.data() + pos_, n);
  pos_ += n;
}

Status Read(const std::filesystem::path& file, const std::function<void(std::string_view)>& on_record,
            ReadStats* stats) {
  *stats = {};
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::filesystem::exists(file) ? Status::Unavailable(file.string() + ": cannot read journal")
                                                : Status::NotFound(file.string() + ": no journal");
  return Read(in, file.string(), on_record, stats);
}

Status Read(std::istream& in, const std::string& file, const std::function<void(std::string_view)>& on_record,
            ReadStats* stats) {
  *stats = {};
  uint64_t consumed = 0;  // bytes taken from `in`
  // Read in chunks so that a journal of millions of records never sits in memory whole.
  std::string buf;
  size_t pos = 0;
  bool eof = false;
  auto fill = [&](size_t need) {  // ensures buf holds `need` bytes from pos, if the file has them
    if (buf.size() - pos >= need || eof) return buf.size() - pos >= need;
    buf.erase(0, pos);
    pos = 0;
    const size_t want = std::max<size_t>(need, 1u << 20);
    while (buf.size() < need && !eof) {
      const size_t old = buf.size();
      buf.resize(old + want);
      in.read(buf.data() + old, static_cast<std::streamsize>(want));
      buf.resize(old + static_cast<size_t>(in.gcount()));
      consumed += static_cast<uint64_t>(in.gcount());
      if (in.gcount() == 0 || !in) eof = true;
    }
    return buf.size() - pos >= need;
  };
  if (!fill(kMagic.size()) || std::string_view(buf).substr(0, kMagic.size()) != kMagic) {
    if (buf.size() < kMagic.size() && kMagic.substr(0, buf.size()) == buf) {  // empty, or its magic cut short
      stats->dropped_bytes = buf.size();
      if (!buf.empty()) stats->why = "magic cut short";
      return Status::Ok();
    }
    return Status::Invalid(file + ": not a Baton journal (bad magic)");
  }
  pos = kMagic.size();
  uint64_t offset = kMagic.size();
  stats->good_bytes = offset;
  bool bad = false;
  while (fill(1)) {
    if (!fill(8)) {
      bad = true;
      stats->why = fmt::format("frame header cut at byte {}", offset);
      ++stats->dropped_records;
      break;
    }
    const uint32_t len = Load32(buf.data() + pos), crc = Load32(buf.data() + pos + 4);
    if (len > kMaxRecord) {
      bad = true;
      stats->why = fmt::format("implausible record length {} at byte {}", len, offset);
      ++stats->dropped_records;
      break;
    }
    if (!fill(8 + size_t{len})) {
      bad = true;
      stats->why = fmt::format("record cut at byte {} ({} of {} bytes)", offset, buf.size() - pos - 8, len);
      ++stats->dropped_records;
      break;
    }
    std::string_view payload(buf.data() + pos + 8, len);
    if (Crc32c(payload.data(), payload.size()) != crc) {
      bad = true;
      stats->why = fmt::format("checksum mismatch in record at byte {}", offset);
      ++stats->dropped_records;
      pos += 8 + len;
      // Count the frames that follow as far as their lengths hold together (they are dropped too:
      // a later record may depend on the lost one).
      while (fill(8)) {
        const uint32_t l = Load32(buf.data() + pos);
        if (l > kMaxRecord || !fill(8 + size_t{l})) {
          ++stats->dropped_records;
          break;
        }
        pos += 8 + l;
        ++stats->dropped_records;
      }
      break;
    }
    on_record(payload);
    ++stats->records;
    pos += 8 + len;
    offset += 8 + len;
    stats->good_bytes = offset;
  }
  if (bad) {
    // The rest of the input, unread so far, is dropped too.
    while (in) {
      char skip[1 << 16];
      in.read(skip, sizeof skip);
      consumed += static_cast<uint64_t>(in.gcount());
    }
    stats->dropped_bytes = consumed - stats->good_bytes;
  }
  return Status::Ok();
}

Result<std::unique_ptr<Writer>> Writer::Open(const std::filesystem::path& file, uint64_t good_bytes, bool sync) {
  std::error_code ec;
  const std::filesystem::path dir = file.parent_path();
  const bool made_dir = std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable(dir.string() + ": cannot create: " + ec.message());
  const bool existed = std::filesystem::exists(file);
  const uint64_t size = existed ? std::filesystem::file_size(file, ec) : 0;
  if (good_bytes != UINT64_MAX && good_bytes < size) {
    // Keep the dropped tail for inspection, then cut it off.
    std::ifstream in(file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(good_bytes));
    std::ofstream out(file.string() + ".dropped", std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    if (::truncate(file.c_str(), static_cast<off_t>(good_bytes)) != 0)
      return Status::Unavailable(Errno("truncate", file));
  }
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Unavailable(Errno("open", file));
  auto w = std::unique_ptr<Writer>(new Writer(fd, sync));
  if (size == 0 || good_bytes < kMagic.size()) {
    if (good_bytes < kMagic.size() && size > 0 && ::ftruncate(fd, 0) != 0)
      return Status::Unavailable(Errno("truncate", file));
    if (::write(fd, kMagic.data(), kMagic.size()) != static_cast<ssize_t>(kMagic.size()))
      return Status::Unavailable(Errno("write", file));
  }
  if (sync && !existed) {
    if (::fdatasync(fd) != 0) return Status::Unavailable(Errno("fdatasync", file));
    if (Status st = SyncDir(dir); !st.ok()) return st;
    if (made_dir) {
      if (Status st = SyncDir(dir.parent_path()); !st.ok()) return st;
    }
  }
  return w;
}

Writer::Writer(int fd, bool sync) : fd_(fd), sync_(sync) {
  thread_ = std::thread([this] { Loop(); });
}

Writer::~Writer() {
  Flush().IgnoreError();
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  ::close(fd_);
}

Status Writer::Append(const std::string_view* payloads, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (payloads[i].size() > kMaxRecordBytes) {
      return Status::Invalid(fmt::format("journal record of {} bytes is over the limit of {} bytes (not written)",
                                         payloads[i].size(), kMaxRecordBytes));
    }
  }
  std::unique_lock lock(mu_);
  if (pending_.size() > kMaxQueued) done_.wait(lock, [this] { return pending_.size() <= kMaxQueued || !error_.ok(); });
  if (!error_.ok()) return error_;
  const bool was_empty = pending_.empty();
  for (size_t i = 0; i < n; ++i) {
    const std::string_view payload = payloads[i];
    Frame(payload, &pending_);
    ++stats_.records;
    stats_.bytes += payload.size() + 8;
  }
  ++appended_;
  if (was_empty) wake_.notify_one();
  return Status::Ok();
}

void Writer::OnError(std::function<void(const Status&)> f) {
  std::lock_guard lock(mu_);
  on_error_ = std::move(f);
}

Status Writer::Flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = appended_;
  ++flushing_;
  wake_.notify_one();
  done_.wait(lock, [&] { return durable_ >= target || !error_.ok(); });
  --flushing_;
  return error_;
}

WriterStats Writer::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Writer::Loop() {
  std::string batch;
  auto last_batch = std::chrono::steady_clock::time_point();
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || !pending_.empty() || durable_ < appended_; });
    if (pending_.empty() && stop_) return;
    // Hold-off: let records gather for the rest of the interval since the last batch.
    wake_.wait_until(lock, last_batch + kBatchInterval,
                     [this] { return stop_ || flushing_ > 0 || pending_.size() > kMaxQueued / 2; });
    last_batch = std::chrono::steady_clock::now();
    batch.clear();
    batch.swap(pending_);
    const uint64_t upto = appended_;
    lock.unlock();
    done_.notify_all();  // Append may wait on a full queue
    Status st;
    size_t off = 0;
    while (!failed_ && off < batch.size()) {
      const ssize_t n = ::write(fd_, batch.data() + off, batch.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        st = Status::Unavailable(fmt::format("journal write failed: {}", std::strerror(errno)));
        break;
      }
      off += static_cast<size_t>(n);
    }
    if (st.ok() && sync_ && ::fdatasync(fd_) != 0)
      st = Status::Unavailable(fmt::format("journal fsync failed: {}", std::strerror(errno)));
    lock.lock();
    if (sync_) ++stats_.syncs;
    if (!st.ok() && !failed_) {
      failed_ = true;  // written only by this thread; later batches are dropped
      // The owner is told before any waiter can see the error, so a Flush that fails
      // returns after the owner knows.
      if (auto tell = on_error_) {
        lock.unlock();
        tell(st);
        lock.lock();
      }
      error_ = st;
    }
    durable_ = upto;
    done_.notify_all();
  }
}

}  // namespace baton::journal
