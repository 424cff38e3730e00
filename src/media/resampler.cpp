// resampler.cpp — speexdsp windowed-sinc resampler, mono int16.
//
// Delay: speexdsp's filter is symmetric, so output lags input by half the filter length. At quality 7 the
// base filter has 128 taps; for downsampling it is stretched by in/out, so the delay is 64 samples at the
// lower of the two rates in every case we use: 4 ms for 48/24/22.05 kHz -> 16 kHz, 8 ms for 8 <-> 16 kHz
// (Resampler.DelayIsSmall measures it from an impulse per pair). The delay is constant and there is no
// flush: the last few milliseconds of a stream stay in the filter until more input pushes them out, which
// is fine for a continuous call.
#include "media/resampler.h"

#include <algorithm>

#include <speex/speex_resampler.h>

namespace parley::media {

Resampler::Resampler(int in_rate, int out_rate, int quality) : in_rate_(in_rate), out_rate_(out_rate) {
    if (in_rate_ == out_rate_ || in_rate_ <= 0 || out_rate_ <= 0) return;  // copy-through / unusable
    quality = std::clamp(quality, SPEEX_RESAMPLER_QUALITY_MIN, SPEEX_RESAMPLER_QUALITY_MAX);
    int err = RESAMPLER_ERR_SUCCESS;
    st_ = speex_resampler_init(1, static_cast<spx_uint32_t>(in_rate_), static_cast<spx_uint32_t>(out_rate_),
                               quality, &err);
    if (err != RESAMPLER_ERR_SUCCESS && st_ != nullptr) {
        speex_resampler_destroy(st_);
        st_ = nullptr;
    }
}

Resampler::~Resampler() {
    if (st_ != nullptr) speex_resampler_destroy(st_);
}

void Resampler::process(std::span<const int16_t> in, std::vector<int16_t>& out) {
    if (in.empty()) return;
    if (in_rate_ == out_rate_) {
        out.insert(out.end(), in.begin(), in.end());
        return;
    }
    if (st_ == nullptr) return;  // invalid rates: nothing sensible to produce

    // Grow `out` by an upper bound of the output count, let speexdsp fill it, then trim. The loop is only
    // a guard: speexdsp consumes all input in one call when the output space suffices.
    while (!in.empty()) {
        const size_t room =
            static_cast<size_t>((static_cast<uint64_t>(in.size()) * static_cast<uint64_t>(out_rate_)) /
                                static_cast<uint64_t>(in_rate_)) +
            8;
        const size_t old_size = out.size();
        out.resize(old_size + room);
        auto in_len = static_cast<spx_uint32_t>(std::min<size_t>(in.size(), 1u << 24));
        auto out_len = static_cast<spx_uint32_t>(room);
        speex_resampler_process_int(st_, 0, in.data(), &in_len, out.data() + old_size, &out_len);
        out.resize(old_size + out_len);
        if (in_len == 0 && out_len == 0) break;  // no progress: never spin
        in = in.subspan(in_len);
    }
}

void Resampler::reset() {
    if (st_ != nullptr) speex_resampler_reset_mem(st_);
}

}  // namespace parley::media
