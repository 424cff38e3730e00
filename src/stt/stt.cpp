#include "stt/engines.h"

namespace parley::stt {

std::unique_ptr<SpeechToText> create(const SttConfig& config, std::string* error) {
    if (config.engine == "openai") return make_remote_stt(config, error);
    if (config.engine == "embedded") return make_whisper_stt(config, error);
    if (error) *error = "stt.engine: expected \"embedded\" or \"openai\", got \"" + config.engine + "\"";
    return nullptr;
}

}  // namespace parley::stt
