// ops.cpp — see ops.h.
#include "ops.h"

#include "common/log.h"

namespace parley::app {

namespace {

double seconds(double ms) { return ms / 1000.0; }

}  // namespace

void describe_metrics(metrics::Registry& r) {
    using metrics::Type;
    const std::vector<double> latency = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0};
    r.describe("parley_calls_active", Type::kGauge, "Calls Parley has now (ringing or up).");
    r.describe("parley_calls_total", Type::kCounter, "Calls ended, by direction and outcome.");
    r.describe("parley_line_registered", Type::kGauge, "1 when the line is registered with its registrar.");
    r.describe("parley_turns_total", Type::kCounter, "Conversation turns completed, by what started them.");
    r.describe("parley_voice_to_voice_seconds", Type::kHistogram,
               "From the end of the caller's speech to the first RTP packet of the reply.", latency);
    r.describe("parley_stage_seconds", Type::kHistogram,
               "Per-stage time after the end of the caller's speech (overhead: Parley's own time).",
               {0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0});
    r.describe("parley_engine_queue_depth", Type::kGauge, "Requests waiting for or running on an engine.");
    r.describe("parley_rtp_packets_received_total", Type::kCounter, "RTP packets received, all calls.");
    r.describe("parley_rtp_packets_lost_total", Type::kCounter, "RTP packets lost (sequence gaps), all calls.");
    r.describe("parley_rtp_jitter_seconds", Type::kHistogram, "RFC 3550 interarrival jitter at each call's end.",
               {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16});
    r.describe("parley_store_dropped_total", Type::kCounter, "Store writes dropped because its queue was full.");
}

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
        line_registered_.emplace(l.name, false);
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
    row.recording = info.recording;
    return row;
}

void Ops::store_start(const call::CallInfo& info) {
    {
        std::lock_guard lk(mu_);
        if (!uids_.emplace(info.id, info.uid).second) return;
    }
    if (!db_) return;
    db_->call_started(row_of(info));
    if (!info.recording.empty()) db_->call_recording(info.uid, info.recording);
    PLOG_INFO("event=call_stored call={} uid={}", info.id, info.uid);
}

void Ops::on_call_started(const call::CallInfo& info) {
    store_start(info);
    web::LiveCall live;
    live.uid = info.uid;
    live.direction = info.outgoing ? "outbound" : "inbound";
    live.from = info.from;
    live.to = info.to;
    live.line = info.line;
    live.sip_call_id = info.sip_call_id;
    live.state = "ringing";
    live.started_at = store::to_epoch_ms(info.started);
    size_t active;
    {
        std::lock_guard lk(mu_);
        live_[info.id] = live;
        active = live_.size();
    }
    registry_.set("parley_calls_active", {}, static_cast<double>(active));
    auto j = web::live_call_json(live);
    j["handler"] = handler_;
    publish("call_started", j);
    if (next_) next_->on_call_started(info);
}

void Ops::on_call_answered(const call::CallInfo& info) {
    store_start(info);  // an answered call we never saw start (cannot happen today; cheap to be sure)
    if (db_) db_->call_answered(info.uid, store::to_epoch_ms(info.answered));
    web::LiveCall live;
    {
        std::lock_guard lk(mu_);
        auto& l = live_[info.id];
        if (l.uid.empty()) {
            l.uid = info.uid;
            l.direction = info.outgoing ? "outbound" : "inbound";
            l.from = info.from;
            l.to = info.to;
            l.line = info.line;
            l.started_at = store::to_epoch_ms(info.started);
        }
        l.sip_call_id = info.sip_call_id;
        l.state = "up";
        l.answered_at = store::to_epoch_ms(info.answered);
        live = l;
    }
    auto j = web::live_call_json(live);
    j["handler"] = handler_;
    publish("call_answered", j);
    if (next_) next_->on_call_answered(info);
}

void Ops::on_call_ended(const call::CallSummary& s) {
    store_start(s.info);
    if (db_) db_->call_ended(s.info.uid, store::to_epoch_ms(s.info.ended), s.info.end_reason);
    size_t active;
    {
        std::lock_guard lk(mu_);
        live_.erase(s.info.id);
        uids_.erase(s.info.id);
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
    auto row = row_of(s.info);
    row.answered_at = s.answered ? store::to_epoch_ms(s.info.answered) : 0;
    row.ended_at = store::to_epoch_ms(s.info.ended);
    row.end_reason = s.info.end_reason;
    publish("call_ended", web::call_json(row, false));
    if (next_) next_->on_call_ended(s);
}

void Ops::on_line_state(const sip::LineStatus& status) {
    const bool registered = status.state == sip::LineState::kRegistered;
    {
        std::lock_guard lk(mu_);
        line_registered_[status.name] = registered;
    }
    registry_.set("parley_line_registered", {{"line", status.name}}, registered ? 1 : 0);
    store::LineRow row;
    row.name = status.name;
    row.status = sip::line_state_str(status.state);
    if (status.last_status) row.status += ": " + std::to_string(status.last_status) + " " + status.last_phrase;
    row.updated_at = store::now_ms();
    if (db_) db_->line_status(row);
    auto j = web::line_json(row);
    j["registered"] = registered;
    publish("line_status", j);
}

void Ops::on_turn(const agent::TurnRecord& t) {
    std::string uid;
    {
        std::lock_guard lk(mu_);
        auto it = uids_.find(t.call);
        if (it == uids_.end()) return;
        uid = it->second;
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
    for (auto& [name, ok] : line_registered_) n += ok ? 1 : 0;
    return {n, static_cast<int>(line_registered_.size())};
}

void Ops::publish(const std::string& type, const nlohmann::json& data) {
    if (auto* s = server_.load()) s->publish(type, data);
}

}  // namespace parley::app
