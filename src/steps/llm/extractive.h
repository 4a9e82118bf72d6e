// The offline extractive summariser behind `provider: extractive`: no network, no model. It scores
// the sentences of the transcript and the on-screen text by the frequency of their content words
// (stop words left out), keeps the best `sentences` in their original order, and lists the slide
// titles (first OCR line of each scene). The Markdown it returns says at its top that it was made
// this way, not by an LLM.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "steps/llm/material.h"

namespace baton::llm {

std::string ExtractiveSummary(const Material& material, int sentences, const std::string& language);

}  // namespace baton::llm
