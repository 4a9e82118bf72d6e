// NodeSet: a set of node indices with O(log64 N) insert, erase and "next member at or after i".
//
// The scheduler keeps one NodeSet per step class: the nodes that could take that class right now.
// Choosing a node is then a FindNext from a rotating cursor, so the cost of a placement does not
// grow with the number of nodes (docs/design.md, "Architecture"; bench/core measures it at 100
// and 10,000 nodes).
// A hierarchy of 64-bit words: level 0 holds one bit per node, level k+1 one bit per non-empty
// word of level k. No allocation after Resize. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace baton::core {

class NodeSet {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  void Resize(uint32_t n);
  uint32_t capacity() const { return n_; }
  bool Contains(uint32_t i) const { return (levels_[0][i >> 6] >> (i & 63)) & 1; }
  void Insert(uint32_t i);
  void Erase(uint32_t i);
  void Set(uint32_t i, bool member) { member ? Insert(i) : Erase(i); }
  bool Empty() const { return levels_.empty() || levels_.back()[0] == 0; }
  // Smallest member >= i, or kNone.
  uint32_t FindNext(uint32_t i) const;
  // Smallest member >= i, wrapping around to the smallest member; kNone when empty.
  uint32_t FindNextWrapping(uint32_t i) const {
    uint32_t r = i < n_ ? FindNext(i) : kNone;
    return r != kNone ? r : FindNext(0);
  }

 private:
  uint32_t n_ = 0;
  std::vector<std::vector<uint64_t>> levels_;
};

}  // namespace baton::core
