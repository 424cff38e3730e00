// engines.h (internal to src/llm) — the two LanguageModel implementations behind llm::create().
#pragma once
#include "llm/llm.h"
namespace parley::llm {
// `tools` have been checked (check_tools() in tool_parser.h): named, unique, parameters a JSON object.
std::unique_ptr<LanguageModel> make_llama_model(const LlmConfig& config, std::string* error,
                                                const std::vector<Tool>& tools);  // llama_engine.cpp
std::unique_ptr<LanguageModel> make_remote_model(const LlmConfig& config, std::string* error,
                                                 const std::vector<Tool>& tools);  // remote_llm.cpp
}  // namespace parley::llm
