#include "steps/download/sha256.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

namespace baton {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) throw std::runtime_error("EVP_MD_CTX_new failed");
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }

void Sha256::Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_, data, size); }

std::string Sha256::HexDigest() const {
  // Finalising consumes a context, so finish a copy and leave this stream usable.
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX_copy_ex(copy, ctx_);
  EVP_DigestFinal_ex(copy, digest, &len);
  EVP_MD_CTX_free(copy);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 15]);
  }
  return hex;
}

bool HashFilePrefix(int fd, long long size, Sha256& hasher) {
  hasher.Reset();
  std::vector<char> buf(1 << 20);
  long long pos = 0;
  while (pos < size) {
    const size_t want = static_cast<size_t>(std::min<long long>(size - pos, buf.size()));
    const ssize_t n = pread(fd, buf.data(), want, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    hasher.Update(buf.data(), static_cast<size_t>(n));
    pos += n;
  }
  return true;
}

}  // namespace baton
