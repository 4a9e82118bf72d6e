// What the llm step summarises: the job's title and source (download result) and its analysis
// (steps/analysis/analysis.h, read from analyze and the steps that contributed). Plain values.
#pragma once

#include <string>
#include <vector>

namespace baton::llm {

struct TimedText {
  double start = 0;
  double end = 0;
  std::string text;
};

struct Material {
  std::string title;
  std::string source;
  double duration = 0;                // seconds; 0 when unknown
  std::vector<TimedText> transcript;  // speech segments in time order
  std::string transcript_language;    // its BCP 47 tag ("" unknown)
  std::string transcript_engine;      // what produced it ("" unknown)
  std::vector<TimedText> scenes;      // text = the scene's OCR text ("" when none)
  // The analysis's captions, tags and labels (docs/schema/analysis.md), one entry per engine and
  // kind; an item's start < 0 when it is not timed. Timed ones join the timeline.
  struct Annotations {
    std::string kind;    // "caption", "tag", "label"
    std::string engine;
    std::vector<TimedText> items;
  };
  std::vector<Annotations> annotations;
  // Transcripts in other languages than the one above: language, engine and their text.
  struct OtherTranscript {
    std::string language, engine, text;
  };
  std::vector<OtherTranscript> other_transcripts;
};

}  // namespace baton::llm
