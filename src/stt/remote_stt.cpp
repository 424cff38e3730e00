// remote_stt.cpp — placeholder until the implementation lands.
#include "stt/engines.h"
namespace parley::stt {
std::unique_ptr<SpeechToText> make_remote_stt(const SttConfig& config, std::string* error) {
    (void)config;
    if (error) *error = "remote_stt: not implemented yet";
    return nullptr;
}
}  // namespace parley::stt
