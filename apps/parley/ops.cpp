// ops.cpp — see ops.h.
#include "ops.h"

#include "common/log.h"

namespace parley::app {

namespace {

double seconds(double ms) { return ms / 1000.0; }

}  // namespace

std::string call_outcome(const call::CallSummary& s) {
    const auto& reason = s.info.end_reason;
    if (reason == "transferred") return "transferred";
    if (reason.rfind("failed", 0) == 0 || reason == "media_failed" || reason == "rejected" ||
        reason == "agent_init_failed")
        return "failed";
    if (!s.answered) return "missed";
    return "completed";
}

Ops::Ops(store::Store* db, std::string handler, metrics::Registry& registry, call::CallObserver* next)
    : db_(db), handler_(std::move(handler)), registry_(registry), next_(next) {}

void Ops::set_lines(const std::vector<LineConfig>& lines) {
    std::lock_guard lk(mu_);
    for (const auto& l : lines) {
        lines_[l.name] = store::LineRow{l.name, l.registrar, l.user, "unknown", 0};
        registry_.set("parley_line_registered", {{"line", l.name}}, 0);
    }
}

store::CallRow Ops::row_of(const call::CallInfo& info) const {
    store::CallRow row;
    row.uid = info.uid;
    row.direction = info.outgoing ? "outbound" : "inbound";
    row.from_uri = info.from;
    row.to_uri = info.to;
    row.sip_call_id = info.sip_call_id;
    row.line = info.line;
    row.handler = handler_;
    row.started_at = store::to_epoch_ms(info.started);
    row.answered_at = store::to_epoch_ms(info.answered);
    row.recording = info.recording;
    return row;
}

web::LiveCall Ops::live_of(const call::CallInfo& info) const {
    web::LiveCall live;
    live.uid = info.uid;
    live.direction = info.outgoing ? "outbound" : "inbound";
    live.from = info.from;
    live.to = info.to;
    live.line = info.line;
    live.sip_call_id = info.sip_call_id;
    live.handler = handler_;
    live.started_at = store::to_epoch_ms(info.started);
    live.answered_at = store::to_epoch_ms(info.answered);
    live.state = live.answered_at ? "up" : "ringing";
    return live;
}

// The CallManager reports every call (but a transfer's internal bridge leg) here first, ringing, on the control
// thread; answered and ended follow for the same CallId.
void Ops::on_call_started(const call::CallInfo& info) {
    if (db_) db_->call_started(row_of(info));
    PLOG_INFO("event=call_stored call={} uid={}", info.id, info.uid);
    auto live = live_of(info);
    size_t active;
    {
        std::lock_guard lk(mu_);
        live_[info.id] = live;
        active = live_.size();
    }
    registry_.set("parley_calls_active", {}, static_cast<double>(active));
    publish("call_started", web::live_call_json(live));
    if (next_) next_->on_call_started(info);
}

void Ops::on_call_answered(const call::CallInfo& info) {
    if (db_) db_->call_answered(info.uid, store::to_epoch_ms(info.answered));
    auto live = live_of(info);
    {
        std::lock_guard lk(mu_);
        live_[info.id] = live;
    }
    publish("call_answered", web::live_call_json(live));
    if (next_) next_->on_call_answered(info);
}

void Ops::on_call_ended(const call::CallSummary& s) {
    if (db_) db_->call_ended(s.info.uid, store::to_epoch_ms(s.info.ended), s.info.end_reason);
    size_t active;
    {
        std::lock_guard lk(mu_);
        live_.erase(s.info.id);
        active = live_.size();
    }
    registry_.set("parley_calls_active", {}, static_cast<double>(active));
    registry_.add("parley_calls_total",
                  {{"direction", s.info.outgoing ? "outbound" : "inbound"}, {"outcome", call_outcome(s)}});
    if (s.media.packets_received > 0 || s.media.packets_lost > 0) {
        registry_.add("parley_rtp_packets_received_total", {}, static_cast<double>(s.media.packets_received));
        registry_.add("parley_rtp_packets_lost_total", {}, static_cast<double>(s.media.packets_lost));
        registry_.observe("parley_rtp_jitter_seconds", {}, seconds(s.media.jitter_ms));
    }
    // SRTP (docs/srtp.md): packets that failed authentication, dropped.
    if (s.media.packets_auth_failed > 0)
        registry_.add("parley_srtp_auth_failed_total", {}, static_cast<double>(s.media.packets_auth_failed));
    auto row = row_of(s.info);
    if (!s.answered) row.answered_at = 0;
    row.ended_at = store::to_epoch_ms(s.info.ended);
    row.end_reason = s.info.end_reason;
    publish("call_ended", web::call_json(row, false));
    if (next_) next_->on_call_ended(s);
}

void Ops::on_line_state(const sip::LineStatus& status) {
    const bool registered = status.state == sip::LineState::kRegistered;
    registry_.set("parley_line_registered", {{"line", status.name}}, registered ? 1 : 0);
    // "registered" exactly when it is (web::line_json reads it so); otherwise the state and the registrar's
    // last answer, e.g. "failed: 403 Forbidden".
    store::LineRow row;
    {
        std::lock_guard lk(mu_);
        row = lines_[status.name];
        row.name = status.name;
        row.status = sip::line_state_str(status.state);
        if (!registered && status.last_status)
            row.status += ": " + std::to_string(status.last_status) + " " + status.last_phrase;
        row.updated_at = store::now_ms();
        lines_[status.name] = row;
    }
    if (db_) db_->line_status(row);
    publish("line_status", web::line_json(row));
}

void Ops::on_turn(const agent::TurnRecord& t) {
    std::string uid;
    {
        std::lock_guard lk(mu_);
        auto it = live_.find(t.call);
        if (it == live_.end()) return;  // a turn reported after its call ended (cannot happen: on_end joins)
        uid = it->second.uid;
    }
    store::TurnRow r;
    r.idx = t.index;
    r.trigger = t.trigger;
    r.user_text = t.user_text;
    r.reply_text = t.reply_text;
    r.interrupted = t.interrupted;
    r.early_end = t.early_end;
    r.tools = t.tools;
    r.eot_ms = t.timing.eot_wait_ms;
    r.stt_final_ms = t.timing.stt_final_ms;
    r.stt_compute_ms = t.timing.stt_compute_ms;
    r.llm_first_token_ms = t.timing.llm_first_token_ms;
    r.first_sentence_ms = t.timing.first_sentence_ms;
    r.tts_first_audio_ms = t.timing.tts_first_audio_ms;
    r.first_rtp_ms = t.timing.first_rtp_ms;
    r.overhead_ms = t.timing.overhead_ms;
    r.speech_end_at = store::to_epoch_ms(t.speech_end);

    registry_.add("parley_turns_total", {{"trigger", t.trigger}});
    if (r.first_rtp_ms >= 0) registry_.observe("parley_voice_to_voice_seconds", {}, seconds(r.first_rtp_ms));
    const std::pair<const char*, double> stages[] = {
        {"eot", r.eot_ms},
        {"stt_final", r.stt_final_ms},
        {"llm_first_token", r.llm_first_token_ms},
        {"first_sentence", r.first_sentence_ms},
        {"tts_first_audio", r.tts_first_audio_ms},
        {"overhead", r.overhead_ms},
    };
    for (auto& [stage, ms] : stages)
        if (ms >= 0) registry_.observe("parley_stage_seconds", {{"stage", stage}}, seconds(ms));

    publish("turn", {{"call", uid}, {"turn", web::turn_json(r)}});
    if (db_) {
        db_->turn(uid, r);
        for (auto& tool : t.tools) db_->event(uid, "tool_call", tool);
    }
}

std::vector<web::LiveCall> Ops::live_calls() {
    std::vector<web::LiveCall> out;
    std::lock_guard lk(mu_);
    for (auto& [id, c] : live_) out.push_back(c);
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.started_at > b.started_at; });
    return out;
}

std::optional<call::CallId> Ops::live_call_id(const std::string& uid) {
    std::lock_guard lk(mu_);
    for (auto& [id, c] : live_)
        if (c.uid == uid) return id;
    return std::nullopt;
}

std::pair<int, int> Ops::lines_registered() {
    std::lock_guard lk(mu_);
    int n = 0;
    for (auto& [name, row] : lines_) n += row.status == "registered" ? 1 : 0;
    return {n, static_cast<int>(lines_.size())};
}

std::vector<store::LineRow> Ops::lines() {
    std::lock_guard lk(mu_);
    std::vector<store::LineRow> out;
    for (auto& [name, row] : lines_) out.push_back(row);
    return out;
}

void Ops::publish(const std::string& type, const nlohmann::json& data) {
    if (auto* s = server_.load()) s->publish(type, data);
}

}  // namespace parley::app
