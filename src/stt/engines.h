// engines.h (internal to src/stt) — the two SpeechToText implementations behind stt::create().
#pragma once
#include "stt/stt.h"
namespace parley::stt {
std::unique_ptr<SpeechToText> make_whisper_stt(const SttConfig& config, std::string* error);  // whisper_stt.cpp
std::unique_ptr<SpeechToText> make_remote_stt(const SttConfig& config, std::string* error);   // remote_stt.cpp
}  // namespace parley::stt
