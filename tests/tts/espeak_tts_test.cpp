// espeak-ng: real synthesis at 22050 Hz, streamed in several chunks, cancellable, safe from many threads.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "tts/tts.h"

using parley::CancelToken;
using parley::TtsConfig;

namespace {

std::unique_ptr<parley::tts::TextToSpeech> make(const std::string& voice = "en-us") {
    TtsConfig c;
    c.engine = "embedded";
    c.voice = voice;
    std::string err;
    auto tts = parley::tts::create(c, &err);
    EXPECT_TRUE(tts) << err;
    return tts;
}

double rms(const std::vector<int16_t>& pcm) {
    double sum = 0;
    for (int16_t s : pcm) sum += static_cast<double>(s) * s;
    return pcm.empty() ? 0 : std::sqrt(sum / static_cast<double>(pcm.size()));
}

}  // namespace

TEST(EspeakTts, SpeaksASentence) {
    auto tts = make();
    ASSERT_TRUE(tts);
    EXPECT_EQ(tts->sample_rate(), 22050);
    std::vector<int16_t> audio;
    int callbacks = 0;
    const auto r = tts->synthesize("Hello, this is Parley.", [&](std::span<const int16_t> pcm, int rate) {
        EXPECT_EQ(rate, 22050);
        audio.insert(audio.end(), pcm.begin(), pcm.end());
        ++callbacks;
        return true;
    }, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.sample_rate, 22050);
    EXPECT_EQ(r.samples, static_cast<int64_t>(audio.size()));
    const double seconds = static_cast<double>(audio.size()) / 22050.0;
    EXPECT_GT(seconds, 0.8);
    EXPECT_LT(seconds, 3.0);
    EXPECT_GT(rms(audio), 300.0);  // speech, not silence
    EXPECT_GT(callbacks, 1);       // streamed, not one buffer at the end
    EXPECT_LE(r.first_audio_ms, r.total_ms);
}

TEST(EspeakTts, CancelStopsEarly) {
    auto tts = make();
    ASSERT_TRUE(tts);
    const std::string text = "This is a much longer sentence that would take several seconds to say, so that "
                             "cancelling it after the first chunk clearly stops the synthesis early.";
    std::vector<int16_t> full;
    ASSERT_TRUE(tts->synthesize(text, [&](std::span<const int16_t> pcm, int) {
        full.insert(full.end(), pcm.begin(), pcm.end());
        return true;
    }, CancelToken{}).ok);

    CancelToken token;
    int64_t got = 0;
    int calls = 0;
    const auto r = tts->synthesize(text, [&](std::span<const int16_t> pcm, int) {
        got += static_cast<int64_t>(pcm.size());
        if (++calls == 2) token.cancel();
        return true;
    }, token);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "cancelled");
    EXPECT_EQ(calls, 2);  // nothing delivered after the cancel
    EXPECT_LT(got * 4, static_cast<int64_t>(full.size()));

    // Returning false from the callback stops too, and the engine still works afterwards.
    calls = 0;
    EXPECT_FALSE(tts->synthesize(text, [&](std::span<const int16_t>, int) { return ++calls < 1; }, CancelToken{}).ok);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(tts->synthesize("Still here.", [](std::span<const int16_t>, int) { return true; }, CancelToken{}).ok);
}

TEST(EspeakTts, AlreadyCancelledReturnsAtOnce) {
    auto tts = make();
    ASSERT_TRUE(tts);
    CancelToken token;
    token.cancel();
    int calls = 0;
    const auto r = tts->synthesize("Hello.", [&](std::span<const int16_t>, int) { return ++calls > 0; }, token);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "cancelled");
    EXPECT_EQ(calls, 0);
}

TEST(EspeakTts, TwoThreadsAtOnce) {
    auto a = make();
    auto b = make("en-gb");  // a second instance with another voice shares the one engine thread
    ASSERT_TRUE(a && b);
    int64_t samples[2] = {0, 0};
    bool ok[2] = {false, false};
    std::thread t1([&] {
        for (int i = 0; i < 3; ++i) {
            ok[0] = a->synthesize("The first caller speaks now.", [&](std::span<const int16_t> pcm, int) {
                samples[0] += static_cast<int64_t>(pcm.size());
                return true;
            }, CancelToken{}).ok;
        }
    });
    std::thread t2([&] {
        for (int i = 0; i < 3; ++i) {
            ok[1] = b->synthesize("And the second one at the same time.", [&](std::span<const int16_t> pcm, int) {
                samples[1] += static_cast<int64_t>(pcm.size());
                return true;
            }, CancelToken{}).ok;
        }
    });
    t1.join();
    t2.join();
    EXPECT_TRUE(ok[0]);
    EXPECT_TRUE(ok[1]);
    EXPECT_GT(samples[0], 3 * 22050 / 2);
    EXPECT_GT(samples[1], 3 * 22050 / 2);
}

TEST(EspeakTts, UnknownVoiceIsAClearError) {
    TtsConfig c;
    c.voice = "no-such-voice-xyz";
    std::string err;
    EXPECT_FALSE(parley::tts::create(c, &err));
    EXPECT_NE(err.find("no-such-voice-xyz"), std::string::npos) << err;
    EXPECT_NE(err.find("tts.voice"), std::string::npos) << err;
}
