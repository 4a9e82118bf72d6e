// The one list of a job's and an attempt's JSON fields. Every writer and reader of the job JSON
// goes through these lists: the views (AttemptJson/JobView, driver/views.cc), summary.json and
// jobs.jsonl (RunReport::ToJson and the streamed AppendJobJson, runtime/report.cc) and the Redis
// attempt records read back (AttemptFromJson). A new field is one line here plus the schema
// (docs/schema/baton.schema.json).
//
// `f(key, member, written)`: a writer puts `member` under `key` when `written`; a reader reads
// `key` into `member` when it is there (a member given as a temporary, such as "seconds", is
// derived and only written). Order is the order of the streamed output.
#pragma once

#include "baton/report.h"

namespace baton::driver {

template <class A, class F>
void ForEachAttemptField(A& a, F&& f) {
  const bool ended = a.status != "running";
  f("step", a.step, true);
  f("attempt", a.attempt, true);
  f("node", a.node, true);
  f("status", a.status, true);
  f("start", a.start, true);
  f("end", a.end, ended);
  f("seconds", static_cast<double>(a.end - a.start), ended);
  f("gpus", a.gpus, true);
  f("error", a.error, !a.error.empty());
  f("placed", a.placed, a.placed > 0 && a.placed != a.start);
  f("batch", a.batch, !a.batch.empty());
}

// A job's own fields, before its attempts; `attempts`, `llm` (derived from the results) and
// `results` follow in that order in every writer.
template <class J, class F>
void ForEachJobField(J& j, F&& f) {
  f("id", j.id, true);
  f("input", j.input, true);
  f("state", j.status, true);
  f("error", j.error, !j.error.empty());
}

// Writes fields into a Json object.
struct JsonFieldWriter {
  Json* out;
  template <class T>
  void operator()(const char* key, const T& v, bool written) const {
    if (written) (*out)[key] = v;
  }
};

// Reads fields of a Json object into members; missing or mistyped ones stay as they are.
struct JsonFieldReader {
  const Json* in;
  template <class T>
  void operator()(const char* key, T& v, bool) const {
    const auto it = in->find(key);
    if (it == in->end() || it->is_null()) return;
    try {
      v = it->template get<T>();
    } catch (const Json::exception&) {  // a field of another type: left as it was
    }
  }
  template <class T>
  void operator()(const char*, const T&, bool) const {}  // derived: written only
};

}  // namespace baton::driver
