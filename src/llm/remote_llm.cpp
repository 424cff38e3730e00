// remote_llm.cpp — placeholder until the implementation lands.
#include "llm/engines.h"
namespace parley::llm {
std::unique_ptr<LanguageModel> make_remote_model(const LlmConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "remote_llm: not implemented yet";
    return nullptr;
}
}  // namespace parley::llm
