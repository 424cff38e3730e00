// whisper_stt.cpp — placeholder until the implementation lands.
#include "stt/engines.h"
namespace parley::stt {
std::unique_ptr<SpeechToText> make_whisper_stt(const SttConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "whisper_stt: not implemented yet";
    return nullptr;
}
}  // namespace parley::stt
