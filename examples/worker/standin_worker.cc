// A C++ worker for `uses: worker` (docs/steps/worker.md, protocol v1): the shape of a C++ inference
// engine that loads its weights once and serves batches. Built as build/examples/worker/
// baton_example_worker. Arguments: --load SECONDS --cost A B (a batch of n costs A + B*n s).
// Reads JSON Lines on stdin; writes only protocol lines on stdout; logs go to stderr.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

using Json = nlohmann::json;

int main(int argc, char** argv) {
  double load = 2, a = 0.3, b = 0.05;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--load") && i + 1 < argc) load = std::atof(argv[++i]);
    if (!std::strcmp(argv[i], "--cost") && i + 2 < argc) {
      a = std::atof(argv[++i]);
      b = std::atof(argv[++i]);
    }
  }
  const char* gpus = std::getenv("CUDA_VISIBLE_DEVICES");
  std::this_thread::sleep_for(std::chrono::duration<double>(load));  // the weights, once
  std::fprintf(stderr, "model loaded in %.2fs on GPUs [%s]\n", load, gpus ? gpus : "");
  std::cout << Json{{"type", "ready"}}.dump() << std::endl;
  std::set<std::string> cancelled;
  std::string line;
  while (std::getline(std::cin, line)) {
    const Json m = Json::parse(line, nullptr, false);
    if (m.is_discarded() || !m.is_object()) continue;
    const std::string type = m.value("type", "");
    if (type == "shutdown") break;
    if (type == "cancel") {
      cancelled.insert(m.value("id", ""));
      continue;
    }
    if (type != "batch") continue;
    const Json& items = m["items"];
    std::this_thread::sleep_for(std::chrono::duration<double>(a + b * static_cast<double>(items.size())));
    for (const auto& it : items) {
      const std::string id = it.value("id", "");
      Json r = {{"type", "result"}, {"id", id}};
      if (cancelled.count(id)) {
        r["ok"] = false;
        r["error"] = "cancelled";
      } else {
        r["ok"] = true;
        r["output"] = {{"answer", it.value("job", "") + " saw " + it.value("input", "")},
                       {"batch", items.size()},
                       {"gpus", gpus ? gpus : ""}};
      }
      std::cout << r.dump() << '\n';
    }
    std::cout.flush();
  }
  return 0;
}
