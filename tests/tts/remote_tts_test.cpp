// Remote TTS (POST /audio/speech, raw s16le PCM) against an in-test HTTP server.
//
// TEST DOUBLE: the server below only imitates Kokoro-FastAPI / OpenAI's /v1/audio/speech with
// response_format "pcm" (Kokoro itself cannot be installed here). It checks the request JSON and serves a
// fixed, pre-computed PCM clip in odd-sized chunks, so samples straddle chunk boundaries.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <vector>

#include "test_http_server.h"
#include "tts/tts.h"

using parley::CancelToken;
using parley::testing::nap;
using parley::testing::TestHttpServer;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRate = 24000;

// The "recording": 1 s of a 440 Hz tone with a ramp, as little-endian 16-bit bytes.
std::vector<int16_t> recorded_samples() {
    std::vector<int16_t> s(kRate);
    for (size_t i = 0; i < s.size(); ++i) {
        s[i] = static_cast<int16_t>(std::lround(12000.0 * std::sin(2 * M_PI * 440.0 * i / kRate) * i / s.size()));
    }
    return s;
}

std::string to_bytes(const std::vector<int16_t>& s) {
    std::string b;
    for (int16_t v : s) {
        b.push_back(static_cast<char>(static_cast<uint16_t>(v) & 0xff));
        b.push_back(static_cast<char>(static_cast<uint16_t>(v) >> 8));
    }
    return b;
}

struct FakeKokoro {
    enum class Mode { complete, die_midway, stall };
    TestHttpServer http;
    std::string bytes = to_bytes(recorded_samples());
    nlohmann::json last_request;
    std::string last_auth;

    ~FakeKokoro() { http.stop(); }  // joins the handler threads before `bytes` and the rest go away
    FakeKokoro(const FakeKokoro&) = delete;
    FakeKokoro& operator=(const FakeKokoro&) = delete;

    explicit FakeKokoro(Mode mode) {
        http.server.Post("/v1/audio/speech", [this, mode](const httplib::Request& req, httplib::Response& res) {
            last_request = nlohmann::json::parse(req.body, nullptr, false);
            last_auth = req.get_header_value("Authorization");
            if (last_request.is_discarded() || last_request.value("response_format", "") != "pcm") {
                res.status = 400;
                res.set_content("{\"detail\":\"expected response_format pcm\"}", "application/json");
                return;
            }
            res.set_chunked_content_provider("audio/pcm", [this, mode](size_t, httplib::DataSink& sink) {
                constexpr size_t kChunk = 1001;  // odd: samples split across chunks
                for (size_t off = 0; off < bytes.size(); off += kChunk) {
                    if (mode == Mode::die_midway && off > bytes.size() / 2) return false;  // connection dropped
                    if (mode == Mode::stall && off > 0 && !nap(5000, http.stopping)) return false;
                    const size_t n = std::min(kChunk, bytes.size() - off);
                    if (!sink.write(bytes.data() + off, n)) return false;
                    if (!nap(2, http.stopping)) return false;
                }
                sink.done();
                return true;
            });
        });
    }
};

std::unique_ptr<parley::tts::TextToSpeech> make(const TestHttpServer& http, int timeout_ms = 3000) {
    parley::TtsConfig c;
    c.engine = "openai";
    c.remote.base_url = http.url("/v1");
    c.remote.model = "kokoro";
    c.remote.api_key = "sk-tts";
    c.remote.timeout_ms = timeout_ms;
    c.remote.retries = 1;
    c.remote_voice = "af_heart";
    c.remote_sample_rate = kRate;
    std::string err;
    auto tts = parley::tts::create(c, &err);
    EXPECT_TRUE(tts) << err;
    return tts;
}

}  // namespace

TEST(RemoteTts, AudioArrivesInOrderAndComplete) {
    FakeKokoro fake(FakeKokoro::Mode::complete);
    ASSERT_TRUE(fake.http.start());
    auto tts = make(fake.http);
    ASSERT_TRUE(tts);
    EXPECT_EQ(tts->sample_rate(), kRate);
    std::vector<int16_t> got;
    int callbacks = 0;
    const auto r = tts->synthesize("Hello from Kokoro.", [&](std::span<const int16_t> pcm, int rate) {
        EXPECT_EQ(rate, kRate);
        got.insert(got.end(), pcm.begin(), pcm.end());
        ++callbacks;
        return true;
    }, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(got, recorded_samples());
    EXPECT_EQ(r.samples, kRate);
    EXPECT_GT(callbacks, 10);
    EXPECT_EQ(fake.last_request["input"], "Hello from Kokoro.");
    EXPECT_EQ(fake.last_request["voice"], "af_heart");
    EXPECT_EQ(fake.last_request["model"], "kokoro");
    EXPECT_EQ(fake.last_auth, "Bearer sk-tts");
}

TEST(RemoteTts, ServerDyingMidStreamIsAnError) {
    FakeKokoro fake(FakeKokoro::Mode::die_midway);
    ASSERT_TRUE(fake.http.start());
    auto tts = make(fake.http);
    ASSERT_TRUE(tts);
    int64_t got = 0;
    const auto r = tts->synthesize("Hello.", [&](std::span<const int16_t> pcm, int) {
        got += static_cast<int64_t>(pcm.size());
        return true;
    }, CancelToken{});
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("server closed the stream mid-reply"), std::string::npos) << r.error;
    EXPECT_GT(got, 0);
    EXPECT_LT(got, kRate);
}

TEST(RemoteTts, SlowServerHitsInactivityTimeout) {
    FakeKokoro fake(FakeKokoro::Mode::stall);
    ASSERT_TRUE(fake.http.start());
    auto tts = make(fake.http, 300);
    ASSERT_TRUE(tts);
    const auto t0 = Clock::now();
    const auto r = tts->synthesize("Hello.", [](std::span<const int16_t>, int) { return true; }, CancelToken{});
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("no data for 300 ms"), std::string::npos) << r.error;
    EXPECT_LT(ms, 1500);
}

TEST(RemoteTts, CancelStopsWithinAChunk) {
    FakeKokoro fake(FakeKokoro::Mode::complete);
    ASSERT_TRUE(fake.http.start());
    auto tts = make(fake.http);
    ASSERT_TRUE(tts);
    CancelToken token;
    int calls = 0;
    const auto r = tts->synthesize("Hello.", [&](std::span<const int16_t>, int) {
        if (++calls == 3) token.cancel();
        return true;
    }, token);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "cancelled");
    EXPECT_EQ(calls, 3);
}

TEST(RemoteTts, DeadServerIsAClearError) {
    parley::TtsConfig c;
    c.engine = "openai";
    c.remote.base_url = "http://127.0.0.1:" + std::to_string(parley::testing::dead_port()) + "/v1";
    c.remote.retries = 0;
    std::string err;
    auto tts = parley::tts::create(c, &err);
    ASSERT_TRUE(tts) << err;
    const auto r = tts->synthesize("Hello.", [](std::span<const int16_t>, int) { return true; }, CancelToken{});
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("Connection refused"), std::string::npos) << r.error;
}
