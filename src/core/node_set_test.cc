#include "core/node_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace baton::core {
namespace {

TEST(NodeSet, MatchesStdSetUnderRandomOperations) {
  for (uint32_t n : {1u, 63u, 64u, 65u, 4096u, 10000u, 300000u}) {
    NodeSet s;
    s.Resize(n);
    std::set<uint32_t> ref;
    std::mt19937 rng(n);
    for (int op = 0; op < 20000; ++op) {
      uint32_t i = rng() % n;
      if (rng() % 3 == 0) {
        s.Erase(i);
        ref.erase(i);
      } else {
        s.Insert(i);
        ref.insert(i);
      }
      uint32_t q = rng() % n;
      auto it = ref.lower_bound(q);
      uint32_t want = it == ref.end() ? NodeSet::kNone : *it;
      ASSERT_EQ(s.FindNext(q), want) << "n=" << n << " q=" << q;
      ASSERT_EQ(s.Contains(i), ref.count(i) == 1);
    }
    EXPECT_EQ(s.Empty(), ref.empty());
  }
}

TEST(NodeSet, WrapsAroundAndKeepsMembersOnResize) {
  NodeSet s;
  s.Resize(100);
  s.Insert(3);
  s.Insert(70);
  EXPECT_EQ(s.FindNextWrapping(71), 3u);
  EXPECT_EQ(s.FindNextWrapping(4), 70u);
  s.Resize(5000);
  EXPECT_TRUE(s.Contains(3));
  EXPECT_TRUE(s.Contains(70));
  s.Insert(4999);
  EXPECT_EQ(s.FindNext(71), 4999u);
  s.Erase(3);
  s.Erase(70);
  s.Erase(4999);
  EXPECT_TRUE(s.Empty());
  EXPECT_EQ(s.FindNextWrapping(0), NodeSet::kNone);
}

}  // namespace
}  // namespace baton::core
