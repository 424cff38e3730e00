#include "tts/engines.h"

namespace parley::tts {

std::unique_ptr<TextToSpeech> create(const TtsConfig& config, std::string* error) {
    if (config.engine == "openai") return make_remote_tts(config, error);
    if (config.engine == "embedded") return make_espeak_tts(config, error);
    if (error) *error = "tts.engine: expected \"embedded\" or \"openai\", got \"" + config.engine + "\"";
    return nullptr;
}

}  // namespace parley::tts
