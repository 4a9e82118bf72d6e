// The JSON API, live events and reports of the dashboard (see docs/dashboard.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "dashboard/request.h"
#include "dashboard/server_impl.h"

namespace baton::dashboard {
namespace {

namespace fs = std::filesystem;

// A non-negative integer query parameter; false (and a 400 reply) when malformed.
bool IntParam(const httplib::Request& req, const char* name, size_t def, size_t max, size_t* out,
              httplib::Response& res) {
  if (!req.has_param(name)) {
    *out = def;
    return true;
  }
  const std::string v = req.get_param_value(name);
  const std::optional<size_t> n = ParseCount(v, max);
  if (!n) {
    ReplyJson(res, 400, {{"error", fmt::format("{}={}: not a non-negative integer", name, v)}});
    return false;
  }
  *out = *n;
  return true;
}

// The last `max_bytes` of a file, starting at a line boundary; "" when missing.
std::string FileTail(const fs::path& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start =
      size > static_cast<std::streamoff>(max_bytes) ? size - static_cast<std::streamoff>(max_bytes) : 0;
  in.seekg(start);
  std::string text(static_cast<size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (start > 0) {
    const size_t nl = text.find('\n');
    text = nl == std::string::npos ? text : text.substr(nl + 1);
  }
  return text;
}

std::string FileType(const fs::path& p) {
  const std::string ext = p.extension().string();
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".md" || ext == ".txt" || ext == ".log") return "text/plain; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".png") return "image/png";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".css") return "text/css; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace

std::shared_ptr<const JobsView> DashboardServer::Impl::View() const {
  const uint64_t events = hub->EventCount();
  {
    std::lock_guard lock(view_mu);
    if (view && view->events == events) return view;
  }
  auto v = std::make_shared<JobsView>();
  v->events = events;
  v->overview = source->Overview();
  v->taken = std::chrono::steady_clock::now();
  for (const auto& s : JobStates()) v->counts[s] = 0;
  const Json counts = v->overview.value("counts", Json::object());  // named: items() of a temporary dangles
  for (const auto& [state, n] : counts.items()) v->counts[state] = n.get<size_t>();
  const Json steps = v->overview.value("steps", Json::array());
  for (const auto& s : steps)
    v->at_step[{s.value("step", ""), s.value("state", "")}] = s.value("jobs", size_t{0});
  std::lock_guard lock(view_mu);
  if (!view || view->events <= events) view = v;
  return v;
}

void DashboardServer::Impl::DropView() const {
  std::lock_guard lock(view_mu);
  view.reset();
}

void DashboardServer::Impl::HandleJobs(const httplib::Request& req, httplib::Response& res) const {
  std::set<std::string> states;
  if (req.has_param("state")) {
    std::string unknown;
    if (!ParseStates(req.get_param_value("state"), &states, &unknown)) {
      ReplyJson(
          res, 400,
          {{"error",
            fmt::format("state={}: unknown state (ready, backoff, running, succeeded, failed, cancelled)", unknown)}});
      return;
    }
  }
  size_t offset = 0, limit = 0;
  if (!IntParam(req, "offset", 0, SIZE_MAX, &offset, res) || !IntParam(req, "limit", 100, 1000, &limit, res)) return;
  JobsQuery query;
  query.states.assign(states.begin(), states.end());
  query.text = req.has_param("q") ? req.get_param_value("q") : "";
  query.offset = offset;
  query.limit = limit;
  const auto v = View();
  Json counts = Json::object();
  for (const auto& [state, n] : v->counts) counts[state] = n;
  Json page = source->JobsPage(query);  // a JSON object for the page's jobs only
  const size_t total = page.value("total", size_t{0});
  const size_t shown = page["jobs"].size();
  Json reply = {{"pipeline", v->overview.value("pipeline", "")}, {"time", v->Now()}, {"total", total},
                {"offset", offset}, {"limit", limit}, {"counts", counts}, {"jobs", std::move(page["jobs"])}};
  if (offset + shown < total) reply["next_offset"] = offset + shown;  // the cursor of the next page
  reply["llm"] = v->overview.value("llm", Json::object());
  for (const char* key : {"parked", "batches"})  // parked attempts and LLM batches (mode: batch)
    if (v->overview.contains(key)) reply[key] = v->overview[key];
  ReplyJson(res, 200, reply);
}

void DashboardServer::Impl::HandleJob(const std::string& id, httplib::Response& res) const {
  Json d = source->JobDetail(id);
  if (d.is_null()) {
    ReplyJson(res, 404, {{"error", fmt::format("job {}: unknown", id)}});
    return;
  }
  d["log"] = hub->LogTail(id);
  d["progress"] = hub->Progress(id);
  // Command steps keep their output in the node's job folder, moved to OUT/<job>/logs/ when the
  // job succeeded and its work folder was removed: show its tail per attempt.
  if (d.contains("attempts") && d["attempts"].is_array()) {
    const fs::path kept = source->ReportDir(id);
    for (auto& a : d["attempts"]) {
      const fs::path dir = source->JobWorkdir(id, a.value("node", ""));
      const std::string base = fmt::format("{}.{}", a.value("step", ""), a.value("attempt", 0));
      for (const char* stream : {"stdout", "stderr"}) {
        const std::string name = base + "." + stream;
        std::error_code ec;
        for (const fs::path& folder : {dir, kept}) {
          if (folder.empty() || !fs::is_regular_file(folder / "logs" / name, ec)) continue;
          a[std::string(stream) + "_tail"] = FileTail(folder / "logs" / name, options.file_tail_bytes);
          break;
        }
      }
    }
  }
  Json report = Json::object();
  const fs::path dir = source->ReportDir(id);
  std::error_code ec;
  if (!dir.empty() && fs::is_regular_file(dir / "report.html", ec)) report["html"] = "/report/" + id + "/report.html";
  if (!dir.empty() && fs::is_regular_file(dir / "report.md", ec)) report["markdown"] = "/report/" + id + "/report.md";
  d["report"] = report;
  ReplyJson(res, 200, d);
}

void DashboardServer::Impl::HandleAction(const httplib::Request& req, httplib::Response& res, bool cancel) {
  const std::string id = req.matches[1];
  switch (Authorise(req)) {
    case Auth::kMissing:
      res.set_header("WWW-Authenticate", "Bearer");
      ReplyJson(res, 401, {{"error", "this action needs the dashboard token"}});
      return;
    case Auth::kWrong: ReplyJson(res, 403, {{"error", "wrong dashboard token"}}); return;
    case Auth::kOk: break;
  }
  if (source->JobDetail(id).is_null()) {
    ReplyJson(res, 404, {{"error", fmt::format("job {}: unknown", id)}});
    return;
  }
  const bool ok = cancel ? source->Cancel(id) : source->Retry(id);
  DropView();
  if (!ok) {
    ReplyJson(res, 409,
              {{"error", cancel ? fmt::format("job {}: already ended", id)
                                : fmt::format("job {}: only a failed job of a live run can be retried", id)}});
    return;
  }
  ReplyJson(res, 200, {{"ok", true}, {"job", id}, {"action", cancel ? "cancel" : "retry"}});
}

void DashboardServer::Impl::HandleEvents(httplib::Response& res) {
  // Each live stream holds a request thread: past the bound, refuse, so that open tabs never
  // starve the API (or, through it, the actions) of threads.
  if (streams.fetch_add(1) >= options.max_streams) {
    streams.fetch_sub(1);
    res.set_header("Retry-After", "10");
    ReplyJson(res, 503,
              {{"error", fmt::format("too many live streams ({} open); close a dashboard tab", options.max_streams)}});
    return;
  }
  // Connect first, then snapshot: nothing falls between; repeats are harmless to clients.
  // Bounded whatever the number of jobs: counts (the jobs table pages through /api/jobs), the
  // nodes, the most recent attempt bars and the series.
  auto client = hub->Connect();
  const auto v = View();
  Json counts = Json::object();
  for (const auto& [state, n] : v->counts) counts[state] = n;
  Json snap = {{"type", "snapshot"},
               {"pipeline", v->overview.value("pipeline", "")},
               {"time", v->Now()},
               {"total", v->overview.value("total", size_t{0})},
               {"counts", counts},
               {"nodes", v->overview.value("nodes", Json::array())},
               {"attempts", hub->Timeline(kSnapshotBars)},
               {"series", hub->Series()},
               {"token_required", !options.token.empty()}};
  auto first = std::make_shared<std::string>(
      "retry: 2000\ndata: " + snap.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n");
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Accel-Buffering", "no");
  std::shared_ptr<EventHub> h = hub;
  res.set_chunked_content_provider(
      "text/event-stream",
      [client, first](size_t, httplib::DataSink& sink) {
        if (!first->empty()) {
          std::string s;
          s.swap(*first);
          return sink.write(s.data(), s.size());
        }
        std::vector<std::string> msgs;
        const bool open = client->Wait(&msgs, 10000);
        if (msgs.empty()) {
          if (!open) {
            sink.done();
            return true;
          }
          static constexpr char kPing[] = ": ping\n\n";  // keeps proxies and dead-peer checks honest
          return sink.write(kPing, sizeof kPing - 1);
        }
        std::string all;
        for (auto& m : msgs) all += m;
        return sink.write(all.data(), all.size());
      },
      [h, client, self = this](bool) {
        h->Disconnect(client);
        self->streams.fetch_sub(1);
      });
}

void DashboardServer::Impl::HandleReport(const std::string& id, const std::string& rest, httplib::Response& res) const {
  auto refuse = [&res](int status, const std::string& why) {
    res.status = status;
    res.set_content(why + "\n", "text/plain; charset=utf-8");
  };
  if (!SafeJobId(id) || source->JobDetail(id).is_null()) return refuse(404, "unknown job");
  const fs::path dir = source->ReportDir(id);
  if (dir.empty()) return refuse(404, "the report is not on this machine");
  std::error_code ec;
  fs::path file;
  if (rest.empty()) {
    file = fs::is_regular_file(dir / "report.html", ec) ? dir / "report.html" : dir / "report.md";
  } else {
    // Only plain relative names below the job's folder: no "..", no absolute paths, and no
    // symbolic link that leads out of it.
    if (!SafeReportPath(rest)) return refuse(400, "bad path");
    file = dir / fs::path(rest);
  }
  const fs::path root = fs::weakly_canonical(dir, ec);
  const fs::path real = fs::weakly_canonical(file, ec);
  const std::string r = root.string() + "/";
  if (ec || real.string().compare(0, r.size(), r) != 0) return refuse(400, "bad path");
  if (!fs::is_regular_file(real, ec))
    return refuse(404, rest.empty() ? "no report for job " + id + " yet" : "not found");
  // Streamed in chunks from one open descriptor (command logs can be gigabytes): never whole in
  // memory. O_NOFOLLOW: the name checked above cannot have become a link since.
  const int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    return refuse(404, "not found");
  }
  auto open_file = std::shared_ptr<int>(new int(fd), [](int* f) {
    ::close(*f);
    delete f;
  });
  // Reports are documents, not apps: no scripts, and only this server's files.
  res.set_header("Content-Security-Policy",
                 "sandbox; default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:");
  res.set_header("X-Content-Type-Options", "nosniff");
  // The size when opened: a log still growing is served as it was (Content-Length must hold).
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return res.set_content("", FileType(real));
  res.set_content_provider(size, FileType(real),
                           [open_file, size](size_t offset, size_t length, httplib::DataSink& sink) {
                             char buf[64 * 1024];
                             const size_t want = std::min({length, sizeof buf, size - offset});
                             ssize_t n;
                             do {
                               n = ::pread(*open_file, buf, want, static_cast<off_t>(offset));
                             } while (n < 0 && errno == EINTR);
                             if (n <= 0) return false;  // truncated meanwhile: the client sees a short body
                             return sink.write(buf, static_cast<size_t>(n));
                           });
}

void DashboardServer::Impl::AddApiRoutes() {
  http.Get("/api/jobs", [this](const httplib::Request& req, httplib::Response& res) { HandleJobs(req, res); });
  http.Get(R"(/api/jobs/([^/]+))",
           [this](const httplib::Request& req, httplib::Response& res) { HandleJob(req.matches[1], res); });
  http.Post(R"(/api/jobs/([^/]+)/cancel)",
            [this](const httplib::Request& req, httplib::Response& res) { HandleAction(req, res, true); });
  http.Post(R"(/api/jobs/([^/]+)/retry)",
            [this](const httplib::Request& req, httplib::Response& res) { HandleAction(req, res, false); });
  http.Get("/api/nodes", [this](const httplib::Request&, httplib::Response& res) {
    const auto v = View();
    ReplyJson(res, 200, {{"time", v->Now()}, {"nodes", v->overview.value("nodes", Json::array())}});
  });
  http.Get("/api/timeline", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, 200, {{"attempts", hub->Timeline()}});
  });
  http.Get("/api/series", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, 200, {{"points", hub->Series()}});
  });
  http.Get("/api/auth", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyJson(res, 200, {{"token_required", !options.token.empty()}, {"authorised", Authorise(req) == Auth::kOk}});
  });
  // The page's token box: the token travels in the body (never in a URL, where history, logs and
  // Referer keep it) and comes back as an HttpOnly cookie. POSTs are same-origin only (server.cc).
  http.Post("/api/auth", [this](const httplib::Request& req, httplib::Response& res) {
    std::string given = req.body;
    while (!given.empty() && (given.back() == '\n' || given.back() == '\r' || given.back() == ' ')) given.pop_back();
    if (options.token.empty()) {
      ReplyJson(res, 200, {{"token_required", false}, {"authorised", true}});
      return;
    }
    if (!ConstantTimeEquals(given, options.token)) {
      ReplyJson(res, 403, {{"error", "wrong token"}});
      return;
    }
    res.set_header("Set-Cookie", "token=" + given + "; Path=/; HttpOnly; SameSite=Strict");
    ReplyJson(res, 200, {{"token_required", true}, {"authorised", true}});
  });
  http.Get("/api/events", [this](const httplib::Request&, httplib::Response& res) { HandleEvents(res); });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(PrometheusMetrics(*View(), hub->Metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });
}

void DashboardServer::Impl::AddReportRoutes() {
  http.Get(R"(/report/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!SafeJobId(id) || source->JobDetail(id).is_null()) {
      res.status = 404;
      res.set_content("unknown job\n", "text/plain; charset=utf-8");
      return;
    }
    res.status = 301;
    res.set_header("Location", "/report/" + id + "/");
  });
  http.Get(R"(/report/([^/]+)/(.*))", [this](const httplib::Request& req, httplib::Response& res) {
    HandleReport(req.matches[1], req.matches[2], res);
  });
}

}  // namespace baton::dashboard
