#include "baton/step.h"

#include <chrono>
#include <map>
#include <mutex>
#include <thread>

namespace baton {

bool CancelToken::sleep_for(double seconds) const {
  // Sleeps in short slices so cancellation is seen within ~10 ms without a condition variable
  // shared between the token and its waiters.
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  while (!cancelled()) {
    const auto now = clock::now();
    if (now >= end) return true;
    const auto left = end - now;
    std::this_thread::sleep_for(std::min<clock::duration>(left, std::chrono::milliseconds(10)));
  }
  return false;
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

const Json& StepContext::result_of(std::string_view step_name) const {
  static const Json kNull;
  if (results == nullptr || !results->is_object()) return kNull;
  auto it = results->find(std::string(step_name));
  return it == results->end() ? kNull : *it;
}

struct StepRegistry::Impl {
  mutable std::mutex mu;
  std::map<std::string, StepFactory, std::less<>> factories;
  std::map<std::string, StepTraits, std::less<>> traits;
};

StepRegistry::StepRegistry() : impl_(std::make_shared<Impl>()) {}

StepRegistry& StepRegistry::Global() {
  static StepRegistry* registry = new StepRegistry();
  return *registry;
}

void StepRegistry::Register(std::string name, StepFactory factory, StepTraits traits) {
  std::lock_guard lock(impl_->mu);
  impl_->traits[name] = std::move(traits);
  impl_->factories[std::move(name)] = std::move(factory);
}

StepTraits StepRegistry::Traits(std::string_view name) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->traits.find(name);
  return it == impl_->traits.end() ? StepTraits{} : it->second;
}

bool StepRegistry::Has(std::string_view name) const {
  std::lock_guard lock(impl_->mu);
  return impl_->factories.find(name) != impl_->factories.end();
}

Result<std::unique_ptr<Step>> StepRegistry::Create(std::string_view name, const Json& with) const {
  StepFactory factory;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->factories.find(name);
    if (it == impl_->factories.end()) {
      std::string known;
      for (const auto& [k, v] : impl_->factories) known += (known.empty() ? "" : ", ") + k;
      return Status::Invalid("unknown step kind '" + std::string(name) + "' (known: " + known + ")");
    }
    factory = it->second;
  }
  Result<std::unique_ptr<Step>> step = factory(with);
  if (step.ok() && *step == nullptr)
    return Status::Internal("the factory of step kind '" + std::string(name) + "' made no step");
  return step;
}

std::vector<std::string> StepRegistry::Names() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> names;
  for (const auto& [k, v] : impl_->factories) names.push_back(k);
  return names;
}

}  // namespace baton
