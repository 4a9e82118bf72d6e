#include "cluster/fence.h"

#include <charconv>

#include <fmt/format.h>

namespace baton::cluster {

StreamId StreamId::Parse(std::string_view s) {
  StreamId id;
  const size_t dash = s.find('-');
  const std::string_view ms = s.substr(0, dash);
  if (std::from_chars(ms.data(), ms.data() + ms.size(), id.ms).ec != std::errc()) return {};
  if (dash != std::string_view::npos) {
    const std::string_view seq = s.substr(dash + 1);
    if (std::from_chars(seq.data(), seq.data() + seq.size(), id.seq).ec != std::errc()) return {};
  }
  return id;
}

std::string StreamId::ToString() const { return fmt::format("{}-{}", ms, seq); }

AgentReport AgentReport::FromRegistration(const Json& reg) {
  AgentReport r;
  auto read = reg.find("read");
  auto holds = reg.find("holds");
  if (read == reg.end() || !read->is_string() || holds == reg.end() || !holds->is_array()) return r;
  r.valid = true;
  r.incarnation = reg.value("incarnation", "");
  r.read = StreamId::Parse(read->get<std::string>());
  if (auto beat = reg.find("beat"); beat != reg.end() && beat->is_number_unsigned()) r.beat = beat->get<uint64_t>();
  for (const auto& h : *holds) {
    if (!h.is_object()) continue;
    auto serial = h.find("serial");
    if (serial == h.end() || !serial->is_number_integer() || serial->get<int64_t>() < 0 ||
        serial->get<int64_t>() > UINT32_MAX)
      continue;
    Key key{h.value("job", ""), static_cast<uint32_t>(serial->get<int64_t>()), h.value("term", "")};
    if (h.value("done", false)) r.finished.insert(key);
    r.holds.insert(std::move(key));
  }
  return r;
}

void AttemptFence::NewTerm(std::string term) {
  term_ = std::move(term);
  placed_.clear();
  stopped_.clear();
  unwanted_.clear();
}

void AttemptFence::Placed(uint32_t job, uint32_t serial, uint32_t node, std::string incarnation) {
  placed_[job] = Attempt{serial, node, term_, std::move(incarnation)};
}

void AttemptFence::Delivered(uint32_t job, StreamId entry) {
  if (auto it = placed_.find(job); it != placed_.end()) it->second.entry = entry;
}

void AttemptFence::Restored(uint32_t job, uint32_t serial, uint32_t node, std::string term, std::string incarnation,
                            StreamId entry) {
  Attempt a{serial, node, std::move(term), std::move(incarnation)};
  a.entry = entry;
  placed_[job] = std::move(a);
}

const std::string& AttemptFence::TermOf(uint32_t job) const {
  static const std::string kNone;
  auto it = placed_.find(job);
  return it == placed_.end() ? kNone : it->second.term;
}

bool AttemptFence::Accept(uint32_t job, uint32_t serial, const std::string& term, int node,
                          const std::string& incarnation) const {
  auto it = placed_.find(job);
  if (it == placed_.end()) return false;
  const Attempt& a = it->second;
  return a.serial == serial && a.term == term && node >= 0 && a.node == static_cast<uint32_t>(node) &&
         a.incarnation == incarnation;
}

AttemptFence::Verdict AttemptFence::Reconcile(const std::map<uint32_t, AgentReport>& reports, const Callbacks& cb) {
  Verdict v;
  for (auto it = placed_.begin(); it != placed_.end();) {
    const uint32_t job = it->first;
    Attempt& a = it->second;
    if (!cb.in_flight(job, a.serial, a.node)) {
      it = placed_.erase(it);
      continue;
    }
    ++it;
    auto r = reports.find(a.node);
    if (r == reports.end() || !r->second.valid || r->second.incarnation != a.incarnation) continue;
    const AgentReport& report = r->second;
    if (report.holds.count({cb.job_id(job), a.serial, a.term}) || a.entry > report.read) {
      a.suspect = false;  // held, or not read yet
      continue;
    }
    if (!a.suspect) {
      a.suspect = true;
      a.suspect_drains = drains_;
    } else if (drains_ > a.suspect_drains) {
      v.lost.emplace_back(job, a.serial);
    }
  }
  // Attempts agents hold that the head does not want: stopped once each.
  std::set<std::pair<uint32_t, AgentReport::Key>> still;
  for (const auto& [node, report] : reports) {
    if (!report.valid) continue;
    for (const auto& key : report.holds) {
      if (report.finished.count(key)) continue;  // its result is on its way; nothing to stop
      const auto& [id, serial, term] = key;
      const int job = cb.job_index(id);
      bool wanted = false;
      if (job >= 0) {
        auto p = placed_.find(static_cast<uint32_t>(job));
        wanted = p != placed_.end() && p->second.serial == serial && p->second.term == term && p->second.node == node &&
                 p->second.incarnation == report.incarnation;
      }
      if (wanted) continue;
      const std::pair<uint32_t, AgentReport::Key> k{node, key};
      still.insert(k);
      auto seen = unwanted_.emplace(k, report.beat).first;
      if (report.beat > seen->second && !stopped_.count(k)) {
        v.stop.emplace_back(node, key);
        stopped_.insert(k);
      }
    }
  }
  // Forget what agents no longer list.
  for (auto it = unwanted_.begin(); it != unwanted_.end();)
    it = still.count(it->first) ? std::next(it) : unwanted_.erase(it);
  for (auto it = stopped_.begin(); it != stopped_.end();) it = still.count(*it) ? std::next(it) : stopped_.erase(it);
  return v;
}

}  // namespace baton::cluster
