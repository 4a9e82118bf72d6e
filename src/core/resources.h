// Resource amounts and vectors for the scheduling core.
//
// Amounts are fixed-point (1/10000 of a unit, like Ray's) so that adding and removing fractional
// demands (gpu: 0.25) reproduces exactly and decisions are deterministic. Resource names are
// interned once into small dense ids; a ResourceVector is indexed by id. Ids 0..2 are always
// cpu, gpu and memory. A resource may be a cluster-wide pool (docs/design.md, "Scheduling rules",
// rule 7): it is then counted once for the whole cluster instead of per node.
//
// Not thread-safe; owned by one Scheduler.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace baton::core {

using Amount = int64_t;
inline constexpr Amount kUnit = 10000;

inline Amount ToAmount(double value) { return static_cast<Amount>(std::llround(value * kUnit)); }
inline double ToDouble(Amount a) { return static_cast<double>(a) / kUnit; }

using ResourceId = uint16_t;
inline constexpr ResourceId kCpu = 0;
inline constexpr ResourceId kGpu = 1;
inline constexpr ResourceId kMemory = 2;

class ResourceTable {
 public:
  ResourceTable();
  // Returns the id of `name`, adding it when new.
  ResourceId Intern(std::string_view name);
  // Returns -1 when unknown.
  int Find(std::string_view name) const;
  const std::string& Name(ResourceId id) const { return names_[id]; }
  size_t size() const { return names_.size(); }
  void SetPool(ResourceId id, bool pool);
  bool IsPool(ResourceId id) const { return id < pool_.size() && pool_[id]; }

 private:
  std::vector<std::string> names_;
  std::vector<bool> pool_;
  std::map<std::string, ResourceId, std::less<>> ids_;
};

// Dense vector of amounts, indexed by ResourceId. Missing trailing entries are zero.
class ResourceVector {
 public:
  ResourceVector() = default;
  explicit ResourceVector(size_t n) : v_(n, 0) {}
  Amount Get(ResourceId id) const { return id < v_.size() ? v_[id] : 0; }
  void Set(ResourceId id, Amount a) {
    if (id >= v_.size()) v_.resize(id + 1, 0);
    v_[id] = a;
  }
  void Add(ResourceId id, Amount a) { Set(id, Get(id) + a); }
  size_t size() const { return v_.size(); }
  bool Empty() const {
    for (Amount a : v_) if (a != 0) return false;
    return true;
  }
  // Ids with a non-zero amount.
  std::vector<ResourceId> NonZero() const;
  const std::vector<Amount>& raw() const { return v_; }

 private:
  std::vector<Amount> v_;
};

// Compact list of (id, amount) for the non-zero entries of a demand: what the hot path iterates.
struct Demand {
  struct Entry {
    ResourceId id;
    Amount amount;
  };
  std::vector<Entry> node_entries;  // per-node resources (gpu excluded: see gpu)
  std::vector<Entry> pool_entries;  // cluster-wide pools
  Amount gpu = 0;                   // gpu demand (fraction < 1 or whole devices)

  static Demand From(const ResourceVector& v, const ResourceTable& table);
};

std::string FormatAmount(Amount a);

}  // namespace baton::core
