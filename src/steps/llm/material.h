// What the llm step summarises: the parts of a job's download and analyze results it reads,
// already validated. Plain values.
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
  std::vector<TimedText> scenes;      // text = the scene's OCR text ("" when none)
};

}  // namespace baton::llm
