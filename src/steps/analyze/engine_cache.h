// EngineCache: idle PocketSphinx decoders and Tesseract engines kept between attempts.
//
// Loading PocketSphinx's en-us model costs ~0.35 s of CPU per decoder and Tesseract's ~0.1 s per
// engine: as much as recognizing a short clip. A Run takes engines from here (or makes new ones)
// and gives them back when it ends, so a process analyzing many videos loads each model a few
// times, not once per job and worker. Engines are keyed by their settings; at most `max_idle`
// wait per key. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace baton::analyze {

template <class Engine>
class EngineCache {
 public:
  explicit EngineCache(size_t max_idle) : max_idle_(max_idle) {}

  // An idle engine made with `key`'s settings, or null (the caller makes one).
  std::unique_ptr<Engine> Take(const std::string& key) {
    std::lock_guard lock(mu_);
    auto& list = idle_[key];
    if (list.empty()) return nullptr;
    auto e = std::move(list.back());
    list.pop_back();
    return e;
  }

  // Destroys every idle engine.
  void Clear() {
    std::lock_guard lock(mu_);
    idle_.clear();
  }

  void Give(const std::string& key, std::unique_ptr<Engine> engine) {
    if (!engine) return;
    std::lock_guard lock(mu_);
    auto& list = idle_[key];
    if (list.size() < max_idle_) list.push_back(std::move(engine));
  }

 private:
  const size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Engine>>> idle_;  // GUARDED_BY(mu_)
};

}  // namespace baton::analyze
