// remote_stt.cpp — speech to text over HTTP: POST {base_url}/audio/transcriptions as multipart/form-data
// (file = a 16 kHz mono 16-bit WAV built in memory, model, language, prompt, response_format=json) and
// read {"text": ...}. That is the OpenAI shape, also served by LocalAI, faster-whisper-server/speaches and
// whisper.cpp's whisper-server — whose route is "/inference" by default (same form fields, same JSON).
//
// Which path: when base_url already ends in "/audio/transcriptions" or "/inference" it is the endpoint
// as given; otherwise "/audio/transcriptions" is tried first and, on a 404, "{base_url}/inference" and
// then "{scheme://host:port}/inference" (a plain `whisper-server`); the route that worked is remembered.
// Alternatively start whisper-server with `--request-path /v1 --inference-path /audio/transcriptions`.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "net/http_client.h"
#include "stt/engines.h"

namespace parley::stt {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int kRate = 16000;

void put_u32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u16(std::string& out, uint16_t v) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
}

// A canonical 44-byte-header WAV: PCM, 1 channel, 16 kHz, 16 bits.
std::string make_wav(std::span<const float> pcm) {
    std::string out;
    const uint32_t data_bytes = static_cast<uint32_t>(pcm.size() * 2);
    out.reserve(44 + data_bytes);
    out += "RIFF";
    put_u32(out, 36 + data_bytes);
    out += "WAVEfmt ";
    put_u32(out, 16);
    put_u16(out, 1);  // PCM
    put_u16(out, 1);  // mono
    put_u32(out, kRate);
    put_u32(out, kRate * 2);
    put_u16(out, 2);
    put_u16(out, 16);
    out += "data";
    put_u32(out, data_bytes);
    for (float f : pcm) {
        // x32768 and clamp: the inverse of the usual s16 / 32768, so 16-bit audio goes through unchanged.
        const long v = std::clamp(std::lround(static_cast<double>(f) * 32768.0), -32768L, 32767L);
        put_u16(out, static_cast<uint16_t>(static_cast<int16_t>(v)));
    }
    return out;
}

std::string trim(std::string s) {
    const auto not_space = [](unsigned char c) { return !std::isspace(c); };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
    s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
    return s;
}

std::string origin_of(const std::string& url) {
    const size_t scheme = url.find("://");
    const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
    const size_t slash = url.find('/', start);
    return slash == std::string::npos ? url : url.substr(0, slash);
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class RemoteStt final : public SpeechToText {
public:
    explicit RemoteStt(const SttConfig& config) : config_(config) {
        std::string base = config.remote.base_url;
        while (!base.empty() && base.back() == '/') base.pop_back();
        if (ends_with(base, "/audio/transcriptions") || ends_with(base, "/inference")) {
            candidates_ = {base};
        } else {
            candidates_ = {net::join_url(base, "/audio/transcriptions"), net::join_url(base, "/inference")};
            const std::string root = net::join_url(origin_of(base), "/inference");
            if (root != candidates_.back()) candidates_.push_back(root);
        }
    }

    Transcript transcribe(std::span<const float> pcm, const Options& options, const CancelToken& cancel) override {
        const auto t0 = Clock::now();
        Transcript out;
        const std::string language = options.language.empty() ? config_.language : options.language;
        std::string prompt = config_.prompt;
        if (!options.prompt.empty()) prompt += (prompt.empty() ? "" : " ") + options.prompt;

        net::HttpRequest req;
        req.multipart.push_back({"file", make_wav(pcm), "audio.wav", "audio/wav"});
        if (!config_.remote.model.empty()) req.multipart.push_back({"model", config_.remote.model, "", ""});
        // "auto": leave the field out, which is how the OpenAI API asks for detection.
        if (!language.empty() && language != "auto") req.multipart.push_back({"language", language, "", ""});
        if (!prompt.empty()) req.multipart.push_back({"prompt", prompt, "", ""});
        req.multipart.push_back({"response_format", "json", "", ""});
        req.bearer_token = config_.remote.api_key;
        req.connect_timeout_ms = config_.remote.connect_timeout_ms;
        req.timeout_ms = config_.remote.timeout_ms;
        req.retries = config_.remote.retries;

        size_t first;
        {
            std::lock_guard lock(mutex_);
            first = working_;
        }
        std::string body;
        net::HttpResponse r;
        net::HttpResponse first_404;  // when every route 404s, the first (the OpenAI route) says most
        std::string first_url;
        for (size_t i = first; i < candidates_.size(); ++i) {
            req.url = candidates_[i];
            r = net::perform_collect(req, &body, cancel);
            if (!r.ok && r.status == 404 && first_url.empty()) {
                first_404 = r;
                first_url = req.url;
            }
            if (r.ok) {
                if (i != first) {
                    std::lock_guard lock(mutex_);
                    working_ = i;
                    PLOG_INFO("event=stt_route url={}", req.url);
                }
                break;
            }
            if (r.status != 404 || first != 0) break;  // only probe routes before one has worked
        }
        if (!r.ok && r.status == 404 && !first_url.empty()) {
            r = first_404;
            req.url = first_url;
        }
        out.compute_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!r.ok) {
            out.error = r.error;
            if (!r.error_body.empty()) {
                const json j = json::parse(r.error_body, nullptr, false);
                if (!j.is_discarded() && j.contains("error")) {
                    const json& e = j["error"];
                    const std::string msg = e.is_string() ? e.get<std::string>()
                                            : e.is_object() && e.contains("message") && e["message"].is_string()
                                                ? e["message"].get<std::string>()
                                                : e.dump();
                    out.error = "HTTP " + std::to_string(r.status) + " from " + req.url + ": " + msg;
                }
            }
            if (!r.cancelled) {
                PLOG_WARN("event=stt_failed engine=openai url={} attempts={} error=\"{}\"", req.url, r.attempts,
                          out.error);
            }
            return out;
        }
        const json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
            out.error = "unexpected reply from " + req.url + ": " + body.substr(0, 200);
            PLOG_WARN("event=stt_failed engine=openai url={} error=\"{}\"", req.url, out.error);
            return out;
        }
        out.text = trim(j["text"].get<std::string>());
        Segment seg;
        seg.t1_ms = static_cast<int64_t>(pcm.size()) * 1000 / kRate;
        seg.text = out.text;
        out.segments.push_back(std::move(seg));
        out.ok = true;
        return out;
    }

    std::string describe() const override {
        return "openai " + config_.remote.base_url + (config_.remote.model.empty() ? "" : " model " + config_.remote.model);
    }

private:
    SttConfig config_;
    std::vector<std::string> candidates_;  // endpoint URLs to try, in order
    std::mutex mutex_;
    size_t working_ = 0;                   // index of the route that answered last
};

}  // namespace

std::unique_ptr<SpeechToText> make_remote_stt(const SttConfig& config, std::string* error) {
    if (config.remote.base_url.empty()) {
        if (error) *error = "stt.remote.base_url: required for engine = \"openai\" (e.g. \"http://127.0.0.1:8081/v1\")";
        return nullptr;
    }
    PLOG_INFO("event=stt_ready engine=openai url={} model={}", config.remote.base_url, config.remote.model);
    return std::make_unique<RemoteStt>(config);
}

}  // namespace parley::stt
