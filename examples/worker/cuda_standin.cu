// A CUDA stand-in model for `uses: worker` (docs/steps/worker.md, protocol v1): it allocates its
// "weights" on the GPU once (cudaMalloc + init kernel: the load), then runs one kernel per batch
// whose work grows with the batch (a + b*n in kernel time), and answers each item. With
// --command it does the same for one item and exits (the `command` way: one load per item).
// Built only where nvcc exists (examples/worker/CMakeLists.txt); bench/worker/gpu.sh runs it
// against itself as `command` and samples nvidia-smi.
//   cuda_standin [--mib 2048] [--iters-per-item 200] [--command --job J]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

using Json = nlohmann::json;

__global__ void Init(float* w, size_t n) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    w[i] = 1.0f / static_cast<float>(1 + (i % 97));
}

// `iters` passes over the weights: memory-bound work proportional to the batch.
__global__ void Infer(const float* w, size_t n, int iters, float* out) {
  float acc = 0;
  for (int k = 0; k < iters; ++k)
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
      acc += w[i] * (k + 1);
  atomicAdd(out, acc * 1e-9f);
}

static void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}

int main(int argc, char** argv) {
  size_t mib = 2048;
  int iters_per_item = 4;
  bool command = false;
  std::string job;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--mib") && i + 1 < argc) mib = std::strtoul(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--iters-per-item") && i + 1 < argc) iters_per_item = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--command")) command = true;
    else if (!std::strcmp(argv[i], "--job") && i + 1 < argc) job = argv[++i];
  }
  const size_t n = mib * 1024 * 1024 / sizeof(float);
  const auto t0 = std::chrono::steady_clock::now();
  float* w = nullptr;
  float* out = nullptr;
  Check(cudaMalloc(&w, n * sizeof(float)), "cudaMalloc weights");
  Check(cudaMalloc(&out, sizeof(float)), "cudaMalloc out");
  Init<<<1024, 256>>>(w, n);
  Check(cudaDeviceSynchronize(), "init");
  const double load = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "loaded %zu MiB of weights in %.2fs\n", mib, load);
  auto run = [&](size_t items) {
    Infer<<<1024, 256>>>(w, n, 1 + iters_per_item * static_cast<int>(items), out);
    Check(cudaDeviceSynchronize(), "infer");
  };
  if (command) {
    run(1);
    std::cout << Json{{"answer", job + " done"}, {"batch", 1}}.dump() << std::endl;
    return 0;
  }
  std::cout << Json{{"type", "ready"}}.dump() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    const Json m = Json::parse(line, nullptr, false);
    if (m.is_discarded() || !m.is_object()) continue;
    const std::string type = m.value("type", "");
    if (type == "shutdown") break;
    if (type != "batch") continue;
    const Json& items = m["items"];
    run(items.size());
    for (const auto& it : items)
      std::cout << Json{{"type", "result"}, {"id", it.value("id", "")}, {"ok", true},
                        {"output", {{"answer", it.value("job", "") + " done"}, {"batch", items.size()}}}}
                       .dump()
                << '\n';
    std::cout.flush();
  }
  cudaFree(w);
  cudaFree(out);
  return 0;
}
