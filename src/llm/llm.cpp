#include "llm/engines.h"

namespace parley::llm {

std::unique_ptr<LanguageModel> create(const LlmConfig& config, std::string* error, const std::vector<Tool>& tools) {
    (void)tools;  // TODO(tools): pass to the engines
    if (config.engine == "openai") return make_remote_model(config, error);
    if (config.engine == "embedded") return make_llama_model(config, error);
    if (error) *error = "llm.engine: expected \"embedded\" or \"openai\", got \"" + config.engine + "\"";
    return nullptr;
}

}  // namespace parley::llm
