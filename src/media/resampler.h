// resampler.h — band-limited sample-rate conversion (speexdsp), mono int16, streaming.
//
// Never linear interpolation: speexdsp's windowed-sinc filter gives >= 40 dB stop-band attenuation at
// the quality we use (see tests/media/resampler_test.cpp for the measured response).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

struct SpeexResamplerState_;

namespace parley::media {

class Resampler {
public:
    // quality 0..10 (speexdsp); 7 is the default used on the call path.
    Resampler(int in_rate, int out_rate, int quality = 7);
    ~Resampler();
    Resampler(const Resampler&) = delete;
    Resampler& operator=(const Resampler&) = delete;

    int in_rate() const { return in_rate_; }
    int out_rate() const { return out_rate_; }

    // Converts `in` and appends the output to `out`. State carries over between calls, so a stream can be
    // fed in chunks of any size. Equal rates copy through.
    void process(std::span<const int16_t> in, std::vector<int16_t>& out);
    // Forgets history (e.g. after a flush on barge-in).
    void reset();

private:
    int in_rate_;
    int out_rate_;
    SpeexResamplerState_* st_ = nullptr;
};

}  // namespace parley::media
