// remote_llm.cpp — chat replies from an OpenAI-compatible server (llama-server, OpenAI, LocalAI, vLLM...):
// POST {base_url}/chat/completions with stream=true, read as server-sent events; each event's
// choices[0].delta.content goes to the callback as it arrives.
//
// A stream is complete when "data: [DONE]" or a finish_reason arrived; a connection that ends before
// either is reported as "server closed the stream mid-reply" (llama-server killed, proxy timeout...).
// Cancel (token or callback returning false) closes the connection, which makes llama-server stop
// generating for that slot. The request is stateless: each Chat sends the whole history every turn.
//
// Tools: sent as the request's "tools" ({"type":"function","function":{name, description, parameters}}).
// Calls come back as choices[0].delta.tool_calls[] fragments (index, id, function.name, function.arguments
// pieces), joined by index into Reply::tool_calls when the stream is complete; the content also goes
// through the <tool_call> text parser (llama-server without a tool-aware template leaves the markup there).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <map>

#include "common/log.h"
#include "llm/engines.h"
#include "llm/tool_parser.h"
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

// One OpenAI streamed tool call, put together from its delta fragments.
struct PartialCall {
    size_t order = 0;  // when its first fragment came (calls are returned in the order they started)
    std::string id, name, arguments;
};

class RemoteChat final : public Chat {
public:
    RemoteChat(const LlmConfig& config, std::vector<Tool> tools) : config_(config), tools_(std::move(tools)) {
        for (const auto& t : tools_) tool_names_.push_back(t.name);
    }

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
        if (!tools_.empty()) {
            json tools = json::array();
            for (const auto& t : tools_) {
                tools.push_back({{"type", "function"},
                                 {"function",
                                  {{"name", t.name},
                                   {"description", t.description},
                                   {"parameters", json::parse(t.parameters)}}}});  // checked by create()
            }
            body["tools"] = std::move(tools);
        }

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
        std::unique_ptr<ToolCallParser> text_calls;  // <tool_call> markup left in the content
        if (!tools_.empty()) text_calls = std::make_unique<ToolCallParser>(tool_names_);
        std::map<size_t, PartialCall> delta_calls;   // by the delta's "index"
        std::vector<std::pair<size_t, ToolCall>> calls;  // (order, call)
        size_t order = 0;
        const auto take_text_calls = [&] {
            if (!text_calls) return;
            for (auto& c : text_calls->take_calls()) calls.emplace_back(order++, std::move(c));
        };
        const auto speak = [&](const std::string& piece) {
            if (piece.empty()) return true;
            if (pieces == 0) out.first_token_ms = ms_since(t0);
            ++pieces;
            out.text += piece;
            return on_piece(piece);
        };
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
                // Calls are only taken when tools were offered (an empty list would accept any name).
                auto tc = d->find("tool_calls");
                if (!tools_.empty() && tc != d->end() && tc->is_array()) {
                    for (size_t k = 0; k < tc->size(); ++k) {
                        const json& f = (*tc)[k];
                        if (!f.is_object()) continue;
                        const auto idx = f.find("index");
                        const size_t i = idx != f.end() && idx->is_number_unsigned() ? idx->get<size_t>() : k;
                        auto [it, fresh] = delta_calls.try_emplace(i);
                        if (fresh) it->second.order = order++;
                        PartialCall& pc = it->second;
                        if (auto id = f.find("id"); id != f.end() && id->is_string() && pc.id.empty())
                            pc.id = id->get<std::string>();
                        if (auto fn = f.find("function"); fn != f.end() && fn->is_object()) {
                            // Fragments are appended, as OpenAI's own client accumulates them.
                            if (auto n = fn->find("name"); n != fn->end() && n->is_string())
                                pc.name += n->get_ref<const std::string&>();
                            if (auto a = fn->find("arguments"); a != fn->end() && a->is_string())
                                pc.arguments += a->get_ref<const std::string&>();
                        }
                    }
                }
                if (auto content = d->find("content"); content != d->end() && content->is_string()) {
                    const std::string& raw = content->get_ref<const std::string&>();
                    const bool go_on = speak(text_calls ? text_calls->feed(raw) : raw);
                    take_text_calls();
                    if (!go_on) {
                        stopped = true;
                        return false;
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
        if (complete && !stopped && stream_error.empty() && text_calls) {
            speak(text_calls->finish());  // a held-back "<tool" that was text after all (the reply is over)
            take_text_calls();
        }
        for (const auto& [index, pc] : delta_calls) {
            ToolCall call;
            std::string why;
            if (make_tool_call(pc.name, pc.arguments, tool_names_, &call, &why)) {
                calls.emplace_back(pc.order, std::move(call));
            } else if (complete) {  // a cut-short stream: its last call may just be unfinished
                PLOG_WARN(
                    "event=llm_tool_call_dropped engine=openai reason=\"{}\" id={} name=\"{}\" arguments=\"{}\"",
                    why, pc.id, pc.name, pc.arguments.substr(0, 200));
            }
        }
        std::stable_sort(calls.begin(), calls.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& c : calls) out.tool_calls.push_back(std::move(c.second));
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
    std::vector<Tool> tools_;
    std::vector<std::string> tool_names_;
};

class RemoteModel final : public LanguageModel {
public:
    RemoteModel(const LlmConfig& config, std::vector<Tool> tools)
        : config_(config), tools_(std::move(tools)) {}
    std::unique_ptr<Chat> open() override { return std::make_unique<RemoteChat>(config_, tools_); }
    std::string describe() const override {
        return "openai " + config_.remote.base_url + " model " + (config_.remote.model.empty() ? "(default)" : config_.remote.model);
    }

private:
    LlmConfig config_;
    std::vector<Tool> tools_;
};

}  // namespace

std::unique_ptr<LanguageModel> make_remote_model(const LlmConfig& config, std::string* error,
                                                 const std::vector<Tool>& tools) {
    if (config.remote.base_url.empty()) {
        if (error) *error = "llm.remote.base_url: required for engine = \"openai\" (e.g. \"http://127.0.0.1:8080/v1\")";
        return nullptr;
    }
    PLOG_INFO("event=llm_ready engine=openai url={} model={} tools={}", config.remote.base_url,
              config.remote.model, tools.size());
    return std::make_unique<RemoteModel>(config, tools);
}

}  // namespace parley::llm
