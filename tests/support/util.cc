#include "support/util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace baton::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "baton-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (std::getenv("BATON_KEEP_TEST_DIRS") == nullptr) std::filesystem::remove_all(path_, ec);
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("bind failed");
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

int RunProgram(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string out = log.empty() ? "/dev/null" : log;
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json ReadJobs(const std::filesystem::path& out) {
  std::ifstream in(out / "jobs.jsonl");
  std::map<std::pair<uint64_t, std::string>, nlohmann::json> by_key;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("id")) continue;
    const std::string id = j["id"].get<std::string>();
    uint64_t n = UINT64_MAX;
    if (id.rfind("job-", 0) == 0 && id.size() > 4 && id.find_first_not_of("0123456789", 4) == std::string::npos)
      n = std::stoull(id.substr(4));
    by_key[{n, id}] = std::move(j);
  }
  nlohmann::json jobs = nlohmann::json::array();
  for (auto& [key, j] : by_key) jobs.push_back(std::move(j));
  return jobs;
}

std::filesystem::path SourceDir() {
  const char* s = std::getenv("BATON_SOURCE_DIR");
  return s ? std::filesystem::path(s) : std::filesystem::current_path();
}

std::filesystem::path BinaryDir() {
  const char* s = std::getenv("BATON_BINARY_DIR");
  return s ? std::filesystem::path(s) : std::filesystem::current_path();
}

}  // namespace baton::testing

namespace baton::testing {

std::string SchemaErrors(const nlohmann::json& json, const std::string& definition, const std::string& schema) {
  TempDir dir;
  const auto doc = dir / "doc.json";
  std::ofstream(doc) << json.dump();
  const auto out = dir / "errors.txt";
  const int rc = RunProgram({"/usr/bin/python3", (SourceDir() / "tests/support/validate_json.py").string(),
                             (SourceDir() / schema).string(), doc.string(), definition},
                            out.string());
  return rc == 0 ? "" : "schema " + definition + ": " + ReadFile(out);
}

}  // namespace baton::testing
