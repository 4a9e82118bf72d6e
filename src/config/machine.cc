// Machine detection: this host as a node (CPUs, memory, NVIDIA GPUs), for `baton run` without a
// cluster file and for `baton node` defaults.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include "baton/pipeline.h"

namespace baton {

int DetectGpuCount() {
  // The NVIDIA driver lists one folder per GPU; no driver, no GPUs. (CUDA_VISIBLE_DEVICES limits
  // what a process may use, so honour it when set.)
  int count = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    (void)e;
    ++count;
  }
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible != nullptr && count > 0) {
    std::string v = visible;
    if (v.empty() || v == "-1") return 0;
    return std::min<int>(count, static_cast<int>(std::count(v.begin(), v.end(), ',') + 1));
  }
  return count;
}

NodeSpec DetectLocalNode() {
  NodeSpec n;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string name = host;
  name = name.substr(0, name.find('.'));
  static const std::regex kNodeName(R"(^[A-Za-z0-9_][A-Za-z0-9_.-]*$)");
  n.name = std::regex_match(name, kNodeName) ? name : "local";
  n.cpus = std::max(1u, std::thread::hardware_concurrency());
  n.memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  n.gpus = DetectGpuCount();
  n.labels["role"] = "head";
  return n;
}

}  // namespace baton
