// echo_canceller.h — removes our own voice from what the caller's phone sends back (WebRTC's AEC, from
// Debian's libwebrtc-audio-processing 0.3), before the caller's audio reaches the VAD and STT.
//
// A phone line echoes us back through hybrids, handsets and speakerphones with a delay we do not know
// (network, jitter buffers, the far end's own processing: 40–300 ms), so the canceller finds the delay
// itself (delay-agnostic AEC with the extended filter). See docs/echo-and-vad.md for the settings and
// the measured echo reduction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace parley::agent {

// 16 kHz mono. One per call, used from one thread (the call's media thread).
class EchoCanceller {
public:
    struct Options {
        // AEC non-linear suppression: 0 low, 1 moderate, 2 high. Higher removes more residual echo and
        // clips more of the caller's speech while we talk (double talk). Moderate is WebRTC's default.
        int suppression = 1;
        // WebRTC's stationary noise suppressor (moderate). Off: the output feeds Silero VAD and whisper,
        // which are trained on noisy speech and do worse on suppressor artefacts than on line noise.
        bool noise_suppression = false;
    };

    static std::unique_ptr<EchoCanceller> create(std::string* error) { return create(Options{}, error); }
    static std::unique_ptr<EchoCanceller> create(const Options& options, std::string* error);
    virtual ~EchoCanceller() = default;

    // What the far end was sent (our playout), at 16 kHz, any length; buffered into 10 ms chunks.
    virtual void far_end(std::span<const int16_t> pcm) = 0;
    // The caller's audio, in place, length a multiple of 160 (10 ms): echo of far_end() removed. A
    // trailing partial chunk (a length that is not a multiple of 160) is passed through unprocessed.
    virtual void process(std::span<int16_t> near) = 0;

    // Diagnostics.
    // Whether the AEC thinks the last processed 10 ms might contain echo.
    virtual bool echo_likely() const = 0;
    // The echo delay the AEC has estimated (median over the last second, ms); -1 while unknown.
    virtual int delay_ms() = 0;
    // The AEC's own echo return loss enhancement estimate (dB, running average); 0 while unknown.
    virtual int erle_db() = 0;
};

}  // namespace parley::agent
