// tool_parser.h (internal to src/llm) — tool calls in a streamed reply, Hermes/Qwen style, and the
// system-prompt text that offers the tools in that style.
//
//   ToolCallParser p({"hang_up", "transfer"});
//   for each piece: speak(p.feed(piece));        // text outside <tool_call>…</tool_call>, at once
//   at the end:     speak(p.finish());           // a held-back "<tool" that never became a tag
//   p.calls();                                    // [{name, arguments as compact JSON}]
//
// Hold-back: only a tail that could still become "<tool_call>" ("<", "<t", … "<tool_call") is kept back at
// a piece boundary; every other byte comes out of the feed() that brought it, so plain text streams
// exactly as without the parser. What is inside a call never comes out as text.
// A call whose JSON is not {"name": string, "arguments": object} (arguments may also be a string holding
// a JSON object, or absent: "{}"; "parameters" is accepted for "arguments"), a call to a tool not offered,
// and a call still open at finish() are dropped with one PLOG_WARN each.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "llm/llm.h"

namespace parley::llm {

class ToolCallParser {
public:
    // `known`: the names of the tools offered; calls to other names are dropped. Empty: accept any name.
    explicit ToolCallParser(std::vector<std::string> known = {}) : known_(std::move(known)) {}

    std::string feed(std::string_view piece);  // the text to pass on now (may be empty)
    std::string finish();                      // end of the reply: the held-back text
    const std::vector<ToolCall>& calls() const { return calls_; }
    std::vector<ToolCall> take_calls() { return std::move(calls_); }
    int dropped() const { return dropped_; }  // malformed, unknown or unterminated calls

private:
    void end_call(std::string_view body);

    std::vector<std::string> known_;
    bool in_call_ = false;
    std::string buf_;  // outside a call: a held-back tag prefix; inside: the call so far
    std::vector<ToolCall> calls_;
    int dropped_ = 0;
};

// Checks a call found in a reply (embedded markup or an OpenAI tool_calls entry): `arguments_json` must be
// a JSON object, empty (= "{}"), or a JSON string holding one. Sets `out` (arguments re-serialized
// compactly) and returns true, or returns false with `why` set.
bool make_tool_call(std::string_view name, std::string_view arguments_json,
                    const std::vector<std::string>& known, ToolCall* out, std::string* why);

// The "# Tools" section appended to the system prompt (Qwen2.5's chat-template wording, one
// {"type": "function", "function": {...}} line per tool). Tools must have valid parameters (create()
// checks).
std::string render_tools_section(const std::vector<Tool>& tools);

// Empty when every tool has a name and parameters that are a JSON object; else what is wrong.
std::string check_tools(const std::vector<Tool>& tools);

}  // namespace parley::llm
