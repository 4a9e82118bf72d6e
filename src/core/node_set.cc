#include "core/node_set.h"

namespace baton::core {

void NodeSet::Resize(uint32_t n) {
  std::vector<uint32_t> members;
  for (uint32_t i = FindNext(0); i != kNone && i < n; i = FindNext(i + 1)) members.push_back(i);
  n_ = n;
  levels_.clear();
  uint32_t width = n == 0 ? 1 : n;
  do {
    uint32_t words = (width + 63) / 64;
    levels_.emplace_back(words, 0);
    width = words;
  } while (width > 1);
  for (uint32_t m : members) Insert(m);
}

void NodeSet::Insert(uint32_t i) {
  for (auto& level : levels_) {
    uint64_t& word = level[i >> 6];
    const bool was_empty = word == 0;
    word |= uint64_t{1} << (i & 63);
    if (!was_empty) return;
    i >>= 6;
  }
}

void NodeSet::Erase(uint32_t i) {
  for (auto& level : levels_) {
    uint64_t& word = level[i >> 6];
    word &= ~(uint64_t{1} << (i & 63));
    if (word != 0) return;
    i >>= 6;
  }
}

uint32_t NodeSet::FindNext(uint32_t i) const {
  if (levels_.empty() || i >= n_) return kNone;
  // Climb while the rest of the current word is empty, then descend to the leftmost member.
  size_t level = 0;
  uint64_t pos = i;
  while (true) {
    if (level >= levels_.size()) return kNone;
    const auto& words = levels_[level];
    const uint64_t w = (pos >> 6) < words.size() ? words[pos >> 6] & (~uint64_t{0} << (pos & 63)) : 0;
    if (w != 0) {
      pos = (pos & ~uint64_t{63}) | static_cast<uint64_t>(__builtin_ctzll(w));
      break;
    }
    pos = (pos >> 6) + 1;
    ++level;
  }
  while (level > 0) {
    --level;
    const uint64_t w = levels_[level][pos];
    pos = pos * 64 + static_cast<uint64_t>(__builtin_ctzll(w));
  }
  return pos < n_ ? static_cast<uint32_t>(pos) : kNone;
}

}  // namespace baton::core
