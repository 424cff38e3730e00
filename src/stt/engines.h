// engines.h (internal to src/stt) — the two SpeechToText implementations behind stt::create().
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "stt/stt.h"
namespace parley::stt {
std::unique_ptr<SpeechToText> make_whisper_stt(const SttConfig& config, std::string* error);  // whisper_stt.cpp
std::unique_ptr<SpeechToText> make_remote_stt(const SttConfig& config, std::string* error);   // remote_stt.cpp

namespace detail {
// The speech of `pcm` as whisper.cpp's whisper_vad() cuts it for whisper_full(params.vad) (which
// whisper_full_with_state, our per-worker path, does not do): the segments, each but the last with 0.1 s of
// overlap, 0.1 s of silence between them, and a processed -> original time map (centiseconds).
struct VadFiltered {
    std::vector<float> samples;
    std::vector<std::pair<int64_t, int64_t>> map;
};
VadFiltered vad_filter(std::span<const float> pcm, const std::vector<SpeechSpan>& spans);
// A time in the filtered audio (cs) -> the original audio (cs), as whisper.cpp maps segment times.
int64_t vad_original_time(int64_t t, const std::vector<std::pair<int64_t, int64_t>>& map);
}  // namespace detail
}  // namespace parley::stt
