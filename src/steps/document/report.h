// The document step's report: a plain value gathered from the job's results (ReportData), and two
// renderers of it, Markdown and self-contained HTML. Rendering does no IO.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace baton::document {

struct Segment {
  double start = 0;
  double end = 0;
  std::string text;
};

struct Chapter {
  int index = 0;
  double start = 0;
  double end = 0;
  std::string ocr;
  std::string image_bytes;  // the keyframe; "" when unavailable
  std::string image_mime;   // "image/jpeg", "image/png", …
  std::string image_file;   // for Markdown: path relative to the report, e.g. "report-keyframes/scene-001.jpg"
  std::string image_note;   // why there is no keyframe
  std::vector<Segment> segments;
};

// What a model added (captions, tags, labels, notes): a heading naming the kind and the engine,
// and its lines, already formatted ("[0:06] a chart on a slide", "finance (0.92)").
struct ModelSection {
  std::string heading;
  std::vector<std::string> lines;
};

struct RecordRow {
  std::string step, node, status, gpus;
  int attempt = 0;
  double seconds = 0;
};

struct ReportData {
  std::string lang = "en";  // BCP 47 tag of the job's language (<html lang>)
  std::string ui = "en";    // which words the report uses: "en", "zh-Hans", "zh-Hant" (strings.h)
  std::string date;         // when it was made, in the report's language ("" to leave out)
  std::string title;
  std::string source;
  std::string job;
  std::vector<std::pair<std::string, std::string>> facts;  // media facts, in display order
  std::string summary;      // Markdown; "" when none
  std::string summary_by;   // "Summary by openai / gpt-4o-mini" or the extractive notice
  std::string summary_note; // why there is no summary
  std::vector<Chapter> chapters;
  std::string chapters_note;
  std::vector<Segment> transcript;
  std::string transcript_note;
  std::string transcript_by;  // "Transcript by whisper (en, step transcribe)." or ""
  std::vector<ModelSection> models;  // empty: no section "From models"
  std::vector<RecordRow> record;
  std::string record_note;
  std::string tokens;       // "1234 prompt + 567 completion tokens in 3 requests", or ""
};

// "m:ss" under an hour, else "h:mm:ss".
std::string Timestamp(double seconds);

std::string RenderMarkdown(const ReportData& report);
std::string RenderHtml(const ReportData& report);

}  // namespace baton::document
