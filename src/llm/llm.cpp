#include "common/log.h"
#include "llm/engines.h"
#include "llm/tool_parser.h"

namespace parley::llm {

std::unique_ptr<LanguageModel> create(const LlmConfig& config, std::string* error, const std::vector<Tool>& tools) {
    if (const std::string bad = check_tools(tools); !bad.empty()) {
        PLOG_ERROR("event=llm_tools_invalid error=\"{}\"", bad);
        if (error) *error = "llm tools: " + bad;
        return nullptr;
    }
    if (config.engine == "openai") return make_remote_model(config, error, tools);
    if (config.engine == "embedded") return make_llama_model(config, error, tools);
    if (error) *error = "llm.engine: expected \"embedded\" or \"openai\", got \"" + config.engine + "\"";
    return nullptr;
}

}  // namespace parley::llm
