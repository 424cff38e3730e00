// engines.h (internal to src/tts) — the two TextToSpeech implementations behind tts::create().
#pragma once
#include "tts/tts.h"
namespace parley::tts {
std::unique_ptr<TextToSpeech> make_espeak_tts(const TtsConfig& config, std::string* error);  // espeak_tts.cpp
std::unique_ptr<TextToSpeech> make_remote_tts(const TtsConfig& config, std::string* error);  // remote_tts.cpp
}  // namespace parley::tts
