// The run journal: an append-only file of framed records, written with group commit.
//
//   file   := "BATONJ1\n" frame*
//   frame  := u32 length (little-endian) | u32 crc32c(payload) | payload[length]
//
// A frame whose length runs past the end of the file (a cut) or whose CRC does not match (a
// flipped byte) ends the good part of the file: Read() reports the good records, then how many
// records and bytes it dropped; Writer::Open truncates the file to its good part before appending
// (the dropped tail is kept aside in `<file>.dropped`).
//
// Group commit: Append() only queues a frame; one writer thread writes what has queued and then
// fdatasync()s, so many records share one fsync (never one per record). A killed process loses
// nothing it had appended more than one write turn ago; a power loss loses at most the frames
// appended since the last fsync (the attempts then running and the last few milliseconds).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <istream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "baton/status.h"

namespace baton::journal {

inline constexpr std::string_view kMagic = "BATONJ1\n";
// The largest payload a frame may carry: Read() takes a larger length field for corruption, so
// Writer::Append refuses such a record rather than write what no reader would accept.
inline constexpr size_t kMaxRecordBytes = size_t{64} << 20;

uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

// Appends one frame (length, CRC, payload) to `out`.
void Frame(std::string_view payload, std::string* out);

// Payload encoding helpers: fixed-width little-endian numbers and length-prefixed strings.
class Encoder {
 public:
  Encoder& U8(uint8_t v) { buf_.push_back(static_cast<char>(v)); return *this; }
  Encoder& U16(uint16_t v) { return Raw(&v, 2); }
  Encoder& U32(uint32_t v) { return Raw(&v, 4); }
  Encoder& U64(uint64_t v) { return Raw(&v, 8); }
  Encoder& F64(double v) { return Raw(&v, 8); }
  Encoder& Str(std::string_view s) { U32(static_cast<uint32_t>(s.size())); buf_.append(s); return *this; }
  const std::string& data() const { return buf_; }
  void Clear() { buf_.clear(); }

 private:
  Encoder& Raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); return *this; }
  std::string buf_;
};

// Reads what an Encoder wrote; ok() turns false (and every later read returns zero/empty) when
// the payload is shorter than asked.
class Decoder {
 public:
  explicit Decoder(std::string_view data) : data_(data) {}
  uint8_t U8() { uint8_t v = 0; Raw(&v, 1); return v; }
  uint16_t U16() { uint16_t v = 0; Raw(&v, 2); return v; }
  uint32_t U32() { uint32_t v = 0; Raw(&v, 4); return v; }
  uint64_t U64() { uint64_t v = 0; Raw(&v, 8); return v; }
  double F64() { double v = 0; Raw(&v, 8); return v; }
  std::string_view Str();
  bool ok() const { return ok_; }
  bool done() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  void Raw(void* p, size_t n);
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

struct ReadStats {
  uint64_t records = 0;           // good records handed to the callback
  uint64_t good_bytes = 0;        // length of the good prefix (magic included)
  uint64_t dropped_records = 0;   // frames from the first bad one on (a cut frame counts as one)
  uint64_t dropped_bytes = 0;     // bytes past the good prefix
  std::string why;                // what was wrong with the first bad frame, "" when none
};

// Calls `on_record` with every good record's payload, in order. NotFound when the file does not
// exist; an error when it is not a journal (bad magic). A bad tail is not an error: see stats.
Status Read(const std::filesystem::path& file, const std::function<void(std::string_view)>& on_record,
            ReadStats* stats);
// The same from a stream (`file` names it in messages): what Read(path) does after opening.
Status Read(std::istream& in, const std::string& file, const std::function<void(std::string_view)>& on_record,
            ReadStats* stats);

struct WriterStats {
  uint64_t records = 0, bytes = 0, syncs = 0;
};

class Writer {
 public:
  static constexpr std::chrono::milliseconds kBatchInterval{5};

  // Opens `file` for appending, creating it (and its folder) with the magic when missing, and
  // cutting it to `good_bytes` when given (the good prefix Read() found; the rest is copied to
  // `<file>.dropped` first). A new file's magic is synced and so is its folder (and the folder's
  // parent when the folder was made), so the journal's name survives a power loss.
  // `sync`: false skips every fsync (benchmarks of the journal's CPU cost).
  static Result<std::unique_ptr<Writer>> Open(const std::filesystem::path& file, uint64_t good_bytes = UINT64_MAX,
                                              bool sync = true);
  ~Writer();  // Flush(), then closes
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Queues one record (thread-safe). Blocks only when the writer is far behind (64 MiB queued).
  // Group commit: a batch is written and synced at most every kBatchInterval (unless Flush() is
  // waiting), so a run of short steps makes ~200 syncs a second, not one per handful of records;
  // a crash loses at most the records of the last interval (their steps run again on resume).
  // Refused, nothing queued: a payload over kMaxRecordBytes (Invalid, naming its size), and
  // every record once a write or sync has failed (that error).
  Status Append(std::string_view payload) { return Append(&payload, 1); }
  // Queues several records that land in the same write (a crash keeps all or none of them).
  Status Append(std::initializer_list<std::string_view> payloads) {
    return Append(payloads.begin(), payloads.size());
  }
  Status Append(const std::string_view* payloads, size_t n);
  // Waits until every record appended before the call is written and synced. The first write or
  // sync error, if any: the journal then writes nothing more, and its owner must stop (records
  // it no longer keeps, such as money spent, would be missing on resume).
  Status Flush();
  // Called once, on the writer's thread and without its lock, with the first write or sync
  // error (so the owner learns of it without waiting for a Flush). Set it before appending.
  void OnError(std::function<void(const Status&)> f);
  WriterStats stats() const;

 private:
  Writer(int fd, bool sync);
  void Loop();

  int fd_;
  bool sync_;
  mutable std::mutex mu_;
  std::condition_variable wake_, done_;
  std::string pending_;
  uint64_t appended_ = 0, durable_ = 0;
  int flushing_ = 0;  // callers waiting in Flush(): no hold-off while there are any
  bool stop_ = false;
  bool failed_ = false;
  Status error_;
  std::function<void(const Status&)> on_error_;
  WriterStats stats_;
  std::thread thread_;
};

}  // namespace baton::journal
