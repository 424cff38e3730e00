// Remote LLM tool calling (OpenAI chat/completions, stream=true) against an in-test HTTP server.
//
// TEST DOUBLE: the server below only imitates an OpenAI-compatible /v1/chat/completions stream. No model
// that makes tool calls can run here (the test models are random-weight), so the double replays the shape
// OpenAI (and llama-server --jinja, vLLM) stream: choices[0].delta.tool_calls[] fragments — index, id and
// function.name first, then function.arguments in pieces — beside delta.content, split into odd-sized
// TCP writes so events straddle chunks. It records the request body, so the test can check what we sent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <mutex>
#include <string>
#include <vector>

#include "llm/llm.h"
#include "test_http_server.h"

namespace parley::llm {

bool operator==(const ToolCall& a, const ToolCall& b) {
    return a.name == b.name && a.arguments == b.arguments;
}
void PrintTo(const ToolCall& c, std::ostream* os) {
    *os << c.name << c.arguments;
}

namespace {

using nlohmann::json;
using parley::testing::nap;
using parley::testing::TestHttpServer;

const std::vector<Tool> kTools{
    {"hang_up", "End the call politely.", R"({"type":"object","properties":{}})"},
    {"transfer", "Transfer the caller to another number or SIP URI.",
     R"({"type":"object","properties":{"target":{"type":"string","description":"SIP URI or phone number"}},"required":["target"]})"},
    {"send_dtmf", "Send DTMF digits on the line.",
     R"({"type":"object","properties":{"digits":{"type":"string","pattern":"^[0-9*#A-D]+$"}},"required":["digits"]})"}};

json delta_event(json delta, const char* finish = nullptr) {
    json choice = {{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", nullptr}};
    if (finish) choice["finish_reason"] = finish;
    return {{"id", "chatcmpl-1"}, {"object", "chat.completion.chunk"}, {"choices", json::array({choice})}};
}

json tool_fragment(int index, json function, const char* id = nullptr) {
    json f = {{"index", index}, {"function", std::move(function)}};
    if (id) {
        f["id"] = id;
        f["type"] = "function";
    }
    return {{"tool_calls", json::array({f})}};
}

struct FakeOpenAi {
    TestHttpServer http;
    std::vector<json> events;  // what the next reply streams (then "data: [DONE]")
    std::mutex mu;
    json last_request;

    FakeOpenAi() {
        http.server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
            std::string body;
            {
                std::lock_guard lk(mu);
                last_request = json::parse(req.body, nullptr, false);
                for (const auto& e : events) body += "data: " + e.dump() + "\n\n";
                body += "data: [DONE]\n\n";
            }
            res.set_chunked_content_provider(
                "text/event-stream", [this, body](size_t, httplib::DataSink& sink) {
                    constexpr size_t kChunk = 13;  // odd: events and JSON split across writes
                    for (size_t off = 0; off < body.size(); off += kChunk) {
                        if (!sink.write(body.data() + off, std::min(kChunk, body.size() - off))) return false;
                        if (!nap(1, http.stopping)) return false;
                    }
                    sink.done();
                    return true;
                });
        });
        EXPECT_TRUE(http.start());
    }
    ~FakeOpenAi() { http.stop(); }
    FakeOpenAi(const FakeOpenAi&) = delete;
    FakeOpenAi& operator=(const FakeOpenAi&) = delete;

    std::unique_ptr<LanguageModel> model(const std::vector<Tool>& tools = kTools) {
        LlmConfig c;
        c.engine = "openai";
        c.remote.base_url = http.url("/v1");
        c.remote.model = "test";
        c.remote.timeout_ms = 5000;
        c.system_prompt = "You are a phone agent.";
        std::string err;
        auto m = create(c, &err, tools);
        EXPECT_TRUE(m) << err;
        return m;
    }
};

struct Result {
    Reply reply;
    std::vector<std::string> pieces;
    std::string joined;
};

Result ask(LanguageModel& m) {
    Result r;
    r.reply = m.open()->reply(
        {{"user", "Put me through to sales."}},
        [&](std::string_view p) {
            r.pieces.emplace_back(p);
            r.joined += p;
            return true;
        },
        CancelToken{});
    return r;
}

TEST(RemoteLlmTools, DeltaToolCallSplitAcrossChunksBecomesOneCallAndTheRequestCarriesTheTools) {
    FakeOpenAi server;
    server.events = {
        delta_event({{"role", "assistant"}, {"content", "One moment, "}}),
        delta_event({{"content", "I'll put you through."}}),
        delta_event(tool_fragment(0, {{"name", "transfer"}, {"arguments", ""}}, "call_abc")),
        delta_event(tool_fragment(0, {{"arguments", "{\"tar"}})),
        delta_event(tool_fragment(0, {{"arguments", "get\": \"sip:sales@"}})),
        delta_event(tool_fragment(0, {{"arguments", "example.com\"}"}})),
        delta_event(json::object(), "tool_calls"),
        {{"choices", json::array()}, {"usage", {{"prompt_tokens", 321}, {"completion_tokens", 17}}}},
    };
    auto m = server.model();
    const Result r = ask(*m);
    ASSERT_TRUE(r.reply.ok) << r.reply.error;
    EXPECT_EQ(r.reply.tool_calls,
              (std::vector<ToolCall>{{"transfer", R"({"target":"sip:sales@example.com"})"}}));
    EXPECT_EQ(r.pieces, (std::vector<std::string>{"One moment, ", "I'll put you through."}));
    EXPECT_EQ(r.reply.text, "One moment, I'll put you through.");
    EXPECT_EQ(r.reply.prompt_tokens, 321);
    EXPECT_EQ(r.reply.generated_tokens, 17);

    // What the double received: our three schemas, in OpenAI's "tools" shape, beside the usual fields.
    std::lock_guard lk(server.mu);
    const json& req = server.last_request;
    ASSERT_FALSE(req.is_discarded());
    EXPECT_EQ(req.value("stream", false), true);
    ASSERT_TRUE(req.contains("tools")) << req.dump(2);
    const json& tools = req["tools"];
    ASSERT_TRUE(tools.is_array());
    ASSERT_EQ(tools.size(), 3u);
    for (size_t i = 0; i < kTools.size(); ++i) {
        EXPECT_EQ(tools[i]["type"], "function");
        EXPECT_EQ(tools[i]["function"]["name"], kTools[i].name);
        EXPECT_EQ(tools[i]["function"]["description"], kTools[i].description);
        EXPECT_EQ(tools[i]["function"]["parameters"],
                  json::parse(kTools[i].parameters));  // an object, not text
    }
    EXPECT_EQ(tools[1]["function"]["parameters"]["required"], json::array({"target"}));
    EXPECT_EQ(req["messages"][0], (json{{"role", "system"}, {"content", "You are a phone agent."}}));
}

TEST(RemoteLlmTools, TwoInterleavedCallsKeepTheirOrderAndABadOneIsDropped) {
    FakeOpenAi server;
    server.events = {
        delta_event(tool_fragment(0, {{"name", "send_dtmf"}, {"arguments", "{\"dig"}}, "call_1")),
        delta_event(tool_fragment(1, {{"name", "hang_up"}, {"arguments", ""}}, "call_2")),
        delta_event(tool_fragment(0, {{"arguments", "its\":\"12#\"}"}})),
        delta_event(
            tool_fragment(2, {{"name", "format_disk"}, {"arguments", "{}"}}, "call_3")),  // not offered
        delta_event(
            tool_fragment(3, {{"name", "transfer"}, {"arguments", "{\"target\": "}}, "call_4")),  // cut off
        delta_event(json::object(), "tool_calls"),
    };
    auto m = server.model();
    const Result r = ask(*m);
    ASSERT_TRUE(r.reply.ok) << r.reply.error;
    EXPECT_EQ(r.reply.tool_calls,
              (std::vector<ToolCall>{{"send_dtmf", R"({"digits":"12#"})"}, {"hang_up", "{}"}}));
    EXPECT_TRUE(r.pieces.empty());
    EXPECT_EQ(r.reply.text, "");
}

// llama-server without --jinja (or a template that knows no tools) leaves the model's markup in content.
TEST(RemoteLlmTools, ToolCallMarkupInContentIsParsedOutOfTheText) {
    FakeOpenAi server;
    const std::string content =
        "Sure.\n<tool_call>\n{\"name\": \"transfer\", \"arguments\": {\"target\": "
        "\"sip:sales@example.com\"}}\n"
        "</tool_call>\nBye.";
    for (size_t at = 0; at < content.size(); at += 3)  // tokens of 3 bytes: tags split across events
        server.events.push_back(delta_event({{"content", content.substr(at, 3)}}));
    server.events.push_back(delta_event(json::object(), "stop"));
    auto m = server.model();
    const Result r = ask(*m);
    ASSERT_TRUE(r.reply.ok) << r.reply.error;
    EXPECT_EQ(r.reply.tool_calls,
              (std::vector<ToolCall>{{"transfer", R"({"target":"sip:sales@example.com"})"}}));
    EXPECT_EQ(r.joined, "Sure.\n\nBye.");
    EXPECT_EQ(r.reply.text, r.joined);
    for (const auto& p : r.pieces) EXPECT_EQ(p.find('<'), std::string::npos) << p;
}

// With no tools offered nothing is parsed: neither markup in content nor (unasked-for) delta tool calls.
TEST(RemoteLlmTools, WithoutToolsTheRequestHasNoToolsAndContentIsUntouched) {
    FakeOpenAi server;
    server.events = {delta_event({{"content", "a <tool_call>{\"name\": \"hang_up\"}</tool_call> b"}}),
                     delta_event(tool_fragment(0, {{"name", "hang_up"}, {"arguments", "{}"}}, "call_1")),
                     delta_event(json::object(), "stop")};
    auto m = server.model({});
    const Result r = ask(*m);
    ASSERT_TRUE(r.reply.ok) << r.reply.error;
    EXPECT_TRUE(r.reply.tool_calls.empty());
    EXPECT_EQ(r.reply.text, "a <tool_call>{\"name\": \"hang_up\"}</tool_call> b");
    std::lock_guard lk(server.mu);
    EXPECT_FALSE(server.last_request.contains("tools"));
}

}  // namespace
}  // namespace parley::llm
