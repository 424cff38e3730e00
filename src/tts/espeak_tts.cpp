// espeak_tts.cpp — placeholder until the implementation lands.
#include "tts/engines.h"
namespace parley::tts {
std::unique_ptr<TextToSpeech> make_espeak_tts(const TtsConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "espeak_tts: not implemented yet";
    return nullptr;
}
}  // namespace parley::tts
