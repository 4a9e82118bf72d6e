#include "core/resources.h"

#include <cstdio>

namespace baton::core {

ResourceTable::ResourceTable() {
  Intern("cpu");
  Intern("gpu");
  Intern("memory");
}

ResourceId ResourceTable::Intern(std::string_view name) {
  auto it = ids_.find(name);
  if (it != ids_.end()) return it->second;
  auto id = static_cast<ResourceId>(names_.size());
  names_.emplace_back(name);
  pool_.push_back(false);
  ids_.emplace(std::string(name), id);
  return id;
}

int ResourceTable::Find(std::string_view name) const {
  auto it = ids_.find(name);
  return it == ids_.end() ? -1 : it->second;
}

void ResourceTable::SetPool(ResourceId id, bool pool) {
  if (id >= pool_.size()) pool_.resize(id + 1, false);
  pool_[id] = pool;
}

std::vector<ResourceId> ResourceVector::NonZero() const {
  std::vector<ResourceId> ids;
  for (size_t i = 0; i < v_.size(); ++i)
    if (v_[i] != 0) ids.push_back(static_cast<ResourceId>(i));
  return ids;
}

Demand Demand::From(const ResourceVector& v, const ResourceTable& table) {
  Demand d;
  for (ResourceId id : v.NonZero()) {
    if (id == kGpu) {
      d.gpu = v.Get(id);
    } else if (table.IsPool(id)) {
      d.pool_entries.push_back({id, v.Get(id)});
    } else {
      d.node_entries.push_back({id, v.Get(id)});
    }
  }
  return d;
}

std::string FormatAmount(Amount a) {
  if (a % kUnit == 0) return std::to_string(a / kUnit);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", ToDouble(a));
  return buf;
}

}  // namespace baton::core
