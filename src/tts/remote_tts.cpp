// remote_tts.cpp — text to speech over the OpenAI-compatible API: POST {base_url}/audio/speech with
// response_format "pcm", read back as a stream of raw 16-bit little-endian mono samples at
// tts.remote_sample_rate (the shape of Kokoro-FastAPI, OpenAI and LocalAI). The body is forwarded as it
// arrives; a sample split across two network chunks is carried over to the next one.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <vector>

#include "common/log.h"
#include "net/http_client.h"
#include "tts/engines.h"

namespace parley::tts {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class RemoteTts final : public TextToSpeech {
public:
    explicit RemoteTts(const TtsConfig& config) : config_(config) {}

    Result synthesize(const std::string& text, const AudioCallback& on_audio, const CancelToken& cancel) override {
        const auto t0 = Clock::now();
        Result result;
        result.sample_rate = config_.remote_sample_rate;

        nlohmann::json body = {
            {"model", config_.remote.model},
            {"input", text},
            {"voice", config_.remote_voice},
            {"response_format", "pcm"},
        };
        net::HttpRequest req;
        req.url = net::join_url(config_.remote.base_url, "/audio/speech");
        req.body = body.dump();
        req.bearer_token = config_.remote.api_key;
        req.connect_timeout_ms = config_.remote.connect_timeout_ms;
        req.timeout_ms = config_.remote.timeout_ms;
        req.retries = config_.remote.retries;

        bool have_odd = false;   // a low byte waiting for its high byte from the next chunk
        uint8_t odd = 0;
        std::vector<int16_t> samples;
        const auto on_body = [&](std::string_view chunk) {
            samples.clear();
            samples.reserve(chunk.size() / 2 + 1);
            size_t i = 0;
            if (have_odd && !chunk.empty()) {
                samples.push_back(static_cast<int16_t>(odd | (static_cast<uint8_t>(chunk[0]) << 8)));
                have_odd = false;
                i = 1;
            }
            for (; i + 1 < chunk.size(); i += 2) {
                samples.push_back(static_cast<int16_t>(static_cast<uint8_t>(chunk[i]) |
                                                       (static_cast<uint8_t>(chunk[i + 1]) << 8)));
            }
            if (i < chunk.size()) {
                odd = static_cast<uint8_t>(chunk[i]);
                have_odd = true;
            }
            if (samples.empty()) return true;
            if (result.samples == 0) result.first_audio_ms = ms_since(t0);
            result.samples += static_cast<int64_t>(samples.size());
            return on_audio(std::span<const int16_t>(samples), config_.remote_sample_rate);
        };
        const net::HttpResponse r = net::perform(req, on_body, cancel);
        result.total_ms = ms_since(t0);
        if (!r.ok) {
            result.error = r.error;
            if (!r.cancelled) {
                PLOG_WARN("event=tts_failed engine=openai url={} attempts={} error=\"{}\"", req.url, r.attempts,
                          r.error);
            }
            return result;
        }
        if (result.samples == 0) {
            result.error = "the server at " + req.url + " returned no audio";
            PLOG_WARN("event=tts_failed engine=openai url={} error=\"{}\"", req.url, result.error);
            return result;
        }
        result.ok = true;
        return result;
    }

    int sample_rate() const override { return config_.remote_sample_rate; }
    std::string describe() const override {
        return "openai " + config_.remote.base_url + " model " + config_.remote.model + " voice " + config_.remote_voice +
               ", " + std::to_string(config_.remote_sample_rate) + " Hz";
    }

private:
    TtsConfig config_;
};

}  // namespace

std::unique_ptr<TextToSpeech> make_remote_tts(const TtsConfig& config, std::string* error) {
    if (config.remote.base_url.empty()) {
        if (error) *error = "tts.remote.base_url: required for engine = \"openai\" (e.g. \"http://127.0.0.1:8880/v1\")";
        return nullptr;
    }
    if (config.remote_sample_rate < 8000 || config.remote_sample_rate > 48000) {
        if (error) *error = "tts.remote_sample_rate: expected 8000..48000, got " + std::to_string(config.remote_sample_rate);
        return nullptr;
    }
    PLOG_INFO("event=tts_ready engine=openai url={} model={} voice={}", config.remote.base_url, config.remote.model,
              config.remote_voice);
    return std::make_unique<RemoteTts>(config);
}

}  // namespace parley::tts
