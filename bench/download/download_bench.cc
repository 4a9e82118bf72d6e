// Throughput of the download step against the `curl` command-line tool (same libcurl) for one
// 256 MiB file served by HttpFaultServer on loopback. Baton's figure includes what curl does not
// do: SHA-256 while streaming, the HTML sniff, fsync and rename. Prints MiB/s for both, the
// ratio baton/curl (medians of 3 runs, interleaved) and the machine's core count.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "steps/download/download.h"
#include "support/http_fault_server.h"
#include "support/util.h"

namespace fs = std::filesystem;

namespace {

constexpr size_t kSize = size_t{256} << 20;
constexpr int kRuns = 3;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main() {
  baton::testing::TempDir served;
  baton::testing::TempDir work;
  {
    std::mt19937_64 rng(42);
    std::vector<uint64_t> block((size_t{1} << 20) / 8);
    std::ofstream out(served / "big.mp4", std::ios::binary);
    for (size_t done = 0; done < kSize; done += block.size() * 8) {
      for (auto& w : block) w = rng();
      out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size() * 8));
    }
  }
  baton::testing::HttpFaultServer server(served.path());
  const std::string url = server.url("/files/big.mp4");
  auto step = baton::MakeDownloadStep(baton::ParseDownloadOptions(baton::Json::object()));
  const double mib = static_cast<double>(kSize) / (1 << 20);

  std::vector<double> baton_rates, curl_rates;
  for (int run = 0; run < kRuns; ++run) {
    const fs::path curl_out = work / "curl.mp4";
    auto start = std::chrono::steady_clock::now();
    const int rc = baton::testing::RunProgram({"curl", "-s", "-o", curl_out.string(), url});
    const double curl_s = Seconds(start);
    if (rc != 0 || fs::file_size(curl_out) != kSize) {
      std::fprintf(stderr, "curl failed (exit %d)\n", rc);
      return 1;
    }
    fs::remove(curl_out);

    const fs::path job = work / ("job-" + std::to_string(run));
    fs::create_directories(job);
    baton::StepContext ctx;
    ctx.input = url;
    ctx.workdir = job;
    start = std::chrono::steady_clock::now();
    const baton::StepOutcome outcome = step->Run(ctx);
    const double baton_s = Seconds(start);
    if (!outcome.ok() || outcome.result["bytes"] != kSize) {
      std::fprintf(stderr, "baton download failed: %s\n", outcome.error.c_str());
      return 1;
    }
    fs::remove_all(job);

    curl_rates.push_back(mib / curl_s);
    baton_rates.push_back(mib / baton_s);
    std::printf("run %d: curl %.0f MiB/s, baton %.0f MiB/s\n", run + 1, curl_rates.back(), baton_rates.back());
  }
  const double b = Median(baton_rates), c = Median(curl_rates);
  std::printf("download 256 MiB over loopback (median of %d): baton %.0f MiB/s, curl %.0f MiB/s, "
              "ratio baton/curl %.2f, cores %u\n",
              kRuns, b, c, b / c, std::thread::hardware_concurrency());
  return 0;
}
