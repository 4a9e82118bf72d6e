#include "cluster/artifacts.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

namespace baton::cluster {

namespace {

std::string Hex(const unsigned char* d, unsigned n) {
  std::string s;
  for (unsigned i = 0; i < n; ++i) s += fmt::format("{:02x}", d[i]);
  return s;
}

// Constant time in the token's length: a timing probe learns nothing of how much matched.
bool TokenMatches(const std::string& given, const std::string& want) {
  return given.size() == want.size() && !want.empty() && CRYPTO_memcmp(given.data(), want.data(), want.size()) == 0;
}

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const char* d, size_t n) { EVP_DigestUpdate(ctx_, d, n); }
  std::string Hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx_, out, &n);
    return baton::cluster::Hex(out, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

bool SafeJob(const std::string& job) {
  static const std::regex re(R"(^[A-Za-z0-9_][A-Za-z0-9_.-]*$)");
  return job != "." && job != ".." && std::regex_match(job, re);
}

}  // namespace

std::string Sha256Hex(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return Hex(out, n);
}

std::string Sha256File(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  Sha256 h;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.Update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.Hex();
}

bool SafeRelative(const std::string& relative) {
  if (relative.empty() || relative[0] == '/') return false;
  for (const auto& part : std::filesystem::path(relative))
    if (part == ".." || part.string().empty()) return false;
  return true;
}

struct ArtifactServer::Impl {
  std::filesystem::path root;
  std::string token;
  uint64_t max_bytes;
  httplib::Server server;
  std::thread thread;
};

ArtifactServer::ArtifactServer(std::filesystem::path root, std::string token, uint64_t max_bytes)
    : impl_(std::make_unique<Impl>()) {
  impl_->root = std::move(root);
  impl_->token = std::move(token);
  impl_->max_bytes = max_bytes;
  Impl* m = impl_.get();
  m->server.Get(R"(/v1/artifacts/([^/]+)/(.+))", [m](const httplib::Request& req, httplib::Response& res) {
    if (!TokenMatches(req.get_header_value("X-Baton-Token"), m->token)) {
      res.status = 403;
      res.set_content("bad or missing X-Baton-Token\n", "text/plain");
      return;
    }
    const std::string job = req.matches[1], rel = req.matches[2];
    if (!SafeJob(job) || !SafeRelative(rel)) {
      res.status = 400;
      res.set_content("path outside the job folder\n", "text/plain");
      return;
    }
    std::error_code ec;
    const auto base = std::filesystem::weakly_canonical(m->root / job, ec);
    const auto file = std::filesystem::weakly_canonical(m->root / job / rel, ec);
    const std::string b = base.string() + "/";
    if (ec || file.string().compare(0, b.size(), b) != 0) {
      res.status = 400;
      res.set_content("path outside the job folder\n", "text/plain");
      return;
    }
    if (!std::filesystem::is_regular_file(file, ec)) {
      res.status = 404;
      res.set_content("no such artifact\n", "text/plain");
      return;
    }
    const auto size = std::filesystem::file_size(file, ec);
    if (ec || size > m->max_bytes) {
      res.status = 413;
      res.set_content(fmt::format("artifact is {} bytes, over the bound of {}\n", size, m->max_bytes), "text/plain");
      return;
    }
    // Streamed in chunks: no whole file in memory, however large.
    res.set_header("X-Baton-Sha256", Sha256File(file));
    auto in = std::make_shared<std::ifstream>(file, std::ios::binary);
    res.set_content_provider(size, "application/octet-stream",
                             [in](size_t offset, size_t length, httplib::DataSink& sink) {
                               std::vector<char> buf(std::min<size_t>(length, 1 << 16));
                               in->seekg(static_cast<std::streamoff>(offset));
                               in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
                               const auto got = in->gcount();
                               if (got <= 0) return false;
                               return sink.write(buf.data(), static_cast<size_t>(got));
                             });
  });
}

ArtifactServer::~ArtifactServer() { Stop(); }

int ArtifactServer::Start(const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = impl_->server.bind_to_any_port(host);
  } else if (!impl_->server.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) return -1;
  impl_->thread = std::thread([m = impl_.get()] { m->server.listen_after_bind(); });
  return bound;
}

void ArtifactServer::Stop() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Status FetchArtifact(const std::string& address, const std::string& token, const std::string& job,
                   const std::string& relative, const std::filesystem::path& dest, uint64_t max_bytes,
                   const std::string& expected_sha256) {
  if (!SafeRelative(relative))
    return Status::Invalid("artifact path '" + relative + "' is not a clean relative path");
  const size_t colon = address.rfind(':');
  if (address.empty() || colon == std::string::npos)
    return Status::Invalid("node address '" + address + "' is not HOST:PORT");
  httplib::Client cli(address.substr(0, colon), std::atoi(address.c_str() + colon + 1));
  cli.set_connection_timeout(5);
  cli.set_read_timeout(60);
  std::error_code mkdir_ec;
  std::filesystem::create_directories(dest.parent_path(), mkdir_ec);
  if (mkdir_ec) return Status::Unavailable("cannot create " + dest.parent_path().string() + ": " + mkdir_ec.message());
  // Streamed to a temporary name unique to this fetch (two attempts never write the same file),
  // hashed on the way, renamed into place only when complete and matching.
  static std::atomic<uint64_t> fetches{0};
  const auto tmp = fmt::format("{}.part-{}-{}", dest.string(), getpid(), ++fetches);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) return Status::Unavailable("cannot write " + tmp);
  Sha256 hash;
  uint64_t bytes = 0;
  bool too_big = false;
  std::string error_body;
  auto res = cli.Get(("/v1/artifacts/" + job + "/" + relative).c_str(), {{"X-Baton-Token", token}},
                     [&](const char* data, size_t n) {
                       if (bytes + n > max_bytes) {
                         too_big = true;
                         return false;
                       }
                       bytes += n;
                       hash.Update(data, n);
                       out.write(data, static_cast<std::streamsize>(n));
                       if (error_body.size() < 200) error_body.append(data, std::min<size_t>(n, 200));
                       return static_cast<bool>(out);
                     });
  out.close();
  auto fail = [&](std::string why) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return Status::Unavailable(std::move(why));
  };
  if (too_big) return fail(fmt::format("artifact {} from {} is over {} bytes", relative, address, max_bytes));
  if (!res) {
    return fail(
        fmt::format("cannot fetch artifact {} from {}: {}", relative, address, httplib::to_string(res.error())));
  }
  if (res->status != 200) {
    return fail(fmt::format("artifact {} from {}: HTTP {}: {}", relative, address, res->status,
                            error_body.substr(0, error_body.find('\n'))));
  }
  if (!out) return fail("cannot write " + tmp);
  // The digest the producing step recorded when the consumer knows it; else the server's.
  const std::string want = expected_sha256.empty() ? res->get_header_value("X-Baton-Sha256") : expected_sha256;
  const std::string got = hash.Hex();
  if (want.empty() || want != got) {
    return fail(fmt::format("artifact {} from {}: checksum mismatch ({} {}, received {})", relative, address,
                            expected_sha256.empty() ? "sent" : "recorded by the step", want.empty() ? "none" : want,
                            got));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, dest, ec);
  if (ec) return fail("cannot rename " + tmp + " to " + dest.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace baton::cluster
