// wav.h — reading and writing RIFF/WAVE files of 16-bit PCM (playback prompts, test recordings).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace parley::media {

struct WavAudio {
    int sample_rate = 0;
    std::vector<int16_t> samples;  // mono (stereo files are down-mixed)
};

// Reads a PCM 16-bit WAV (mono or stereo, any rate). nullopt with a reason for anything else.
std::optional<WavAudio> wav_read(const std::string& path, std::string* error);
bool wav_write(const std::string& path, std::span<const int16_t> samples, int sample_rate, int channels = 1);
// Samples scaled to [-1, 1) (x / 32768): what whisper.cpp and its tools feed the model.
std::vector<float> to_float(std::span<const int16_t> pcm);

}  // namespace parley::media
