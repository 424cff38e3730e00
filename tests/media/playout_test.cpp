// playout_test.cpp — the send queue: resampling on push, pop/flush semantics, thread safety.
#include "media/playout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <thread>
#include <vector>

namespace parley::media {
namespace {

constexpr double kAmp = 8000.0;

std::vector<int16_t> tone(double freq, int rate, size_t n, size_t start = 0) {
    std::vector<int16_t> v(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = static_cast<int16_t>(
            std::lround(kAmp * std::sin(2.0 * std::numbers::pi * freq * static_cast<double>(start + i) / rate)));
    }
    return v;
}

double rms(std::span<const int16_t> v) {
    if (v.empty()) return 0;
    double acc = 0;
    for (int16_t s : v) acc += static_cast<double>(s) * s;
    return std::sqrt(acc / static_cast<double>(v.size()));
}

int zero_crossings(std::span<const int16_t> v) {
    int n = 0;
    for (size_t i = 1; i < v.size(); ++i)
        if ((v[i - 1] < 0) != (v[i] < 0)) ++n;
    return n;
}

std::vector<int16_t> pop_all(Playout& p) {
    std::vector<int16_t> out;
    std::vector<int16_t> buf(160);
    for (;;) {
        size_t n = p.pop(buf);
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        if (n < buf.size()) return out;
    }
}

class PlayoutRates : public ::testing::TestWithParam<int> {};

// One second pushed at any producer rate becomes one second at the codec rate (8000 samples), give or take
// the resampler's delay (64 samples at 8 kHz), and is still a 1 kHz tone of the same level.
TEST_P(PlayoutRates, PushResamplesToCodecRate) {
    const int rate = GetParam();
    parley::media::Playout p(8000);
    EXPECT_EQ(p.codec_rate(), 8000);
    const size_t chunk = static_cast<size_t>(rate / 50);  // 20 ms chunks, as a TTS or handler would push
    for (size_t i = 0; i < 50; ++i) p.push(tone(1000, rate, chunk, i * chunk), rate);

    const int queued_ms = p.queued_ms();
    auto out = pop_all(p);
    RecordProperty("samples_" + std::to_string(rate), static_cast<int>(out.size()));
    EXPECT_NEAR(static_cast<double>(out.size()), 8000.0, 64.0) << "rate " << rate;
    EXPECT_NEAR(queued_ms, 1000, 8);
    EXPECT_EQ(p.queued_ms(), 0);
    ASSERT_GT(out.size(), 6000u);
    // Middle half second: same level (pass band), same pitch (1 kHz -> 1000 crossings per second).
    std::span<const int16_t> mid(out.data() + 2000, 4000);
    EXPECT_NEAR(rms(mid), kAmp / std::sqrt(2.0), kAmp * 0.05) << "rate " << rate;
    EXPECT_NEAR(zero_crossings(mid), 1000, 4) << "rate " << rate;
}

INSTANTIATE_TEST_SUITE_P(ProducerRates, PlayoutRates, ::testing::Values(8000, 16000, 22050, 24000, 48000),
                         [](const auto& p) { return std::to_string(p.param) + "Hz"; });

TEST(Playout, SameRatePushIsCopiedExactly) {
    parley::media::Playout p(8000);
    auto t = tone(440, 8000, 1234);
    p.push(t, 8000);
    EXPECT_EQ(pop_all(p), t);
}

TEST(Playout, CodecRate16kAcceptsFramesAsIs) {
    Playout p(16000);
    AudioFrame f;
    for (size_t i = 0; i < f.samples.size(); ++i) f.samples[i] = static_cast<int16_t>(i);
    p.push(f);
    p.push(f);
    EXPECT_EQ(p.queued_ms(), 40);
    std::vector<int16_t> buf(kFrameSamples);
    ASSERT_EQ(p.pop(buf), static_cast<size_t>(kFrameSamples));
    EXPECT_TRUE(std::equal(buf.begin(), buf.end(), f.samples.begin()));
}

TEST(Playout, IgnoresEmptyPushAndBadRate) {
    parley::media::Playout p(8000);
    p.push(std::span<const int16_t>(), 16000);
    p.push(tone(1000, 8000, 160), 0);
    p.push(tone(1000, 8000, 160), -8000);
    EXPECT_EQ(p.queued_ms(), 0);
    std::vector<int16_t> buf(160, 7);
    EXPECT_EQ(p.pop(buf), 0u);
}

TEST(Playout, PopReturnsRealCountAndLeavesTheRestUntouched) {
    parley::media::Playout p(8000);
    std::vector<int16_t> in(100);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int16_t>(1000 + i);
    p.push(in, 8000);

    std::vector<int16_t> buf(160, 0x1234);
    EXPECT_EQ(p.pop(buf), 100u);
    EXPECT_TRUE(std::equal(in.begin(), in.end(), buf.begin()));
    EXPECT_TRUE(std::all_of(buf.begin() + 100, buf.end(), [](int16_t s) { return s == 0x1234; }));

    std::vector<int16_t> buf2(160, 0x4321);
    EXPECT_EQ(p.pop(buf2), 0u);
    EXPECT_TRUE(std::all_of(buf2.begin(), buf2.end(), [](int16_t s) { return s == 0x4321; }));

    // A short pop takes from the front, in order, and leaves the rest queued.
    p.push(in, 8000);
    std::vector<int16_t> small(30);
    EXPECT_EQ(p.pop(small), 30u);
    EXPECT_TRUE(std::equal(small.begin(), small.end(), in.begin()));
    auto rest = pop_all(p);
    EXPECT_TRUE(std::equal(rest.begin(), rest.end(), in.begin() + 30, in.end()));
    EXPECT_EQ(rest.size(), 70u);
}

TEST(Playout, FlushDropsEverythingAndReportsMs) {
    parley::media::Playout p(8000);
    p.push(tone(1000, 8000, 4000), 8000);  // 500 ms
    EXPECT_EQ(p.queued_ms(), 500);
    EXPECT_EQ(p.flush(), 500);
    EXPECT_EQ(p.queued_ms(), 0);
    std::vector<int16_t> buf(160, 9);
    EXPECT_EQ(p.pop(buf), 0u);
    EXPECT_EQ(p.flush(), 0);
    EXPECT_EQ(p.played_ms(), 0u);
}

// Barge-in: after flush nothing of the old audio may come out, not even what sat in a resampler's filter.
TEST(Playout, FlushAlsoForgetsResamplerHistory) {
    parley::media::Playout p(8000);
    for (int i = 0; i < 10; ++i) p.push(tone(1000, 16000, 320, static_cast<size_t>(i) * 320), 16000);
    EXPECT_GT(p.flush(), 150);
    std::vector<int16_t> quiet(1600, 0);  // 100 ms of silence at 16 kHz
    p.push(quiet, 16000);
    auto out = pop_all(p);
    ASSERT_GT(out.size(), 700u);
    int max_abs = 0;
    for (int16_t s : out) max_abs = std::max(max_abs, std::abs(static_cast<int>(s)));
    EXPECT_LE(max_abs, 1) << "old audio leaked through the resampler after flush";
}

TEST(Playout, PlayedMsCountsWhatWasPopped) {
    parley::media::Playout p(8000);
    p.push(tone(1000, 8000, 8000), 8000);  // 1 s
    std::vector<int16_t> buf(160);
    for (int i = 0; i < 10; ++i) ASSERT_EQ(p.pop(buf), 160u);
    EXPECT_EQ(p.played_ms(), 200u);
    EXPECT_EQ(p.queued_ms(), 800);
    p.flush();  // dropped audio was never heard
    EXPECT_EQ(p.played_ms(), 200u);
    EXPECT_EQ(p.pop(buf), 0u);  // empty pops add nothing
    EXPECT_EQ(p.played_ms(), 200u);
    p.push(tone(1000, 8000, 80), 8000);  // a partial packet counts its real samples only: 10 ms
    EXPECT_EQ(p.pop(buf), 80u);
    EXPECT_EQ(p.played_ms(), 210u);
}

// Two producers and the media thread at once. Run under ASan/UBSan too (PARLEY_SANITIZE=ON).
TEST(Playout, ConcurrentPushAndPopIsSafe) {
    parley::media::Playout p(8000);
    constexpr int kChunks = 400;
    std::atomic<bool> done{false};
    std::atomic<size_t> popped{0};
    std::thread consumer([&] {
        std::vector<int16_t> buf(160);
        while (!done.load()) {
            popped += p.pop(buf);
            (void)p.queued_ms();
            (void)p.played_ms();
            std::this_thread::yield();
        }
    });
    // Same-rate producer: its sample count is exact.
    std::thread a([&] {
        auto chunk = tone(500, 8000, 160);
        for (int i = 0; i < kChunks; ++i) p.push(chunk, 8000);
    });
    // Resampling producer: shares the queue, exercises the resampler lock.
    std::thread b([&] {
        for (int i = 0; i < kChunks; ++i) p.push(tone(1000, 16000, 320, static_cast<size_t>(i) * 320), 16000);
    });
    a.join();
    b.join();
    done = true;
    consumer.join();
    popped += pop_all(p).size();
    // 400 x 160 exact + 400 x 160 resampled (minus at most the filter delay).
    const double expect = 2.0 * kChunks * 160;
    EXPECT_NEAR(static_cast<double>(popped.load()), expect, 64.0);
    EXPECT_EQ(p.played_ms(), popped.load() * 1000 / 8000);
}

}  // namespace
}  // namespace parley::media

TEST(Playout, MarkRecordsTheFirstPopOfAudioPushedAfterIt) {
    parley::media::Playout p(8000);
    std::vector<int16_t> a(160, 100), out(160);
    p.push(a, 8000);  // queued before the mark: not the marked audio
    p.mark();
    EXPECT_FALSE(p.take_mark_time());
    p.push(a, 8000);
    p.pop(out);  // pops the pre-mark packet
    EXPECT_FALSE(p.take_mark_time());
    p.pop(out);  // the marked audio goes out now
    auto t = p.take_mark_time();
    ASSERT_TRUE(t);
    EXPECT_FALSE(p.take_mark_time()) << "returned once";
    // After a flush the mark re-arms at the (new) end of the queue.
    p.push(a, 8000);
    p.mark();
    p.flush();
    p.push(a, 8000);
    p.pop(out);
    EXPECT_TRUE(p.take_mark_time());
}

TEST(Playout, ReferenceRecordsWholePacketsWithSilenceAndIsBounded) {
    parley::media::Playout p(8000);
    std::vector<int16_t> a(100, 7), out(160, 0), ref;
    p.pop(out);
    p.take_reference(ref);
    EXPECT_TRUE(ref.empty()) << "off until enabled";
    p.enable_reference();
    p.push(a, 8000);
    std::fill(out.begin(), out.end(), 0);
    p.pop(out);
    p.take_reference(ref);
    ASSERT_EQ(ref.size(), 160u);
    EXPECT_EQ(ref[0], 7);
    EXPECT_EQ(ref[99], 7);
    EXPECT_EQ(ref[100], 0);
    ref.clear();
    for (int i = 0; i < 100; ++i) p.pop(out);  // 2 s of packets, nobody reading
    p.take_reference(ref);
    EXPECT_EQ(ref.size(), 8000u) << "at most 1 s kept";
}
