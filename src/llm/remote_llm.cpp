// remote_llm.cpp — chat replies from an OpenAI-compatible server (llama-server, OpenAI, LocalAI, vLLM...):
// POST {base_url}/chat/completions with stream=true, read as server-sent events; each event's
// choices[0].delta.content goes to the callback as it arrives.
//
// A stream is complete when "data: [DONE]" or a finish_reason arrived; a connection that ends before
// either is reported as "server closed the stream mid-reply" (llama-server killed, proxy timeout...).
// Cancel (token or callback returning false) closes the connection, which makes llama-server stop
// generating for that slot. The request is stateless: each Chat sends the whole history every turn.
#include <nlohmann/json.hpp>

#include <chrono>

#include "common/log.h"
#include "llm/engines.h"
#include "net/http_client.h"

namespace parley::llm {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The message of an OpenAI-style error object ({"error": {"message": ...}} or {"error": "..."}).
std::string error_message(const json& j) {
    const auto it = j.find("error");
    if (it == j.end()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object()) {
        if (auto m = it->find("message"); m != it->end() && m->is_string()) return m->get<std::string>();
        return it->dump();
    }
    return it->dump();
}

class RemoteChat final : public Chat {
public:
    explicit RemoteChat(const LlmConfig& config) : config_(config) {}

    Reply reply(const std::vector<Message>& history, const TokenCallback& on_piece, const CancelToken& cancel,
                const Sampling* sampling) override {
        const auto t0 = Clock::now();
        Sampling s;
        if (sampling) {
            s = *sampling;
        } else {
            s.temperature = config_.temperature;
            s.top_p = config_.top_p;
            s.top_k = config_.top_k;
            s.max_tokens = config_.max_tokens;
            s.seed = static_cast<uint32_t>(config_.seed);
        }

        json messages = json::array();
        if (!config_.system_prompt.empty()) messages.push_back({{"role", "system"}, {"content", config_.system_prompt}});
        for (const auto& m : history) messages.push_back({{"role", m.role}, {"content", m.content}});
        json body = {
            {"model", config_.remote.model},
            {"messages", std::move(messages)},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"temperature", s.temperature},
            {"top_p", s.top_p},
            {"max_tokens", s.max_tokens},
        };
        // top_k is not part of the OpenAI API (OpenAI rejects unknown fields); the seed is.
        if (s.seed != 0) body["seed"] = s.seed;

        net::HttpRequest req;
        req.url = net::join_url(config_.remote.base_url, "/chat/completions");
        req.body = body.dump();
        req.bearer_token = config_.remote.api_key;
        req.headers.push_back("Accept: text/event-stream");
        req.connect_timeout_ms = config_.remote.connect_timeout_ms;
        req.timeout_ms = config_.remote.timeout_ms;
        req.retries = config_.remote.retries;

        Reply out;
        bool done = false;           // "data: [DONE]" seen: the stream is over
        bool finished = false;       // a finish_reason seen: the reply is complete (usage may follow)
        bool stopped = false;        // the callback asked to stop
        std::string stream_error;    // an error event inside the stream
        int pieces = 0;
        net::SseParser sse;
        const auto on_event = [&](const net::SseEvent& ev) {
            if (net::is_done_marker(ev)) {
                done = true;
                return false;
            }
            const json j = json::parse(ev.data, nullptr, false);
            if (j.is_discarded()) {
                stream_error = "unparsable event from the server: " + ev.data.substr(0, 200);
                return false;
            }
            if (std::string e = error_message(j); !e.empty()) {
                stream_error = "server error: " + e;
                return false;
            }
            if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
                out.prompt_tokens = u->value("prompt_tokens", out.prompt_tokens);
                out.generated_tokens = u->value("completion_tokens", out.generated_tokens);
            }
            const auto choices = j.find("choices");
            if (choices == j.end() || !choices->is_array() || choices->empty()) return true;
            const json& c = (*choices)[0];
            if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
                if (auto content = d->find("content"); content != d->end() && content->is_string()) {
                    const std::string& piece = content->get_ref<const std::string&>();
                    if (!piece.empty()) {
                        if (pieces == 0) out.first_token_ms = ms_since(t0);
                        ++pieces;
                        out.text += piece;
                        if (!on_piece(piece)) {
                            stopped = true;
                            return false;
                        }
                    }
                }
            }
            if (auto f = c.find("finish_reason"); f != c.end() && f->is_string()) finished = true;
            return true;
        };
        const auto on_body = [&](std::string_view chunk) {
            // false once the stream is over ([DONE]), an error arrived or the callback stopped: closes it.
            return sse.feed(chunk, on_event) && !done;
        };
        net::HttpResponse r = net::perform(req, on_body, cancel);
        if (r.ok && !done && stream_error.empty() && !stopped) sse.finish(on_event);
        const bool complete = done || finished;
        out.total_ms = ms_since(t0);
        if (out.generated_tokens == 0) out.generated_tokens = pieces;

        if (stopped || (cancel.cancelled() && !complete)) {
            out.error = "cancelled";
        } else if (!stream_error.empty()) {
            out.error = stream_error;
        } else if (complete) {
            out.ok = true;  // a "cancelled" from perform() here only means we closed the finished stream
        } else if (!r.ok) {
            out.error = r.error;
            if (!r.error_body.empty()) {
                const json j = json::parse(r.error_body, nullptr, false);
                if (!j.is_discarded()) {
                    if (std::string e = error_message(j); !e.empty()) {
                        out.error = "HTTP " + std::to_string(r.status) + " from " + req.url + ": " + e;
                    }
                }
            }
        } else {
            out.error = "server closed the stream mid-reply (no [DONE] after " + std::to_string(pieces) + " pieces)";
        }
        if (!out.ok && out.error != "cancelled") {
            PLOG_WARN("event=llm_failed engine=openai url={} attempts={} pieces={} error=\"{}\"", req.url, r.attempts,
                      pieces, out.error);
        }
        return out;
    }

private:
    LlmConfig config_;  // a copy, so a Chat does not depend on its model's lifetime
};

class RemoteModel final : public LanguageModel {
public:
    explicit RemoteModel(const LlmConfig& config) : config_(config) {}
    std::unique_ptr<Chat> open() override { return std::make_unique<RemoteChat>(config_); }
    std::string describe() const override {
        return "openai " + config_.remote.base_url + " model " + (config_.remote.model.empty() ? "(default)" : config_.remote.model);
    }

private:
    LlmConfig config_;
};

}  // namespace

std::unique_ptr<LanguageModel> make_remote_model(const LlmConfig& config, std::string* error) {
    if (config.remote.base_url.empty()) {
        if (error) *error = "llm.remote.base_url: required for engine = \"openai\" (e.g. \"http://127.0.0.1:8080/v1\")";
        return nullptr;
    }
    PLOG_INFO("event=llm_ready engine=openai url={} model={}", config.remote.base_url, config.remote.model);
    return std::make_unique<RemoteModel>(config);
}

}  // namespace parley::llm
