// config_json.cpp — see config_json.h.
#include "common/config_json.h"

#include <fmt/format.h>

#include <set>

namespace parley {

using nlohmann::json;

namespace {

json remote_json(const RemoteConfig& r) {
    return {{"base_url", r.base_url},
            {"api_key_set", !r.api_key.empty()},
            {"remote_model", r.model},
            {"connect_timeout_ms", r.connect_timeout_ms},
            {"timeout_ms", r.timeout_ms},
            {"retries", r.retries}};
}

void add(json& into, const json& more) {
    for (auto& [k, v] : more.items()) into[k] = v;
}

const char* type_name(const json& v) {
    if (v.is_string()) return "a string";
    if (v.is_boolean()) return "true or false";
    if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
    if (v.is_number()) return "a number";
    if (v.is_array()) return "an array of strings";
    if (v.is_object()) return "an object";
    return "null";
}

// The override text of a JSON value, or nullopt when it has the wrong type for `like` (the key's current
// value). Integers are accepted where a number is expected.
std::optional<std::string> value_text(const json& v, const json& like) {
    if (like.is_string() && v.is_string()) return v.get<std::string>();
    if (like.is_boolean() && v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if ((like.is_number_integer() || like.is_number_unsigned()) && (v.is_number_integer() || v.is_number_unsigned()))
        return v.dump();
    if (like.is_number_float() && v.is_number()) return v.dump();
    if (like.is_array() && v.is_array()) {
        std::string out;
        for (auto& item : v) {
            if (!item.is_string()) return std::nullopt;
            auto s = item.get<std::string>();
            if (s.empty() || s.find(',') != std::string::npos) return std::nullopt;
            if (!out.empty()) out += ",";
            out += s;
        }
        return out;
    }
    return std::nullopt;
}

const std::set<std::string> kSections = {"agent", "llm", "stt", "tts", "call", "recording"};

}  // namespace

json config_to_json(const Config& c) {
    json j;
    const auto& a = c.agent;
    j["agent"] = {{"greeting", a.greeting},
                  {"goodbye", a.goodbye},
                  {"vad_threshold", a.vad_threshold},
                  {"min_speech_ms", a.min_speech_ms},
                  {"end_of_turn_short_ms", a.end_of_turn_short_ms},
                  {"end_of_turn_long_ms", a.end_of_turn_long_ms},
                  {"max_utterance_s", a.max_utterance_s},
                  {"barge_in", a.barge_in},
                  {"barge_in_min_ms", a.barge_in_min_ms},
                  {"echo_canceller", a.echo_canceller},
                  {"silence_prompt_s", a.silence_prompt_s},
                  {"silence_prompt", a.silence_prompt},
                  {"silence_prompts_max", a.silence_prompts_max},
                  {"tools", a.tools},
                  {"transfer_target", a.transfer_target},
                  {"dtmf_actions", a.dtmf_actions},
                  {"dtmf_timeout_ms", a.dtmf_timeout_ms}};
    const auto& l = c.llm;
    j["llm"] = {{"engine", l.engine},     {"model", l.model},           {"system_prompt", l.system_prompt},
                {"context", l.context},   {"max_sequences", l.max_sequences}, {"threads", l.threads},
                {"max_tokens", l.max_tokens}, {"temperature", l.temperature}, {"top_p", l.top_p},
                {"top_k", l.top_k},       {"seed", l.seed}};
    add(j["llm"], remote_json(l.remote));
    const auto& s = c.stt;
    j["stt"] = {{"engine", s.engine}, {"model", s.model},     {"vad_model", s.vad_model}, {"language", s.language},
                {"prompt", s.prompt}, {"threads", s.threads}, {"workers", s.workers},
                {"fit_window", s.fit_window}};
    add(j["stt"], remote_json(s.remote));
    const auto& t = c.tts;
    j["tts"] = {{"engine", t.engine},
                {"voice", t.voice},
                {"rate_wpm", t.rate_wpm},
                {"remote_voice", t.remote_voice},
                {"remote_sample_rate", t.remote_sample_rate}};
    add(j["tts"], remote_json(t.remote));
    j["call"] = {{"handler", c.call.handler},
                 {"max_concurrent", c.call.max_concurrent},
                 {"answer_delay_ms", c.call.answer_delay_ms},
                 {"echo_delay_ms", c.call.echo_delay_ms},
                 {"playback_file", c.call.playback_file},
                 {"max_duration_s", c.call.max_duration_s}};
    j["recording"] = {{"dir", c.recording.dir},
                      {"without_line", c.recording.without_line},
                      {"max_age_days", c.recording.max_age_days},
                      {"max_total_mb", c.recording.max_total_mb}};
    j["lines"] = json::array();
    for (const auto& line : c.lines) {
        j["lines"].push_back({{"name", line.name},
                              {"registrar", line.registrar},
                              {"user", line.user},
                              {"auth_user", line.auth_user},
                              {"password_set", !line.password.empty()},
                              {"domain", line.domain},
                              {"transport", line.transport},
                              {"expires", line.expires},
                              {"display_name", line.display_name},
                              {"record", line.record},
                              {"srtp", line.srtp}});  // SRTP mode of the line (docs/srtp.md)
    }
    return j;
}

std::optional<std::vector<std::string>> patch_to_overrides(const json& patch, const Config& base, std::string* error) {
    auto fail = [&](const std::string& msg) -> std::optional<std::vector<std::string>> {
        if (error) *error = msg;
        return std::nullopt;
    };
    if (!patch.is_object()) return fail("expected a JSON object");
    const json current = config_to_json(base);
    std::vector<std::string> out;
    for (auto& [section, body] : patch.items()) {
        if (section == "lines") {
            if (!body.is_array()) return fail("lines: expected an array of line objects");
            size_t next_new = base.lines.size();
            std::set<std::string> seen;
            for (size_t i = 0; i < body.size(); ++i) {
                const json& line = body[i];
                if (!line.is_object()) return fail(fmt::format("lines[{}]: expected an object", i));
                if (!line.contains("name") || !line["name"].is_string() || line["name"].get<std::string>().empty())
                    return fail(fmt::format("lines[{}].name: required (the line to change or add)", i));
                const std::string name = line["name"].get<std::string>();
                if (!seen.insert(name).second) return fail(fmt::format("lines[{}].name: \"{}\" is given twice", i, name));
                size_t idx = base.lines.size();
                for (size_t k = 0; k < base.lines.size(); ++k)
                    if (base.lines[k].name == name) idx = k;
                if (idx == base.lines.size()) idx = next_new++;
                static const json kLineLike = {{"name", ""},   {"registrar", ""},    {"user", ""},
                                               {"auth_user", ""}, {"password", ""},   {"domain", ""},
                                               {"transport", ""}, {"expires", 0},    {"display_name", ""},
                                               {"record", false},    {"srtp", ""}};
                for (auto& [key, value] : line.items()) {
                    if (!kLineLike.contains(key))
                        return fail(fmt::format("lines.{}.{}: unknown key", name, key));
                    auto text = value_text(value, kLineLike[key]);
                    if (!text)
                        return fail(fmt::format("lines.{}.{}: expected {}, got {}", name, key, type_name(kLineLike[key]),
                                                type_name(value)));
                    out.push_back(fmt::format("line.{}.{}={}", idx, key, *text));
                }
            }
            continue;
        }
        if (!kSections.count(section)) {
            if (current.contains(section) || section == "sip" || section == "media" || section == "http" ||
                section == "store" || section == "log")
                return fail(fmt::format("{}: not changeable through the API (edit the config file)", section));
            return fail(fmt::format("{}: unknown section (expected agent, llm, stt, tts, call, recording or lines)",
                                    section));
        }
        if (!body.is_object()) return fail(fmt::format("{}: expected an object", section));
        for (auto& [key, value] : body.items()) {
            std::string name = key;
            json like;
            if (key == "api_key" && current[section].contains("api_key_set")) {
                like = "";
            } else if (!current[section].contains(key) || key == "api_key_set") {
                return fail(fmt::format("{}.{}: unknown key", section, key));
            } else {
                like = current[section][key];
            }
            auto text = value_text(value, like);
            if (!text)
                return fail(fmt::format("{}.{}: expected {}, got {}", section, key, type_name(like), type_name(value)));
            out.push_back(fmt::format("{}.{}={}", section, name, *text));
        }
    }
    return out;
}

void merge_patch(json& into, const json& patch) {
    if (!into.is_object()) into = json::object();
    for (auto& [section, body] : patch.items()) {
        if (section == "lines") {
            if (!into.contains("lines") || !into["lines"].is_array()) into["lines"] = json::array();
            for (const auto& line : body) {
                bool merged = false;
                for (auto& have : into["lines"]) {
                    if (have.value("name", "") == line.value("name", "")) {
                        for (auto& [k, v] : line.items()) have[k] = v;
                        merged = true;
                    }
                }
                if (!merged) into["lines"].push_back(line);
            }
            continue;
        }
        if (!into.contains(section) || !into[section].is_object()) into[section] = json::object();
        for (auto& [k, v] : body.items()) into[section][k] = v;
    }
}

std::vector<std::string> patch_keys(const json& patch) {
    std::vector<std::string> keys;
    if (!patch.is_object()) return keys;
    for (auto& [section, body] : patch.items()) {
        if (section == "lines" && body.is_array()) {
            for (const auto& line : body)
                if (line.is_object())
                    for (auto& [k, v] : line.items())
                        if (k != "name") keys.push_back(fmt::format("lines.{}.{}", line.value("name", ""), k));
        } else if (body.is_object()) {
            for (auto& [k, v] : body.items()) keys.push_back(section + "." + k);
        }
    }
    return keys;
}

std::vector<std::string> restart_keys(const std::vector<std::string>& keys) {
    std::vector<std::string> out;
    for (const auto& k : keys)
        if (k.rfind("lines.", 0) == 0 || k.rfind("call.", 0) == 0 || k.rfind("recording.", 0) == 0) out.push_back(k);
    return out;
}

}  // namespace parley
