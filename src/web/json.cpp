// json.cpp — the API's JSON shapes (docs/api.md), shared by the server and the runtime's events.
#include <cmath>
#include <filesystem>
#include <system_error>

#include "web/server.h"

namespace parley::web {
namespace {

using nlohmann::json;

json epoch_or_null(store::EpochMs t) { return t > 0 ? json(t) : json(nullptr); }
json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// Milliseconds as an integer; null when unknown (negative).
json ms_or_null(double ms) {
    if (!(ms >= 0)) return nullptr;
    return static_cast<std::int64_t>(std::llround(ms));
}

// overhead_ms keeps one decimal (it is small: 9.1).
json ms1_or_null(double ms) {
    if (!(ms >= 0)) return nullptr;
    return std::round(ms * 10.0) / 10.0;
}

json duration_s(store::EpochMs answered_at, store::EpochMs ended_at) {
    if (answered_at <= 0 || ended_at <= 0 || ended_at < answered_at) return nullptr;
    return static_cast<double>(ended_at - answered_at) / 1000.0;  // ms resolution: 30860 -> 30.86
}

bool file_exists(const std::string& path) {
    if (path.empty()) return false;
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

}  // namespace

json call_json(const store::CallRow& c, bool live) {
    return json{{"id", c.uid},
                {"direction", c.direction},
                {"from", c.from_uri},
                {"to", c.to_uri},
                {"sip_call_id", c.sip_call_id},
                {"line", text_or_null(c.line)},
                {"handler", text_or_null(c.handler)},
                {"started_at", epoch_or_null(c.started_at)},
                {"answered_at", epoch_or_null(c.answered_at)},
                {"ended_at", epoch_or_null(c.ended_at)},
                {"duration_s", duration_s(c.answered_at, c.ended_at)},
                {"end_reason", text_or_null(c.end_reason)},
                {"live", live},
                {"recording", file_exists(c.recording)},
                {"turns", c.turn_count}};
}

json live_call_json(const LiveCall& c) {
    // The same shape as a stored call (what the store will have once it commits), plus the state.
    store::CallRow row;
    row.uid = c.uid;
    row.direction = c.direction;
    row.from_uri = c.from;
    row.to_uri = c.to;
    row.sip_call_id = c.sip_call_id;
    row.line = c.line;
    row.handler = c.handler;
    row.started_at = c.started_at;
    row.answered_at = c.answered_at;
    json j = call_json(row, true);
    j["state"] = c.state;
    return j;
}

json turn_json(const store::TurnRow& t) {
    json tools = json::array();
    for (const auto& tool : t.tools) tools.push_back(tool);
    return json{{"idx", t.idx},
                {"trigger", t.trigger},
                {"user", t.user_text},
                {"reply", t.reply_text},
                {"interrupted", t.interrupted},
                {"early_end", t.early_end},
                {"tools", std::move(tools)},
                {"at", epoch_or_null(t.speech_end_at)},
                {"timing",
                 {{"eot_ms", ms_or_null(t.eot_ms)},
                  {"stt_final_ms", ms_or_null(t.stt_final_ms)},
                  {"stt_compute_ms", ms_or_null(t.stt_compute_ms)},
                  {"llm_first_token_ms", ms_or_null(t.llm_first_token_ms)},
                  {"first_sentence_ms", ms_or_null(t.first_sentence_ms)},
                  {"tts_first_audio_ms", ms_or_null(t.tts_first_audio_ms)},
                  {"first_rtp_ms", ms_or_null(t.first_rtp_ms)},
                  {"voice_to_voice_ms", ms_or_null(t.first_rtp_ms)},
                  {"overhead_ms", ms1_or_null(t.overhead_ms)}}}};
}

json event_json(const store::EventRow& e) {
    return json{{"at", epoch_or_null(e.at)}, {"kind", e.kind}, {"detail", e.detail}};
}

json line_json(const store::LineRow& l) {
    return json{{"name", l.name},
                {"registrar", l.registrar},
                {"user", l.user},
                {"status", l.status.empty() ? std::string("unknown") : l.status},
                {"registered", l.status == "registered"},
                {"updated_at", epoch_or_null(l.updated_at)}};
}

}  // namespace parley::web
