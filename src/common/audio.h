// audio.h — the unit of audio that flows between the media layer and call handlers.
//
// Everything above the media layer sees 16 kHz mono signed 16-bit audio in 20 ms frames, whatever codec
// the call negotiated. The media layer converts at the edges (decode + resample in, resample + encode out).
#pragma once

#include <array>
#include <cstdint>

namespace parley {

inline constexpr int kInternalRate = 16000;  // Hz
inline constexpr int kFrameMs = 20;
inline constexpr int kFrameSamples = kInternalRate * kFrameMs / 1000;  // 320

// One 20 ms frame of 16 kHz mono PCM.
struct AudioFrame {
    std::array<int16_t, kFrameSamples> samples{};
};

}  // namespace parley
