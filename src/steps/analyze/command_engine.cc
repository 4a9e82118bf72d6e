// Command engines: a user's program (whisper.cpp, a GPU model, ...) as the ASR or OCR engine. It
// is run with posix_spawnp from argv (never a shell), with CUDA_VISIBLE_DEVICES set to the granted
// GPUs, and its stdout is parsed as JSON (or plain text for OCR).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "steps/analyze/analyze.h"
#include "util/secrets.h"

extern char** environ;

namespace baton::analyze {
namespace {

constexpr size_t kMaxStdout = 64u << 20;
constexpr size_t kErrKeep = 4096;

std::string JoinIds(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

std::string LastLine(const std::string& s) {
  size_t end = s.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  size_t begin = s.find_last_of('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return s.substr(begin, end - begin + 1);
}

std::string Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

void KillGroup(pid_t pid) {
  kill(-pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {  // 2.5 s of grace, then SIGKILL
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    usleep(50 * 1000);
  }
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

std::string Program(const std::vector<std::string>& argv) { return argv.empty() ? "" : argv[0]; }

}  // namespace

std::vector<std::string> SubstituteArgv(const std::vector<std::string>& argv,
                                        const std::vector<std::pair<std::string, std::string>>& values) {
  std::vector<std::string> out;
  for (std::string arg : argv) {
    for (const auto& [key, value] : values) {
      for (size_t pos = 0; (pos = arg.find(key, pos)) != std::string::npos; pos += value.size()) {
        arg.replace(pos, key.size(), value);
      }
    }
    out.push_back(std::move(arg));
  }
  return out;
}

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const std::vector<int>& gpus,
                                 const CancelToken* cancel) {
  if (argv.empty()) return Status::Failed("empty command", false);
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Status::Failed(std::string("pipe: ") + std::strerror(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return Status::Failed(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    // Baton's secrets (API keys, a Redis URL with its password) are no engine's business.
    if (std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) == 0 || WithheldFromChildren(*e, {})) continue;
    env_store.emplace_back(*e);
  }
  env_store.push_back("CUDA_VISIBLE_DEVICES=" + JoinIds(gpus));
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = argv;
  for (auto& a : argv_store) args.push_back(a.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // own group: cancel kills its children too
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    if (rc == ENOENT) return Status::Failed("command '" + argv[0] + "' not found", false);
    return Status::Failed("cannot start '" + argv[0] + "': " + std::strerror(rc), rc != EACCES);
  }

  CommandOutput result;
  std::string err;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (cancel != nullptr && cancel->cancelled()) {
      close(out_pipe[0]);
      close(err_pipe[0]);
      KillGroup(pid);
      return Status::Cancelled();
    }
    if (poll(fds, 2, 100) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else if (i == 0) {
        if (result.out.size() < kMaxStdout) result.out.append(buf, size_t(n));
      } else {
        err.append(buf, size_t(n));
        if (err.size() > 2 * kErrKeep) err.erase(0, err.size() - kErrKeep);
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  // The child closed its output; it may still be running (or have left a grandchild holding
  // nothing): wait for it, still honouring cancel.
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (cancel != nullptr && cancel->cancelled()) {
      KillGroup(pid);
      return Status::Cancelled();
    }
    usleep(20 * 1000);
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.err_tail = LastLine(err);
  return result;
}

Result<std::vector<TranscriptSegment>> ParseAsrOutput(std::string_view text) {
  const Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Failed("its output is not a JSON object", false);
  std::vector<TranscriptSegment> out;
  auto text_of = [](const Json& item) { return Trim(item.value("text", std::string())); };
  if (j.contains("segments")) {
    const Json& segs = j["segments"];
    if (!segs.is_array()) return Status::Failed("\"segments\" is not an array", false);
    for (size_t i = 0; i < segs.size(); ++i) {
      const Json& s = segs[i];
      if (!s.is_object() || !s.value("start", Json()).is_number() || !s.value("end", Json()).is_number() ||
          !s.value("text", Json()).is_string()) {
        return Status::Failed("segments[" + std::to_string(i) + "] needs numeric start, end and a text", false);
      }
      out.push_back(TranscriptSegment{s["start"].get<double>(), s["end"].get<double>(), text_of(s), {}});
    }
  } else if (j.contains("transcription")) {
    const Json& segs = j["transcription"];
    if (!segs.is_array()) return Status::Failed("\"transcription\" is not an array", false);
    for (size_t i = 0; i < segs.size(); ++i) {
      const Json& s = segs[i];
      const Json off = s.is_object() ? s.value("offsets", Json()) : Json();
      if (!off.is_object() || !off.value("from", Json()).is_number() || !off.value("to", Json()).is_number() ||
          !s.value("text", Json()).is_string()) {
        return Status::Failed("transcription[" + std::to_string(i) + "] needs offsets.from, offsets.to (ms) and a text",
                              false);
      }
      out.push_back(
          TranscriptSegment{off["from"].get<double>() / 1000.0, off["to"].get<double>() / 1000.0, text_of(s), {}});
    }
  } else {
    return Status::Failed("expected {\"segments\": [...]} or whisper.cpp's {\"transcription\": [...]}", false);
  }
  std::erase_if(out, [](const TranscriptSegment& s) { return s.text.empty(); });
  return out;
}

Result<std::string> ParseOcrOutput(std::string_view text) {
  std::string t = Trim(text);
  if (!t.empty() && t.front() == '{') {
    const Json j = Json::parse(t, nullptr, false);
    if (!j.is_discarded()) {
      if (!j.is_object() || !j.value("text", Json()).is_string()) {
        return Status::Failed("its JSON output has no string \"text\"", false);
      }
      return Trim(j["text"].get<std::string>());
    }
  }
  return t;
}

namespace {

// Runs an engine command and returns its stdout; every failure names the engine and program.
Result<std::string> RunEngine(const std::string& kind, const std::vector<std::string>& args,
                              const std::vector<int>& gpus, const CancelToken* cancel, std::string* what) {
  *what = kind + " command '" + Program(args) + "'";
  auto run = RunCommand(args, gpus, cancel);
  if (!run.ok()) {
    if (run.status.code == Status::Code::kCancelled) return run.status;
    return Status::Failed(*what + ": " + run.status.message, run.status.retryable);
  }
  if (run.value.exit_code != 0) {
    return Status::Failed(*what + " exited with status " + std::to_string(run.value.exit_code) +
                          (run.value.err_tail.empty() ? "" : ": " + run.value.err_tail));
  }
  return std::move(run.value.out);
}

}  // namespace

Result<std::vector<TranscriptSegment>> RunAsrCommand(const std::vector<std::string>& argv,
                                                     const std::filesystem::path& wav,
                                                     const std::vector<int>& gpus, const CancelToken* cancel) {
  std::string what;
  auto out = RunEngine("asr", SubstituteArgv(argv, {{"{audio}", wav.string()}, {"{gpus}", JoinIds(gpus)}}), gpus,
                       cancel, &what);
  if (!out.ok()) return out.status;
  auto parsed = ParseAsrOutput(out.value);
  if (!parsed.ok()) return Status::Failed(what + ": " + parsed.status.message, false);
  return parsed;
}

Result<std::string> RunOcrCommand(const std::vector<std::string>& argv, const std::filesystem::path& image,
                                  const std::vector<int>& gpus, const CancelToken* cancel) {
  std::string what;
  auto out = RunEngine("ocr", SubstituteArgv(argv, {{"{image}", image.string()}, {"{gpus}", JoinIds(gpus)}}), gpus,
                       cancel, &what);
  if (!out.ok()) return out.status;
  auto parsed = ParseOcrOutput(out.value);
  if (!parsed.ok()) return Status::Failed(what + ": " + parsed.status.message, false);
  return parsed;
}

}  // namespace baton::analyze
