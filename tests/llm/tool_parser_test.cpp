// tool_parser_test.cpp — the streamed <tool_call> parser (src/llm/tool_parser.h), the tools section of the
// system prompt, and the tools check create() makes. Pure: no model.
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "llm/llm.h"
#include "llm/tool_parser.h"

namespace parley::llm {

bool operator==(const ToolCall& a, const ToolCall& b) {
    return a.name == b.name && a.arguments == b.arguments;
}
void PrintTo(const ToolCall& c, std::ostream* os) {
    *os << c.name << c.arguments;
}

namespace {

const std::vector<std::string> kKnown{"hang_up", "transfer", "send_dtmf"};

// Captures what is logged while it lives (the default logger's sinks are swapped, then restored).
class LogCapture {
public:
    LogCapture() : saved_(spdlog::default_logger()) {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
        sink->set_pattern("%l %v");
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
        spdlog::set_level(spdlog::level::debug);
    }
    ~LogCapture() { spdlog::set_default_logger(saved_); }
    std::string text() const { return out_.str(); }
    int count(const std::string& what) const {
        const std::string s = out_.str();
        int n = 0;
        for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
        return n;
    }

private:
    std::shared_ptr<spdlog::logger> saved_;
    std::ostringstream out_;
};

struct Parsed {
    std::string text;
    std::vector<std::string> outputs;  // what each feed()/finish() returned
    std::vector<ToolCall> calls;
    int dropped = 0;
};

Parsed parse_chunks(const std::vector<std::string>& chunks, const std::vector<std::string>& known = kKnown) {
    ToolCallParser p(known);
    Parsed r;
    for (const auto& c : chunks) {
        r.outputs.push_back(p.feed(c));
        r.text += r.outputs.back();
    }
    r.outputs.push_back(p.finish());
    r.text += r.outputs.back();
    r.calls = p.calls();
    r.dropped = p.dropped();
    return r;
}

Parsed parse_whole(const std::string& s) {
    return parse_chunks({s});
}

// Every way of cutting `s` into pieces that we can afford: at every single boundary (two pieces), char by
// char, and 200 random chunkings. All must give what the whole string gives.
void expect_chunking_invariant(const std::string& s, const Parsed& whole) {
    LogCapture quiet;  // thousands of parses: their warnings are not the point here
    auto same = [&](const Parsed& p, const std::string& how) {
        EXPECT_EQ(p.text, whole.text) << how;
        EXPECT_EQ(p.calls, whole.calls) << how;
        EXPECT_EQ(p.dropped, whole.dropped) << how;
    };
    for (size_t cut = 0; cut <= s.size(); ++cut)
        same(parse_chunks({s.substr(0, cut), s.substr(cut)}), "cut at " + std::to_string(cut));
    std::vector<std::string> chars;
    for (char c : s) chars.emplace_back(1, c);
    same(parse_chunks(chars), "char by char");
    std::mt19937 rng(1234);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::string> chunks;
        for (size_t at = 0; at < s.size();) {
            const size_t n = std::min(s.size() - at, size_t(rng() % 7));  // 0..6: empty pieces too
            chunks.push_back(s.substr(at, n));
            at += n;
        }
        same(parse_chunks(chunks), "random chunking " + std::to_string(round));
    }
}

TEST(ToolCallParser, TextBeforeAndAfterACall) {
    const std::string s =
        "One moment, I'll transfer you.\n<tool_call>\n{\"name\": \"transfer\", \"arguments\": {\"target\": "
        "\"sip:sales@example.com\"}}\n</tool_call>\nGoodbye!";
    LogCapture log;
    const Parsed p = parse_whole(s);
    EXPECT_EQ(p.text, "One moment, I'll transfer you.\n\nGoodbye!");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0], (ToolCall{"transfer", R"({"target":"sip:sales@example.com"})"}));
    EXPECT_EQ(p.dropped, 0);
    EXPECT_EQ(log.count("warn"), 0) << log.text();
    expect_chunking_invariant(s, p);
}

TEST(ToolCallParser, TwoCallsInARow) {
    const std::string s =
        "<tool_call>{\"name\":\"send_dtmf\",\"arguments\":{\"digits\":\"12#\"}}</tool_call>"
        "<tool_call>\n{\"name\": \"hang_up\"}\n</tool_call> bye";
    const Parsed p = parse_whole(s);
    EXPECT_EQ(p.text, " bye");
    EXPECT_EQ(p.calls, (std::vector<ToolCall>{{"send_dtmf", R"({"digits":"12#"})"}, {"hang_up", "{}"}}));
    expect_chunking_invariant(s, p);
}

TEST(ToolCallParser, ArgumentsAsAStringOrUnderParametersAndKeyOrderKept) {
    const Parsed p = parse_whole(
        R"(<tool_call>{"name": "transfer", "arguments": "{\"target\": \"sip:1@x\", \"a\": 1}"}</tool_call>)"
        R"(<tool_call>{"name": "send_dtmf", "parameters": {"z": 1, "digits": "5"}}</tool_call>)");
    EXPECT_EQ(p.calls, (std::vector<ToolCall>{{"transfer", R"({"target":"sip:1@x","a":1})"},
                                              {"send_dtmf", R"({"z":1,"digits":"5"})"}}));
    EXPECT_EQ(p.text, "");
}

TEST(ToolCallParser, MalformedCallsAreDroppedWithOneWarningEachAndTextKept) {
    const std::string s =
        "a<tool_call>{\"name\": \"transfer\", \"arguments\": {\"target\": </tool_call>b"  // bad JSON
        "<tool_call>{\"name\": \"launch_missiles\", \"arguments\": {}}</tool_call>c"      // unknown tool
        "<tool_call>{\"arguments\": {}}</tool_call>d"                                     // no name
        "<tool_call>{\"name\": \"send_dtmf\", \"arguments\": [1]}</tool_call>e"  // args not an object
        "<tool_call>[]</tool_call>f"
        "<tool_call>{\"name\": \"hang_up\", \"arguments\": {}}</tool_call>g";  // fine
    LogCapture log;
    const Parsed p = parse_whole(s);
    EXPECT_EQ(p.text, "abcdefg");
    EXPECT_EQ(p.calls, (std::vector<ToolCall>{{"hang_up", "{}"}}));
    EXPECT_EQ(p.dropped, 5);
    EXPECT_EQ(log.count("warning event=llm_tool_call_dropped"), 5) << log.text();
    EXPECT_NE(log.text().find("reason=\"unknown tool launch_missiles\""), std::string::npos) << log.text();
    expect_chunking_invariant(s, p);
}

TEST(ToolCallParser, AnyNameWhenNoToolsAreListed) {
    const Parsed p = parse_chunks({"<tool_call>{\"name\": \"x\"}</tool_call>"}, {});
    EXPECT_EQ(p.calls, (std::vector<ToolCall>{{"x", "{}"}}));
}

TEST(ToolCallParser, UnterminatedCallAtTheEndIsDroppedWithAWarningTextKept) {
    const std::string s = "Transferring now. <tool_call>{\"name\": \"transfer\", \"arguments\": {\"tar";
    LogCapture log;
    const Parsed p = parse_whole(s);
    EXPECT_EQ(p.text, "Transferring now. ");
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.dropped, 1);
    EXPECT_EQ(log.count("unterminated"), 1) << log.text();
    expect_chunking_invariant(s, p);
}

TEST(ToolCallParser, PartialTagAtTheEndIsText) {
    for (const std::string s : {"a <", "a <tool_cal", "x <tool_call", "1 < 2 <t", "<tool_calls> are"}) {
        const Parsed p = parse_whole(s);
        EXPECT_EQ(p.text, s);
        EXPECT_TRUE(p.calls.empty());
        EXPECT_EQ(p.dropped, 0);
        expect_chunking_invariant(s, p);
    }
}

TEST(ToolCallParser, TextThatCannotStartATagIsNeverHeldBack) {
    ToolCallParser p(kKnown);
    // Each piece comes out of the feed() that brought it, whole.
    for (const std::string piece :
         {"Hello", " there,", " 3 < 4", " and 5 > 2.", " <b>bold</b>", " <", "x", " é€😀", "\n"}) {
        if (piece == " <") {
            EXPECT_EQ(p.feed(piece), " ");  // "<" could start a tag: held…
            continue;
        }
        if (piece == "x") {
            EXPECT_EQ(p.feed(piece), "<x");  // …and out with the next piece, which rules it out
            continue;
        }
        EXPECT_EQ(p.feed(piece), piece);
    }
    EXPECT_EQ(p.feed("<to"), "");
    EXPECT_EQ(p.feed("ol"), "");
    EXPECT_EQ(p.feed("s"), "<tools");
    EXPECT_EQ(p.finish(), "");
}

TEST(ToolCallParser, RandomTextAndCallsSurviveEveryChunking) {
    // Fuzz-ish: strings built from fragments that look like tags, text and JSON.
    const std::vector<std::string> frags{
        "<",     "tool",        "_call",        ">",  "</", "{\"name\":\"hang_up\"}",
        "text ", "<tool_call>", "</tool_call>", "\n", "é",  "<<"};
    std::mt19937 rng(99);
    for (int round = 0; round < 40; ++round) {
        std::string s;
        for (int k = 0; k < 12; ++k) s += frags[rng() % frags.size()];
        const Parsed p = parse_whole(s);
        // What comes out as text never holds a complete opening tag.
        EXPECT_EQ(p.text.find("<tool_call>"), std::string::npos) << s;
        expect_chunking_invariant(s, p);
    }
}

TEST(ToolsSection, RendersQwenStyleOneSignaturePerLine) {
    const std::vector<Tool> tools{
        {"hang_up", "End the call.", R"({"type":"object","properties":{}})"},
        {"transfer", "Transfer the call.",
         R"({"type":"object","properties":{"target":{"type":"string","description":"SIP URI"}},"required":["target"]})"}};
    const std::string s = render_tools_section(tools);
    EXPECT_EQ(
        s,
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        R"({"type": "function", "function": {"name": "hang_up", "description": "End the call.", )"
        R"("parameters": {"type": "object", "properties": {}}}})"
        "\n"
        R"({"type": "function", "function": {"name": "transfer", "description": "Transfer the call.", )"
        R"("parameters": {"type": "object", "properties": {"target": {"type": "string", "description": )"
        R"("SIP URI"}}, "required": ["target"]}}})"
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
        "\"arguments\": <args-json-object>}\n</tool_call>");
}

TEST(ToolsCheck, BadToolsAreRefusedByCreate) {
    EXPECT_EQ(check_tools({{"a", "", "{}"}, {"b", "", R"({"type":"object"})"}}), "");
    EXPECT_NE(check_tools({{"", "", "{}"}}).find("empty name"), std::string::npos);
    EXPECT_NE(check_tools({{"a", "", "{}"}, {"a", "", "{}"}}).find("twice"), std::string::npos);
    EXPECT_NE(check_tools({{"a", "", "{\"type\":"}}).find("not a JSON object"), std::string::npos);
    EXPECT_NE(check_tools({{"a", "", "[]"}}).find("not a JSON object"), std::string::npos);
    LlmConfig c;
    c.engine = "openai";
    c.remote.base_url = "http://127.0.0.1:1/v1";
    std::string err;
    EXPECT_TRUE(create(c, &err, {{"hang_up", "End the call."}})) << err;
    EXPECT_FALSE(create(c, &err, {{"hang_up", "x", "not json"}}));
    EXPECT_NE(err.find("llm tools: tool 0 (\"hang_up\"): parameters are not a JSON object"),
              std::string::npos)
        << err;
}

}  // namespace
}  // namespace parley::llm
