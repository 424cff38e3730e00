// vad_stream_test.cpp — Vad::stream(): live 20 ms frames through Silero must give the same per-window
// probabilities as probabilities() over the whole recording, and must be cheap enough for a media thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <span>
#include <vector>

#include "media/wav.h"
#include "stt/stt.h"

namespace parley::stt {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kWindow = 512;
constexpr size_t kFrame = 320;  // 20 ms at 16 kHz, what the media thread hands over

const std::vector<float>& jfk() {
    static const std::vector<float> pcm = [] {
        auto wav = media::wav_read(PARLEY_JFK_WAV, nullptr);
        return wav ? media::to_float(wav->samples) : std::vector<float>();
    }();
    return pcm;
}

std::unique_ptr<Vad> make_vad() {
    std::string err;
    auto vad = create_vad(PARLEY_VAD_MODEL, &err);
    EXPECT_NE(vad, nullptr) << err;
    return vad;
}

// Streams `pcm` in `chunk`-sample pieces; the probabilities of the complete windows.
std::vector<float> stream_all(Vad& vad, std::span<const float> pcm, size_t chunk) {
    std::vector<float> probs;
    for (size_t i = 0; i < pcm.size(); i += chunk) vad.stream(pcm.subspan(i, std::min(chunk, pcm.size() - i)), probs);
    return probs;
}

void expect_same(const std::vector<float>& streamed, const std::vector<float>& whole, const char* what) {
    ASSERT_EQ(streamed.size(), whole.size()) << what;
    float worst = 0;
    for (size_t i = 0; i < whole.size(); ++i) worst = std::max(worst, std::abs(streamed[i] - whole[i]));
    std::printf("%s: %zu windows, max |streamed - whole| = %.3g\n", what, whole.size(), static_cast<double>(worst));
    EXPECT_LE(worst, 1e-4f) << what;
}

TEST(VadStream, TwentyMsFramesEqualWholeRecordingProbabilities) {
    ASSERT_FALSE(jfk().empty());
    auto vad = make_vad();
    ASSERT_NE(vad, nullptr);
    // probabilities() zero-pads a final partial window; the stream only reports complete windows.
    const size_t complete = jfk().size() / kWindow;
    auto whole = vad->probabilities(std::span<const float>(jfk().data(), complete * kWindow));
    ASSERT_EQ(whole.size(), complete);
    vad->reset_stream();  // probabilities() resets the LSTM state; start the stream from a clean one

    expect_same(stream_all(*vad, jfk(), kFrame), whole, "320-sample frames");
    vad->reset_stream();
    expect_same(stream_all(*vad, jfk(), 1), std::vector<float>(whole.begin(), whole.end()), "1-sample pieces");
    vad->reset_stream();
    expect_same(stream_all(*vad, jfk(), 4000), whole, "4000-sample blocks");

    // And a padded full-length probabilities() agrees on every complete window.
    auto padded = vad->probabilities(jfk());
    ASSERT_EQ(padded.size(), (jfk().size() + kWindow - 1) / kWindow);
    for (size_t i = 0; i < complete; ++i) EXPECT_NEAR(padded[i], whole[i], 1e-6f) << i;
}

TEST(VadStream, FreshVadStreamsLikeProbabilities) {
    // A new Vad's first stream starts from zero LSTM state, with no reset_stream() call.
    auto vad = make_vad();
    auto fresh = make_vad();
    ASSERT_NE(vad, nullptr);
    ASSERT_NE(fresh, nullptr);
    const size_t complete = jfk().size() / kWindow;
    auto whole = vad->probabilities(std::span<const float>(jfk().data(), complete * kWindow));
    expect_same(stream_all(*fresh, jfk(), kFrame), whole, "fresh instance");
}

TEST(VadStream, ResetStreamMakesTheNextStreamEqualAFreshOne) {
    auto vad = make_vad();
    auto fresh = make_vad();
    ASSERT_NE(vad, nullptr);
    ASSERT_NE(fresh, nullptr);
    const std::span<const float> speech(jfk().data(), 3 * 16000);
    auto expected = stream_all(*fresh, speech, kFrame);

    // Leave state behind: LSTM state after speech, and a partial window (1000 % 512 != 0) in the buffer.
    std::vector<float> ignored;
    vad->stream(std::span<const float>(jfk().data() + 16000, 5 * 16000 + 1000), ignored);
    vad->reset_stream();
    auto after = stream_all(*vad, speech, kFrame);
    expect_same(after, expected, "after reset_stream()");

    // Without the reset, the carried LSTM state and buffered samples do change the result.
    vad->stream(std::span<const float>(jfk().data() + 16000, 5 * 16000 + 1000), ignored);
    auto dirty = stream_all(*vad, speech, kFrame);
    float diff = 0;
    for (size_t i = 0; i < std::min(dirty.size(), expected.size()); ++i) diff = std::max(diff, std::abs(dirty[i] - expected[i]));
    EXPECT_GT(diff, 1e-3f) << "the stream did not keep state between calls";
}

TEST(VadStream, SpeechPatternMatchesSegments) {
    auto vad = make_vad();
    ASSERT_NE(vad, nullptr);
    auto segs = vad->segments(jfk());
    ASSERT_FALSE(segs.empty());
    vad->reset_stream();
    auto probs = stream_all(*vad, jfk(), kFrame);
    ASSERT_EQ(probs.size(), jfk().size() / kWindow);

    auto in_segment = [&](size_t w) {
        const int64_t mid_ms = static_cast<int64_t>((w * kWindow + kWindow / 2) / 16);
        for (const auto& s : segs)
            if (mid_ms >= s.start_ms && mid_ms <= s.end_ms) return true;
        return false;
    };
    // Speech windows outside every segment may only be bursts shorter than min_speech_duration_ms (250 ms),
    // which whisper.cpp drops (jfk.wav ends with one such window).
    size_t speech = 0, speech_outside = 0, longest_outside = 0, run = 0;
    for (size_t w = 0; w < probs.size(); ++w) {
        const bool is_speech = probs[w] >= 0.5f;  // whisper_vad_default_params().threshold
        speech += is_speech;
        if (is_speech && !in_segment(w)) {
            ++speech_outside;
            longest_outside = std::max(longest_outside, ++run);
        } else {
            run = 0;
        }
    }
    std::printf("%zu of %zu windows are speech, %zu of them outside the %zu segments (longest run %zu ms)\n",
                speech, probs.size(), speech_outside, segs.size(), longest_outside * kWindow / 16);
    EXPECT_LT(longest_outside * kWindow / 16, 250u);
    EXPECT_LE(speech_outside * 20, speech) << "more than 5% of the speech windows fall outside the segments";
    // Every segment holds speech windows (it starts at a window above the threshold, less 30 ms padding).
    for (const auto& s : segs) {
        size_t n = 0;
        for (size_t w = 0; w < probs.size(); ++w) {
            const int64_t mid_ms = static_cast<int64_t>((w * kWindow + kWindow / 2) / 16);
            if (mid_ms >= s.start_ms && mid_ms <= s.end_ms && probs[w] >= 0.5f) ++n;
        }
        EXPECT_GE(n * kWindow / 16, static_cast<size_t>(s.end_ms - s.start_ms) / 2)
            << "segment " << s.start_ms << "-" << s.end_ms << " ms is mostly below the threshold";
    }
}

TEST(VadStream, CostPerWindowIsWellUnderAMillisecond) {
    auto vad = make_vad();
    ASSERT_NE(vad, nullptr);
    auto run = [&](size_t chunk) {
        vad->reset_stream();
        stream_all(*vad, jfk(), chunk);  // warm-up
        vad->reset_stream();
        auto t = Clock::now();
        auto probs = stream_all(*vad, jfk(), chunk);
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - t).count();
        return us / static_cast<double>(probs.size());
    };
    const double frames = run(kFrame);
    const double block = run(jfk().size());
    std::printf("Silero VAD stream: %.1f us per 512-sample window in 320-sample frames (one call per window), "
                "%.1f us per window in one block\n",
                frames, block);
    EXPECT_LT(frames, 1000.0);  // generous for a loaded shared machine; typical is a small fraction of this
}

}  // namespace
}  // namespace parley::stt
