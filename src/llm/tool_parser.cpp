#include "llm/tool_parser.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "common/log.h"

namespace parley::llm {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";

// Length of the longest tail of `s` that is a proper prefix of `tag` (could still become the tag).
size_t partial_tag_tail(std::string_view s, std::string_view tag) {
    for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n) {
        if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}

std::string shorten(std::string_view s, size_t max = 200) {
    std::string out(s.substr(0, max));
    if (s.size() > max) out += "...";
    return out;
}

// JSON as Python's json.dumps writes it (", " and ": " separators, keys in their order, non-ASCII as is):
// what the chat templates' `tojson` gives, so the tools read as in the model's training data.
void dump_py(const ordered_json& j, std::string* out) {
    if (j.is_object()) {
        *out += '{';
        bool first = true;
        for (const auto& [k, v] : j.items()) {
            if (!first) *out += ", ";
            first = false;
            *out += json(k).dump();
            *out += ": ";
            dump_py(v, out);
        }
        *out += '}';
    } else if (j.is_array()) {
        *out += '[';
        for (size_t i = 0; i < j.size(); ++i) {
            if (i) *out += ", ";
            dump_py(j[i], out);
        }
        *out += ']';
    } else {
        *out += j.dump();
    }
}

}  // namespace

bool make_tool_call(std::string_view name, std::string_view arguments_json,
                    const std::vector<std::string>& known, ToolCall* out, std::string* why) {
    if (name.empty()) {
        *why = "no function name";
        return false;
    }
    if (!known.empty() && std::find(known.begin(), known.end(), name) == known.end()) {
        *why = "unknown tool " + std::string(name);
        return false;
    }
    ordered_json args = ordered_json::object();
    const auto blank = arguments_json.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!blank) {
        args = ordered_json::parse(arguments_json, nullptr, false);
        if (args.is_string()) args = ordered_json::parse(args.get<std::string>(), nullptr, false);
        if (args.is_discarded() || !args.is_object()) {
            *why = "arguments are not a JSON object";
            return false;
        }
    }
    out->name = std::string(name);
    out->arguments = args.dump();
    return true;
}

std::string ToolCallParser::feed(std::string_view piece) {
    buf_.append(piece);
    std::string text;
    for (;;) {
        if (!in_call_) {
            const size_t at = buf_.find(kOpen);
            if (at == std::string::npos) {
                const size_t hold = partial_tag_tail(buf_, kOpen);
                text.append(buf_, 0, buf_.size() - hold);
                buf_.erase(0, buf_.size() - hold);
                return text;
            }
            text.append(buf_, 0, at);
            buf_.erase(0, at + kOpen.size());
            in_call_ = true;
        } else {
            const size_t at = buf_.find(kClose);
            if (at == std::string::npos) return text;
            end_call(std::string_view(buf_).substr(0, at));
            buf_.erase(0, at + kClose.size());
            in_call_ = false;
        }
    }
}

std::string ToolCallParser::finish() {
    std::string text;
    if (in_call_) {
        ++dropped_;
        PLOG_WARN("event=llm_tool_call_dropped reason=\"unterminated at the end of the reply\" call=\"{}\"",
                  shorten(buf_));
        in_call_ = false;
    } else {
        text = std::move(buf_);
    }
    buf_.clear();
    return text;
}

void ToolCallParser::end_call(std::string_view body) {
    const ordered_json j = ordered_json::parse(body, nullptr, false);
    std::string why;
    ToolCall call;
    if (j.is_discarded() || !j.is_object()) {
        why = "not a JSON object";
    } else {
        const auto name = j.find("name");
        auto args = j.find("arguments");
        if (args == j.end()) args = j.find("parameters");
        if (name == j.end() || !name->is_string()) {
            why = "no function name";
        } else {
            const std::string a = args == j.end() || args->is_null() ? std::string() : args->dump();
            make_tool_call(name->get_ref<const std::string&>(), a, known_, &call, &why);
        }
    }
    if (!why.empty()) {
        ++dropped_;
        PLOG_WARN("event=llm_tool_call_dropped reason=\"{}\" call=\"{}\"", why, shorten(body));
        return;
    }
    calls_.push_back(std::move(call));
}

std::string render_tools_section(const std::vector<Tool>& tools) {
    std::string s =
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const auto& t : tools) {
        ordered_json fn;
        fn["name"] = t.name;
        fn["description"] = t.description;
        fn["parameters"] = ordered_json::parse(t.parameters, nullptr, false);
        ordered_json tool;
        tool["type"] = "function";
        tool["function"] = std::move(fn);
        s += '\n';
        dump_py(tool, &s);
    }
    s += "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
         "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
         "<args-json-object>}\n</tool_call>";
    return s;
}

std::string check_tools(const std::vector<Tool>& tools) {
    for (size_t i = 0; i < tools.size(); ++i) {
        const Tool& t = tools[i];
        const std::string which = "tool " + std::to_string(i) + " (\"" + t.name + "\")";
        if (t.name.empty()) return which + ": empty name";
        for (size_t k = 0; k < i; ++k) {
            if (tools[k].name == t.name) return which + ": the name is used twice";
        }
        const json p = json::parse(t.parameters, nullptr, false);
        if (p.is_discarded() || !p.is_object()) return which + ": parameters are not a JSON object";
    }
    return {};
}

}  // namespace parley::llm
