// The offline extractive summariser behind `provider: extractive`: no network, no model. It scores
// the sentences of the transcript and the on-screen text by the frequency of their content words
// (stop words left out; for Chinese and Japanese, which have no spaces, character bigrams stand in
// for words), keeps the best `sentences` in their original order, and lists the slide
// titles (first OCR line of each scene). The Markdown it returns says at its top that it was made
// this way, not by an LLM.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "steps/llm/llm_config.h"
#include "steps/llm/material.h"

namespace baton::llm {

// `language`: a language the user asked for (noted as not applied: this does not translate).
// `ui`: the words of the summary's own headings and notice ("en", "zh-Hans", "zh-Hant").
std::string ExtractiveSummary(const Material& material, int sentences, const std::string& language,
                              const std::string& ui = "en");
std::string ExtractiveSummary(const Material& material, const LlmConfig& config);

}  // namespace baton::llm
