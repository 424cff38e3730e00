// resampler_test.cpp — frequency response of the speexdsp resampler at the rate pairs Parley uses.
#include "media/resampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace parley::media {
namespace {

constexpr double kAmplitude = 10000.0;      // pass-band tones: -10 dBFS, clear of clipping
constexpr double kStopAmplitude = 30000.0;  // stop-band tones: near full scale, to measure far below
// RMS of int16 rounding noise (1 LSB uniform): below this an attenuated tone has rounded away entirely, so
// a measurement bottoms out here and the printed figure is a lower bound on the attenuation.
const double kLsbNoiseRms = 1.0 / std::sqrt(12.0);

std::vector<int16_t> tone(double freq, int rate, double seconds, double amplitude = kAmplitude) {
    const auto n = static_cast<size_t>(seconds * rate);
    std::vector<int16_t> v(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = static_cast<int16_t>(
            std::lround(amplitude * std::sin(2.0 * std::numbers::pi * freq * static_cast<double>(i) / rate)));
    }
    return v;
}

// RMS after skipping the first and last 50 ms (filter transient at the start; the tail is fine but a
// whole number of periods is not guaranteed either way, so skip symmetric margins).
double steady_rms(const std::vector<int16_t>& v, int rate) {
    const auto skip = static_cast<size_t>(rate / 20);
    if (v.size() <= 2 * skip) return 0.0;
    double acc = 0.0;
    for (size_t i = skip; i < v.size() - skip; ++i) acc += static_cast<double>(v[i]) * v[i];
    return std::sqrt(acc / static_cast<double>(v.size() - 2 * skip));
}

struct Gain {
    double db;
    bool at_floor;  // output rounded to (nearly) all zeros: |db| is a lower bound on the attenuation
};

Gain gain_db(int in_rate, int out_rate, double freq, double amplitude = kAmplitude) {
    Resampler r(in_rate, out_rate);
    const auto in = tone(freq, in_rate, 1.0, amplitude);
    std::vector<int16_t> out;
    r.process(in, out);
    const double out_rms = steady_rms(out, out_rate);
    // Compare against the input's own RMS (not the ideal A/sqrt(2)) so int16 rounding cancels out.
    const bool floor = out_rms < kLsbNoiseRms;
    return {20.0 * std::log10(std::max(out_rms, kLsbNoiseRms) / steady_rms(in, in_rate)), floor};
}

// Amplitude of the `freq` component of `v` (quadrature projection over the steady-state part).
double component(const std::vector<int16_t>& v, int rate, double freq) {
    const auto skip = static_cast<size_t>(rate / 20);
    double c = 0.0;
    double s = 0.0;
    size_t n = 0;
    for (size_t i = skip; i + skip < v.size(); ++i, ++n) {
        const double w = 2.0 * std::numbers::pi * freq * static_cast<double>(i) / rate;
        c += v[i] * std::cos(w);
        s += v[i] * std::sin(w);
    }
    return n == 0 ? 0.0 : 2.0 * std::sqrt(c * c + s * s) / static_cast<double>(n);
}

struct RatePair {
    int in_rate;
    int out_rate;
    // Downsampling: a tone above the output Nyquist, which must be removed rather than aliased (measured as
    // the RMS of everything that comes out). Upsampling has no such input; there the stop band is where
    // the spectral images of the input lie, measured as the image of a 3 kHz tone at in_rate - 3 kHz.
    double stop_freq;
};

void PrintTo(const RatePair& p, std::ostream* os) {
    *os << p.in_rate << " -> " << p.out_rate;
}

class ResamplerResponse : public ::testing::TestWithParam<RatePair> {};

TEST_P(ResamplerResponse, PassbandFlatStopbandAttenuated) {
    const RatePair p = GetParam();
    const double pass_1k = gain_db(p.in_rate, p.out_rate, 1000.0).db;
    const double pass_3k = gain_db(p.in_rate, p.out_rate, 3000.0).db;  // top of the narrowband telephone band
    Gain stop{0.0, false};
    double stop_freq = p.stop_freq;
    if (p.out_rate < p.in_rate) {
        stop = gain_db(p.in_rate, p.out_rate, p.stop_freq, kStopAmplitude);
    } else {
        Resampler r(p.in_rate, p.out_rate);
        std::vector<int16_t> out;
        r.process(tone(3000.0, p.in_rate, 1.0, kStopAmplitude), out);
        stop_freq = p.in_rate - 3000.0;
        stop.db = 20.0 * std::log10(std::max(component(out, p.out_rate, stop_freq), 1e-6) / kStopAmplitude);
    }
    // Just above the output Nyquist, where a short filter would still leak (downsampling only).
    std::optional<Gain> edge;
    const double edge_freq = 0.55 * p.out_rate;
    if (p.out_rate < p.in_rate && edge_freq < 0.5 * p.in_rate) {
        edge = gain_db(p.in_rate, p.out_rate, edge_freq, kStopAmplitude);
    }
    std::printf("[ Resample ] %5d -> %5d: 1 kHz %+.2f dB, 3 kHz %+.2f dB, stop band %.0f Hz %s%.1f dB",
                p.in_rate, p.out_rate, pass_1k, pass_3k, stop_freq, stop.at_floor ? "< " : "", stop.db);
    if (edge) std::printf(", %.0f Hz %s%.1f dB", edge_freq, edge->at_floor ? "< " : "", edge->db);
    std::printf("\n");
    EXPECT_NEAR(pass_1k, 0.0, 1.0);
    EXPECT_NEAR(pass_3k, 0.0, 1.0);
    EXPECT_LE(stop.db, -40.0);
    if (edge) {
        EXPECT_LE(edge->db, -40.0);
    }
}

INSTANTIATE_TEST_SUITE_P(Pairs, ResamplerResponse,
                         ::testing::Values(RatePair{48000, 16000, 10000.0}, RatePair{24000, 16000, 10000.0},
                                           RatePair{22050, 16000, 10000.0}, RatePair{16000, 8000, 5000.0},
                                           RatePair{8000, 16000, 0.0}),
                         [](const ::testing::TestParamInfo<RatePair>& p) {
                             return std::to_string(p.param.in_rate) + "to" + std::to_string(p.param.out_rate);
                         });

TEST(Resampler, DelayIsSmall) {
    // Feed one impulse and find the output peak. Documents the filter
    // delay quoted in resampler.cpp (64 samples at the lower rate at quality 7).
    for (auto [in_rate, out_rate] :
         {std::pair{48000, 16000}, std::pair{24000, 16000}, std::pair{22050, 16000}, std::pair{16000, 8000},
          std::pair{8000, 16000}}) {
        Resampler r(in_rate, out_rate);
        std::vector<int16_t> in(static_cast<size_t>(in_rate / 10), 0);
        in[0] = 30000;
        std::vector<int16_t> out;
        r.process(in, out);
        size_t peak = 0;
        for (size_t i = 1; i < out.size(); ++i) {
            if (std::abs(out[i]) > std::abs(out[peak])) peak = i;
        }
        const double ms = 1000.0 * static_cast<double>(peak) / out_rate;
        std::printf("[ Resample ] %5d -> %5d: delay %zu output samples (%.2f ms)\n", in_rate, out_rate, peak,
                    ms);
        EXPECT_LE(ms, 10.0);
    }
}

TEST(Resampler, EqualRatesCopyThrough) {
    Resampler r(16000, 16000);
    const auto in = tone(1234.0, 16000, 0.01);
    std::vector<int16_t> out = {1, 2};
    r.process(in, out);
    ASSERT_EQ(out.size(), in.size() + 2);
    EXPECT_EQ(std::vector<int16_t>(out.begin() + 2, out.end()), in);
}

TEST(Resampler, StreamingInOddChunksMatchesOneShot) {
    for (auto [in_rate, out_rate] : {std::pair{48000, 16000}, std::pair{22050, 16000}, std::pair{8000, 16000},
                                     std::pair{24000, 16000}, std::pair{16000, 8000}}) {
        const auto in = tone(700.0, in_rate, 0.5);
        Resampler one(in_rate, out_rate);
        std::vector<int16_t> one_out;
        one.process(in, one_out);

        Resampler chunked(in_rate, out_rate);
        std::vector<int16_t> chunk_out;
        const size_t sizes[] = {1, 3, 17, 441, 160, 7, 999, 2};
        size_t off = 0;
        for (size_t k = 0; off < in.size(); ++k) {
            const size_t n = std::min(sizes[k % std::size(sizes)], in.size() - off);
            chunked.process(std::span<const int16_t>(in.data() + off, n), chunk_out);
            off += n;
        }
        const auto expected = static_cast<double>(in.size()) * out_rate / in_rate;
        SCOPED_TRACE(std::to_string(in_rate) + "->" + std::to_string(out_rate));
        EXPECT_NEAR(static_cast<double>(chunk_out.size()), static_cast<double>(one_out.size()), 3.0);
        EXPECT_NEAR(static_cast<double>(one_out.size()), expected, 3.0);
        // Same filter, same state evolution: the overlapping samples agree (to float rounding).
        const size_t common = std::min(chunk_out.size(), one_out.size());
        int max_diff = 0;
        for (size_t i = 0; i < common; ++i)
            max_diff = std::max(max_diff, std::abs(chunk_out[i] - one_out[i]));
        EXPECT_LE(max_diff, 2);
    }
}

TEST(Resampler, ResetForgetsHistory) {
    Resampler r(48000, 16000);
    std::vector<int16_t> out;
    r.process(tone(1000.0, 48000, 0.1), out);
    r.reset();
    out.clear();
    const std::vector<int16_t> silence(4800, 0);
    r.process(silence, out);
    ASSERT_FALSE(out.empty());
    for (int16_t s : out) ASSERT_EQ(s, 0);  // nothing of the tone rings on after reset
}

}  // namespace
}  // namespace parley::media
