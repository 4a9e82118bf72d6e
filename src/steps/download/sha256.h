// Streaming SHA-256 over OpenSSL's EVP interface, hex output.
//
// Thread-safety: one object per stream; not shared between threads.
#pragma once

#include <cstddef>
#include <string>

struct evp_md_ctx_st;

namespace baton {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Reset();
  void Update(const void* data, size_t size);
  // Lowercase hex of the digest of everything since the last Reset. Does not reset.
  std::string HexDigest() const;

 private:
  evp_md_ctx_st* ctx_;
};

// Hashes the first `size` bytes of open file `fd` into `hasher` (which is Reset first).
// Returns false on a read error or a file shorter than `size`.
bool HashFilePrefix(int fd, long long size, Sha256& hasher);

}  // namespace baton
