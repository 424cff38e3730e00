// remote_tts.cpp — placeholder until the implementation lands.
#include "tts/engines.h"
namespace parley::tts {
std::unique_ptr<TextToSpeech> make_remote_tts(const TtsConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "remote_tts: not implemented yet";
    return nullptr;
}
}  // namespace parley::tts
