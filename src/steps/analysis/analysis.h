// The job's analysis: the published analysis shape (docs/schema/analysis.md,
// docs/schema/analysis.schema.json, version 1) and its one typed reader.
//
// Any step may contribute to a job's analysis: the built-in `analyze`, a `command` step (its JSON
// output line, result["output"]) or a `worker` step (its output, which is the step's result).
// ReadAnalysis merges every earlier step's contribution in pipeline order:
//   - media: a later contribution's keys replace the earlier ones;
//   - scenes: a later non-empty list replaces the earlier one (its keyframes are that step's);
//   - transcript: one per language; a later transcript replaces an earlier one of the same
//     language (tags compared without regard to case), one in another language is added;
//   - captions, tags, labels, notes: added, each with the engine (and step) that produced it.
// The `llm` and `document` steps read the analysis only through this header.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "baton/step.h"

namespace baton::analysis {

inline constexpr int kVersion = 1;

struct VideoFacts {
  std::string codec;
  double width = 0;
  double height = 0;
  double fps = 0;
};

struct AudioFacts {
  std::string codec;
  double sample_rate = 0;
  double channels = 0;
};

struct Media {
  bool known = false;     // some step said something about the media
  double duration = 0;    // seconds; 0 when unknown
  std::string container;
  std::optional<VideoFacts> video;  // nullopt: no video stream (or unknown)
  std::optional<AudioFacts> audio;  // nullopt: no audio stream (or unknown)
};

struct Scene {
  int index = 0;          // 1-based
  double start = 0;
  double end = 0;
  std::string keyframe;   // relative to the step's job folder (or absolute); "" when none
  std::string ocr;        // the on-screen text; "" when none
  std::string step;       // the step that produced it (for its keyframe artifact)
};

struct Segment {
  double start = 0;
  double end = 0;
  std::string text;
  double confidence = -1;  // 0..1; -1 when the engine gives none
  std::string speaker;
};

struct Transcript {
  std::string language;   // BCP 47 tag; "" when unknown (the bare list written before version 1)
  std::string engine;
  std::string step;
  std::vector<Segment> segments;  // in time order; blank texts dropped
};

// One entry of captions, tags or labels: `text` is the caption, tag or label.
struct Item {
  std::string text;
  double start = -1;       // seconds; -1 when not timed
  double end = -1;
  int scene = 0;           // the scene it belongs to (1-based); 0 when none
  double confidence = -1;
};

struct Section {
  std::string engine;
  std::string step;
  std::string language;    // "" when not said
  std::vector<Item> items;
};

struct Note {
  std::string text;
  std::string engine;      // "" for the built-in analyze's own notes
  std::string step;
};

struct Analysis {
  Media media;
  std::vector<Scene> scenes;
  std::vector<Transcript> transcripts;  // one per language, in contribution order
  std::vector<Section> captions, tags, labels;
  std::vector<Note> notes;
  std::string device;           // where analyze decoded ("cpu", "cuda:0"); "" when unknown
  std::string transcript_note;  // why the built-in recogniser did not transcribe
  std::vector<std::string> steps;  // the steps that contributed, in merge order

  // The transcript to summarise and report: the one in `language` (matched on the primary
  // subtag: "zh-CN" matches "zh", "zh-TW"), else the last with segments, else the last; null
  // when there is none.
  const Transcript* Primary(const std::string& language) const;
};

// The keys of the shape at the top level of a step's output.
bool IsContribution(const Json& output);

// What a step's result contributes: a `command` step's result ({exit_code, stdout, stderr,
// output}) contributes its "output"; any other result (a built-in's, a worker's) itself. Null
// JSON when the step contributes nothing.
const Json& ContributionOf(const Json& result);

// "" when `output`'s parts of the shape are well formed; else one line naming the first bad
// field ("transcript.segments[2].start: missing"). Keys outside the shape are ignored.
std::string CheckContribution(const Json& output);

// Merges one contribution of step `step` into `into` by the rules above. Returns "" or the
// CheckContribution message.
std::string Merge(const Json& contribution, const std::string& step, Analysis* into);

struct ReadResult {
  Analysis analysis;
  std::string error;  // "" on success; else "step 'transcribe' breaks the analysis shape: ..."
  bool ok() const { return error.empty(); }
};

// Reads the job's analysis from its earlier steps' results: `base` (the step named by the
// caller's with.from, usually "analyze") and every other earlier step whose contribution has
// a key of the shape, in the order of ctx.history (without a history: `base` first, then the
// others by name). Fails on the first contribution that breaks the shape.
ReadResult ReadAnalysis(const StepContext& ctx, const std::string& base);

}  // namespace baton::analysis
