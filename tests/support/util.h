// Small helpers shared by tests: temporary folders, free loopback ports, running programs.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <vector>

namespace baton::testing {

// A fresh folder under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

// Runs argv (no shell), returns its exit status (or -1 when it could not start). Output goes to
// `log` when given, else is discarded.
int RunProgram(const std::vector<std::string>& argv, const std::string& log = "");

// Reads a whole file; "" when missing.
std::string ReadFile(const std::filesystem::path& path);

// Every job of a `baton run` output folder (summary.json lists only the failed ones): the lines of
// OUT/jobs.jsonl, a job's last line counting, in job order (ids job-N by N, others after them by
// id). An empty array when there is no such file.
nlohmann::json ReadJobs(const std::filesystem::path& out);

// The source tree (BATON_SOURCE_DIR set by ctest) and the build tree.
std::filesystem::path SourceDir();
// Validates `json` against definition `definition` ("summary", "snapshot", "job_detail", ...) of
// `schema` (a path in the source tree) with python3-jsonschema. "" when valid, else the errors.
std::string SchemaErrors(const nlohmann::json& json, const std::string& definition,
                         const std::string& schema = "docs/schema/baton.schema.json");
std::filesystem::path BinaryDir();

}  // namespace baton::testing
