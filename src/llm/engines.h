// engines.h (internal to src/llm) — the two LanguageModel implementations behind llm::create().
#pragma once
#include "llm/llm.h"
namespace parley::llm {
std::unique_ptr<LanguageModel> make_llama_model(const LlmConfig& config, std::string* error);   // llama_engine.cpp
std::unique_ptr<LanguageModel> make_remote_model(const LlmConfig& config, std::string* error);  // remote_llm.cpp
}  // namespace parley::llm
