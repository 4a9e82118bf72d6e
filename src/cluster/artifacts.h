// Artifacts across nodes. Bulky files stay in the job folder of the node that made them; a step
// on another node gets a local copy through StepContext::artifact, which fetches it from the
// producing node's agent over HTTP:
//
//   GET http://ADDRESS/v1/artifacts/JOB/RELATIVE/PATH     header X-Baton-Token: PREFIX:token
//   200: the file, streamed; header X-Baton-Sha256: hex digest (the fetcher checks the digest the
//        producing step recorded in its result when it has one, else this one). The token is
//        compared in constant time.
//   403 bad token, 400 path outside the job folder ("..", absolute, symlink out), 404 missing,
//   413 larger than the agent's --max-artifact-bytes.
//
// Copies land in the consumer's job folder under .fetched/STEP/RELATIVE. Thread-safe functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "baton/status.h"

namespace baton::cluster {

// Hex SHA-256 of a byte string / a file ("" when unreadable).
std::string Sha256Hex(const std::string& data);
std::string Sha256File(const std::filesystem::path& file);

// Serves `root` (the node's work folder; one subfolder per job) read-only on host:port.
class ArtifactServer {
 public:
  ArtifactServer(std::filesystem::path root, std::string token, uint64_t max_bytes);
  ~ArtifactServer();
  // Binds (port 0: any free port) and serves on a thread. Returns the bound port, or -1.
  int Start(const std::string& host, int port);
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Fetches JOB/RELATIVE from the agent at `address` (HOST:PORT) into `dest` (streamed to a
// temporary name, renamed when complete), checking the size bound and the SHA-256: the one the
// producing step recorded (`expected_sha256`) when known, else the one the server sends. An error
// is one line naming what failed.
Status FetchArtifact(const std::string& address, const std::string& token, const std::string& job,
                   const std::string& relative, const std::filesystem::path& dest, uint64_t max_bytes,
                   const std::string& expected_sha256 = "");

// True when `relative` is a clean relative path (no "..", not absolute, not empty).
bool SafeRelative(const std::string& relative);

}  // namespace baton::cluster
