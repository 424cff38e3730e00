// llama_engine.cpp — placeholder until the implementation lands.
#include "llm/engines.h"
namespace parley::llm {
std::unique_ptr<LanguageModel> make_llama_model(const LlmConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "llama_engine: not implemented yet";
    return nullptr;
}
}  // namespace parley::llm
