// call_manager.cpp — see call_manager.h.
#include "call/call_manager.h"

#include "media/recording.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "common/log.h"
#include "net/nat.h"

namespace parley::call {
namespace {

// The local address the kernel would use to reach a peer: the right address to advertise in SDP when we
// listen on 0.0.0.0 and the host has several interfaces (shared with the SIP stack's NAT policy).
using net::route_source;

std::string offer_address(const std::string& body) {
    auto sd = sdp::parse(body);
    if (!sd) return {};
    for (auto& m : sd->media)
        if (m.media == "audio" && m.connection_address) return *m.connection_address;
    return sd->connection_address.value_or("");
}

std::vector<media::CodecId> codec_ids(const std::vector<std::string>& names) {
    std::vector<media::CodecId> out;
    for (auto& n : names)
        if (auto id = media::codec_from_name(n)) out.push_back(*id);
    return out;
}

// Transfer timings.
constexpr std::chrono::seconds kReferAnswerTimeout{10};   // no final response to REFER -> bridge fallback
constexpr std::chrono::seconds kReferNotifyTimeout{10};   // REFER 2xx, no final NOTIFY -> transferred
constexpr std::chrono::seconds kBridgeAnswerTimeout{30};  // target not answering -> failed
constexpr std::chrono::seconds kTimeLimitBackstop{30};    // handler said it ends the call itself

// The handler of a bridge leg: its audio is relayed by the AudioBridge, so it does nothing itself.
class BridgeLegHandler final : public CallHandler {
public:
    void on_start(CallControl&) override {}
    void on_audio(const AudioFrame&) override {}
};

// ---- SRTP (docs/srtp.md) ----------------------------------------------------------------------------

// The SRTP mode of calls on `line` ("" = not on a line): the line's own srtp, else media.srtp.
sdp::LocalMedia::Srtp srtp_mode(const Config& config, const std::string& line) {
    std::string mode = config.media.srtp;
    for (const LineConfig& l : config.lines)
        if (l.name == line && !l.srtp.empty()) mode = l.srtp;
    if (mode == "required") return sdp::LocalMedia::Srtp::kRequired;
    if (mode == "optional") return sdp::LocalMedia::Srtp::kOptional;
    return sdp::LocalMedia::Srtp::kOff;
}

// Fills the SRTP side of `local` for a call on `line`: its mode, whether keys may be exchanged, and fresh
// keys for this offer or answer (every new offer/answer gets new ones, so that a context is never rebuilt
// with a key it already used). false (and *error) when the kernel gives no random bytes.
bool srtp_prepare(sdp::LocalMedia& local, const Config& config, const std::string& line, bool secure,
                  std::string* error) {
    local.srtp = srtp_mode(config, line);
    local.srtp_keys_allowed = secure || config.media.srtp_insecure_signalling;
    local.srtp_keys.clear();
    if (local.srtp == sdp::LocalMedia::Srtp::kOff || !local.srtp_keys_allowed) return true;
    for (int i = 0; i < 2; ++i) {
        media::SrtpKeySalt key;
        if (!media::srtp_random_key(key)) {
            if (error) *error = "no random bytes for an SRTP key (getrandom failed)";
            return false;
        }
        local.srtp_keys.push_back(key);
    }
    return true;
}

const char* srtp_str(const std::optional<media::SrtpParams>& srtp) {
    return srtp ? media::srtp_suite_name(srtp->suite) : "off";
}

uint64_t random_u64() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    return rng() >> 12;  // SDP o= ids are decimal; keep them short
}

}  // namespace

CallManager::CallManager(const Config& config, HandlerFactory& handlers, CallObserver* observer)
    : config_(config),
      handlers_(handlers),
      observer_(observer),
      ports_(config.media.address.empty() ? "0.0.0.0" : config.media.address, config.media.rtp_port_min,
             config.media.rtp_port_max) {}

CallManager::~CallManager() { stop(); }

void CallManager::attach(sip::SipStack& sip) {
    sip_ = &sip;
    thread_ = std::thread([this] { run(); });
}

void CallManager::post(std::function<void()> fn) {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
}

void CallManager::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        timers_.emplace(Clock::now() + delay, std::move(fn));
    }
    cv_.notify_one();
}

void CallManager::run() {
    std::unique_lock lk(mu_);
    while (!stopping_) {
        if (!queue_.empty()) {
            auto fn = std::move(queue_.front());
            queue_.pop_front();
            lk.unlock();
            fn();
            lk.lock();
            continue;
        }
        if (!timers_.empty() && timers_.begin()->first <= Clock::now()) {
            auto fn = std::move(timers_.begin()->second);
            timers_.erase(timers_.begin());
            lk.unlock();
            fn();
            lk.lock();
            continue;
        }
        if (timers_.empty()) {
            cv_.wait(lk);
        } else {
            // A copy: wait_until reads the deadline again after waking, and stop() may have cleared timers_.
            const Clock::time_point next = timers_.begin()->first;
            cv_.wait_until(lk, next);
        }
    }
}

void CallManager::stop() {
    {
        std::lock_guard lk(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
        queue_.clear();
        timers_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // The control thread is gone: finish what is left here (same single-threaded ownership).
    std::vector<CallId> ids;
    for (auto& [id, c] : calls_) ids.push_back(id);
    for (auto id : ids) end_call(id, "shutdown");
}

// ---- SipEvents: SIP thread -> control thread ----------------------------------------------------

void CallManager::on_invite(const sip::InviteInfo& info) {
    post([this, info] { handle_invite(info); });
}
void CallManager::on_ack(sip::DialogId id, const std::string& sdp) {
    post([this, id, sdp] { handle_ack(id, sdp); });
}
void CallManager::on_reinvite(sip::DialogId id, const std::string& sdp) {
    post([this, id, sdp] { handle_reinvite(id, sdp); });
}
void CallManager::on_progress(sip::DialogId id, int status, const std::string& phrase) {
    post([this, id, status, phrase] {
        if (Call* c = by_dialog(id))
            PLOG_INFO("event=call_progress call={} status={} phrase=\"{}\"", c->id(), status, phrase);
    });
}
void CallManager::on_answered(sip::DialogId id, const std::string& sdp) {
    post([this, id, sdp] { handle_answered(id, sdp); });
}
void CallManager::on_info_dtmf(sip::DialogId id, char digit) {
    post([this, id, digit] {
        if (Call* c = by_dialog(id)) {
            PLOG_INFO("event=dtmf_received call={} digit={} via=info", c->id(), digit);
            if (!c->relay_info_dtmf(digit)) c->deliver_info_dtmf(digit);  // bridged: to the other leg
        }
    });
}
void CallManager::on_refer_result(sip::DialogId id, int status, const std::string& phrase) {
    post([this, id, status, phrase] { handle_refer_result(id, status, phrase); });
}
void CallManager::on_refer_notify(sip::DialogId id, int sipfrag_status, bool terminated) {
    post([this, id, sipfrag_status, terminated] { handle_refer_notify(id, sipfrag_status, terminated); });
}
void CallManager::on_terminated(sip::DialogId id, sip::EndCause cause, int status, const std::string& phrase) {
    post([this, id, cause, status, phrase] { handle_terminated(id, cause, status, phrase); });
}
void CallManager::on_line_state(const sip::LineStatus& status) {
    // Logged by the SIP stack; observers (store, metrics, live events) hear it on the control thread.
    post([this, status] {
        if (observer_) observer_->on_line_state(status);
    });
}

// ---- control thread -----------------------------------------------------------------------------

Call* CallManager::by_dialog(sip::DialogId dialog) {
    auto it = dialog_to_call_.find(dialog);
    if (it == dialog_to_call_.end()) return nullptr;
    auto c = calls_.find(it->second);
    return c == calls_.end() ? nullptr : c->second.get();
}

sdp::LocalMedia CallManager::local_media(uint16_t port, const std::string& remote_hint) const {
    sdp::LocalMedia local;
    local.codecs = codec_ids(config_.media.codecs);
    local.port = port;
    local.ptime = config_.media.ptime;
    local.session_id = random_u64();
    local.session_version = 1;
    local.address = config_.media.address;
    if (local.address.empty() || local.address == "0.0.0.0") {
        local.address = remote_hint.empty() ? std::string() : route_source(remote_hint);
        if (local.address.empty()) local.address = route_source("192.0.2.1");  // the default route's source
        if (local.address.empty()) local.address = "127.0.0.1";
    }
    // NAT: a peer outside sip.local_networks gets the external media address (configured or discovered).
    if (nat_ && !remote_hint.empty()) {
        std::string ext = nat_->media_address_for(remote_hint);
        if (!ext.empty()) local.address = ext;
    }
    return local;
}

// One line per call that names every address its media depends on, so that one-way audio can be
// diagnosed from the log alone: where we receive (local), what we told the peer (advertised), where we
// send (peer, from its SDP; event=rtp_latched follows if RTP really comes from elsewhere).
void CallManager::log_media_addresses(CallId id, const sdp::LocalMedia& local, const std::string& peer,
                                      uint16_t peer_port) const {
    std::string bound = config_.media.address.empty() ? "0.0.0.0" : config_.media.address;
    std::string via = peer.empty() ? std::string() : route_source(peer);
    const char* nat = "off";
    if (nat_ && (peer.empty() || nat_->is_local(peer))) nat = "local_peer";
    else if (nat_) nat = nat_->media_address_for(peer).empty() ? "no_external" : "external";
    PLOG_INFO("event=call_media_addresses call={} local={}:{} local_route={} advertised={}:{} peer={}:{} nat={}",
              id, bound, local.port, via.empty() ? "-" : via, local.address, local.port,
              peer.empty() ? "-" : peer, peer_port, nat);
}

media::StreamParams CallManager::to_stream(const sdp::NegotiatedMedia& m) const {
    media::StreamParams p;
    p.codec = m.codec;
    p.payload_type = m.payload_type;
    p.telephone_event_pt = m.telephone_event_pt;
    p.ptime = m.ptime;
    p.remote_address = m.remote_address;
    p.remote_port = m.remote_port;
    // Our direction decides whether we send; the peer sends unless we are sendonly/inactive.
    p.send = m.direction == sdp::Direction::kSendRecv || m.direction == sdp::Direction::kSendOnly;
    p.receive = m.direction == sdp::Direction::kSendRecv || m.direction == sdp::Direction::kRecvOnly;
    p.srtp = m.srtp;  // SRTP keys (docs/srtp.md); nullopt: plain RTP
    if (m.remote_address == "0.0.0.0" || m.remote_port == 0) {
        p.send = false;
        p.receive = false;
        p.remote_address = "127.0.0.1";
        p.remote_port = 9;
    }
    return p;
}

std::string make_uid(std::chrono::system_clock::time_point started, CallId id) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(started.time_since_epoch()).count();
    return std::to_string(ms) + "-" + std::to_string(id);
}

std::unique_ptr<Call> CallManager::make_call(CallInfo info, std::unique_ptr<media::RtpSockets> sockets,
                                             std::unique_ptr<CallHandler> handler) {
    media::MediaSessionOptions mo;
    mo.jitter_ms = config_.media.jitter_ms;
    mo.timeout_s = config_.media.timeout_s;
    mo.symmetric_rtp = config_.media.symmetric_rtp;
    mo.log_tag = "call=" + std::to_string(info.id);
    info.uid = make_uid(info.started, info.id);
    if (!handler) handler = handlers_.create();
    // Recording: a line's calls when the line says record = true, line-less calls when recording.without_line.
    // Bridge legs are not recorded (the original call's recording already has both sides).
    std::shared_ptr<media::Recording> recording;
    if (recorder_ && info.bridge_of == 0) {
        bool record = false;
        if (info.line.empty()) {
            record = config_.recording.without_line;
        } else {
            for (const LineConfig& l : config_.lines)
                if (l.name == info.line) {
                    record = l.record;
                    break;
                }
        }
        if (record) {
            std::string error;
            recording = recorder_->open(info.uid, &error);
            if (recording)
                info.recording = recording->path();
            else
                PLOG_WARN("call={} uid={} event=recording_failed error=\"{}\" (the call goes on unrecorded)", info.id,
                          info.uid, error);
        }
    }
    auto call = std::make_unique<Call>(std::move(info), std::move(sockets), std::move(mo), std::move(handler), *this);
    if (recording) call->set_recording(std::move(recording));
    return call;
}

void CallManager::handle_invite(const sip::InviteInfo& inv) {
    auto reject = [&](int status, const std::string& phrase, const std::string& why) {
        PLOG_WARN("event=call_rejected dialog={} sip_call_id={} from={} status={} reason=\"{}\"", inv.id, inv.call_id,
                  inv.from, status, why);
        sip_->respond(inv.id, status, phrase);
    };
    if (active_.load() >= static_cast<size_t>(config_.call.max_concurrent))
        return reject(486, "Busy Here", "call limit reached (call.max_concurrent)");
    if (!inv.body.empty() && inv.content_type != "application/sdp")
        return reject(415, "Unsupported Media Type", "body is " + inv.content_type + ", expected application/sdp");

    std::optional<sdp::SessionDescription> offer;
    if (!inv.body.empty()) {
        std::string err;
        offer = sdp::parse(inv.body, &err);
        if (!offer) return reject(400, "Malformed SDP", "bad SDP offer: " + err);
    }
    std::string err;
    auto sockets = ports_.acquire(&err);
    if (!sockets) return reject(503, "Service Unavailable", err);

    Pending pending;
    std::string hint = inv.body.empty() ? std::string() : offer_address(inv.body);
    if (hint.empty() || hint == "0.0.0.0") hint = inv.source_ip;  // delayed offer: the SIP peer
    pending.local = local_media(sockets->rtp_port(), hint);
    if (!srtp_prepare(pending.local, config_, inv.line, inv.secure, &err)) return reject(500, "Server Error", err);
    if (!offer && pending.local.srtp == sdp::LocalMedia::Srtp::kRequired && !pending.local.srtp_keys_allowed)
        return reject(488, "Not Acceptable Here",
                      std::string("delayed offer needs our RTP/SAVP offer: ") + sdp::kSrtpInsecureSignallingReason);
    if (offer) {
        auto ans = sdp::answer_offer(*offer, pending.local);
        if (ans.status != 200) return reject(ans.status, "Not Acceptable Here", ans.reason);
        pending.answer_sdp = ans.sdp;
        pending.media = ans.media;
    } else {
        pending.answer_sdp = sdp::make_offer(pending.local);  // delayed offer: ours goes in the 200
    }

    CallInfo info;
    info.id = next_call_id_++;
    info.outgoing = false;
    info.dialog = inv.id;
    info.from = inv.from_display.empty() ? inv.from : "\"" + inv.from_display + "\" <" + inv.from + ">";
    info.to = inv.to;
    info.sip_call_id = inv.call_id;
    info.line = inv.line;
    info.started = std::chrono::system_clock::now();
    CallId id = info.id;
    auto call = make_call(std::move(info), std::move(sockets));
    call->set_signalling_secure(inv.secure);
    PLOG_INFO("event=call_incoming call={} uid={} sip_call_id={} from={} to={} line={} local_port={}", id,
              call->info().uid, inv.call_id, inv.from, inv.to, inv.line.empty() ? "-" : inv.line, call->local_port());
    if (observer_) observer_->on_call_started(call->info());
    log_media_addresses(id, pending.local, pending.media ? pending.media->remote_address : hint,
                        pending.media ? pending.media->remote_port : 0);
    calls_.emplace(id, std::move(call));
    dialog_to_call_[inv.id] = id;
    pending_[id] = std::move(pending);
    active_++;

    sip_->respond(inv.id, 180, "Ringing");
    if (config_.call.answer_delay_ms > 0)
        after(std::chrono::milliseconds(config_.call.answer_delay_ms), [this, id] { answer(id); });
    else
        answer(id);
}

void CallManager::answer(CallId id) {
    auto it = calls_.find(id);
    if (it == calls_.end() || it->second->state() != CallState::kRinging) return;
    Call& call = *it->second;
    Pending& pending = pending_[id];
    if (pending.media) {
        std::string err;
        if (!call.start_media(to_stream(*pending.media), &err)) {
            PLOG_ERROR("event=media_start_failed call={} error=\"{}\"", id, err);
            sip_->respond(call.info().dialog, 500, "Media Failure");
            call.set_state(CallState::kEnding);
            call.info().end_reason = "media_failed";
            return;
        }
        call.info().codec = std::string(media::codec_info(pending.media->codec).name);
    }
    sip_->respond(call.info().dialog, 200, "OK", pending.answer_sdp);
    call.set_state(CallState::kAnswered);
    call.info().answered = std::chrono::system_clock::now();
    if (pending.media) {
        auto& m = *pending.media;
        PLOG_INFO("event=call_answered call={} codec={} pt={} ptime={} dtmf_pt={} srtp={} remote={}:{} local_port={}",
                  id, call.info().codec, m.payload_type, m.ptime, m.telephone_event_pt, srtp_str(m.srtp),
                  m.remote_address, m.remote_port, call.local_port());
        pending_.erase(id);
    } else {
        PLOG_INFO("event=call_answered call={} offer_in_200=true local_port={}", id, call.local_port());
    }
    if (observer_) observer_->on_call_answered(call.info());
    if (config_.call.max_duration_s > 0)
        after(std::chrono::seconds(config_.call.max_duration_s), [this, id] { on_max_duration(id); });
}

void CallManager::on_max_duration(CallId id) {
    auto it = calls_.find(id);
    if (it == calls_.end() || it->second->state() == CallState::kEnding) return;
    Call& call = *it->second;
    // A bridged call has no conversation left to close: it ends now.
    if (!call.bridged() && call.handler_on_time_limit()) {
        PLOG_INFO("event=call_time_limit call={} handler_ends=true backstop_s={}", id, kTimeLimitBackstop.count());
        after(kTimeLimitBackstop, [this, id] { do_hangup(id, "max_duration"); });
        return;
    }
    do_hangup(id, "max_duration");
}

void CallManager::handle_ack(sip::DialogId dialog, const std::string& sdp_text) {
    Call* call = by_dialog(dialog);
    if (!call) return;
    auto pit = pending_.find(call->id());
    if (pit != pending_.end()) {
        // Delayed offer: the ACK carries the answer to the offer we put in the 200.
        std::string err;
        auto sd = sdp_text.empty() ? std::nullopt : sdp::parse(sdp_text, &err);
        std::optional<sdp::NegotiatedMedia> m;
        if (sd) m = sdp::accept_answer(*sd, pit->second.local, &err);
        if (sdp_text.empty()) err = "ACK carried no SDP answer";
        pending_.erase(pit);
        if (!m) {
            PLOG_WARN("event=bad_answer_in_ack call={} error=\"{}\"", call->id(), err);
            return do_hangup(call->id(), "bad_sdp_answer");
        }
        if (!call->start_media(to_stream(*m), &err)) {
            PLOG_ERROR("event=media_start_failed call={} error=\"{}\"", call->id(), err);
            return do_hangup(call->id(), "media_failed");
        }
        call->info().codec = std::string(media::codec_info(m->codec).name);
        PLOG_INFO("event=call_media call={} codec={} pt={} srtp={} remote={}:{}", call->id(), call->info().codec,
                  m->payload_type, srtp_str(m->srtp), m->remote_address, m->remote_port);
    }
    mark_active(*call);
}

void CallManager::mark_active(Call& call) {
    if (call.state() == CallState::kAnswered) {
        call.set_state(CallState::kActive);
        PLOG_INFO("event=call_active call={}", call.id());
    }
}

void CallManager::handle_reinvite(sip::DialogId dialog, const std::string& sdp_text) {
    Call* call = by_dialog(dialog);
    if (!call) return sip_->respond(dialog, 481, "Call/Transaction Does Not Exist");
    auto local = local_media(call->local_port(), offer_address(sdp_text));
    local.session_version = 2 + static_cast<uint64_t>(call->media_stats().packets_sent % 1000000);
    if (std::string kerr; !srtp_prepare(local, config_, call->info().line, call->signalling_secure(), &kerr)) {
        PLOG_WARN("event=reinvite_rejected call={} status=500 reason=\"{}\"", call->id(), kerr);
        return sip_->respond(dialog, 500, "Server Error");
    }
    if (sdp_text.empty()) {
        // Re-INVITE without an offer (session refresh): we offer the same media again.
        return sip_->respond(dialog, 200, "OK", sdp::make_offer(local));
    }
    std::string err;
    auto offer = sdp::parse(sdp_text, &err);
    if (!offer) {
        PLOG_WARN("event=reinvite_rejected call={} status=400 reason=\"{}\"", call->id(), err);
        return sip_->respond(dialog, 400, "Malformed SDP");
    }
    // SRTP: hold, unhold or a new address keeps the peer's key: then we keep ours too, and the media thread
    // keeps its contexts. If anything of the SRTP parameters changes, the answer has a fresh key of ours
    // (a context rebuilt with a used key would repeat its keystream).
    const std::optional<media::SrtpParams> current_srtp = call->srtp();
    if (current_srtp && !local.srtp_keys.empty()) local.srtp_keys.front() = current_srtp->local_key;
    auto ans = sdp::answer_offer(*offer, local);
    if (current_srtp && ans.media.srtp && *ans.media.srtp != *current_srtp) {
        if (!srtp_prepare(local, config_, call->info().line, call->signalling_secure(), &err)) {
            PLOG_WARN("event=reinvite_rejected call={} status=500 reason=\"{}\"", call->id(), err);
            return sip_->respond(dialog, 500, "Server Error");
        }
        ans = sdp::answer_offer(*offer, local);
    }
    if (ans.status != 200) {
        PLOG_WARN("event=reinvite_rejected call={} status={} reason=\"{}\"", call->id(), ans.status, ans.reason);
        return sip_->respond(dialog, ans.status, "Not Acceptable Here");
    }
    std::string merr;
    if (!call->start_media(to_stream(ans.media), &merr)) {
        PLOG_ERROR("event=media_start_failed call={} error=\"{}\"", call->id(), merr);
        return sip_->respond(dialog, 500, "Media Failure");
    }
    PLOG_INFO("event=call_reinvite call={} direction={} remote={}:{} hold={}", call->id(),
              sdp::direction_str(ans.media.direction), ans.media.remote_address, ans.media.remote_port,
              ans.media.on_hold() || ans.media.remote_address == "0.0.0.0");
    sip_->respond(dialog, 200, "OK", ans.sdp);
}

CallId CallManager::originate(const std::string& uri, const std::string& line, std::string* error) {
    return originate_call(uri, line, nullptr, 0, error);
}

CallId CallManager::originate(const std::string& uri, const std::string& line, std::unique_ptr<CallHandler> handler,
                              std::string* uid, std::string* error) {
    return originate_call(uri, line, std::move(handler), 0, error, uid);
}

CallId CallManager::originate_call(const std::string& uri, const std::string& line,
                                   std::unique_ptr<CallHandler> handler, CallId bridge_of, std::string* error,
                                   std::string* uid_out) {
    if (uri.rfind("sip:", 0) != 0 && uri.rfind("sips:", 0) != 0) {
        if (error) *error = "expected a sip: URI, got \"" + uri + "\"";
        return 0;
    }
    // SRTP: an RTP/SAVP offer would put our keys into signalling that is not encrypted.
    if (!sip_) {
        if (error) *error = "the SIP stack is not running";
        return 0;
    }
    // The SIP stack knows whether this INVITE goes over TLS (a tls line, or a sips:/transport=tls target).
    const bool secure = sip_->invite_secure(uri, line);
    if (srtp_mode(config_, line) == sdp::LocalMedia::Srtp::kRequired && !secure &&
        !config_.media.srtp_insecure_signalling) {
        // Not logged here: the caller reports it (parley dial logs event=call_failed, the API answers it).
        if (error) *error = std::string("SRTP is required but ") + sdp::kSrtpInsecureSignallingReason;
        return 0;
    }
    auto sockets = ports_.acquire(error);
    if (!sockets) return 0;
    CallId id = next_call_id_++;
    const auto started = std::chrono::system_clock::now();
    if (uid_out) *uid_out = make_uid(started, id);
    // The dialog id comes from the SIP stack; the rest happens on the control thread.
    auto shared_sockets = std::make_shared<std::unique_ptr<media::RtpSockets>>(std::move(sockets));
    auto shared_handler = std::make_shared<std::unique_ptr<CallHandler>>(std::move(handler));
    post([this, id, uri, line, shared_sockets, shared_handler, bridge_of, started, secure] {
        std::string host = uri.substr(uri.find(':') + 1);
        if (auto at = host.find('@'); at != std::string::npos) host = host.substr(at + 1);
        host = host.substr(0, host.find_first_of(":;>"));
        Pending pending;
        pending.local = local_media((*shared_sockets)->rtp_port(), host);
        if (std::string kerr; !srtp_prepare(pending.local, config_, line, secure, &kerr)) {
            // Rare (getrandom refused): the offer goes out without keys; a required line's answer then fails.
            PLOG_ERROR("event=srtp_key_failed call={} error=\"{}\"", id, kerr);
        }
        std::string offer = sdp::make_offer(pending.local);
        CallInfo info;
        info.id = id;
        info.outgoing = true;
        info.to = uri;
        info.remote_uri = uri;
        info.line = line;
        info.bridge_of = bridge_of;
        info.started = started;
        info.dialog = sip_->invite(uri, offer, line);
        auto call = make_call(info, std::move(*shared_sockets), std::move(*shared_handler));
        call->set_signalling_secure(secure);
        PLOG_INFO("event=call_outgoing call={} uid={} to={} line={} local_port={}", id, call->info().uid, uri,
                  line.empty() ? "-" : line, call->local_port());
        if (observer_ && !bridge_of) observer_->on_call_started(call->info());
        calls_.emplace(id, std::move(call));
        dialog_to_call_[info.dialog] = id;
        pending_[id] = std::move(pending);
        active_++;
        if (config_.call.max_duration_s > 0)
            after(std::chrono::seconds(config_.call.max_duration_s), [this, id] { on_max_duration(id); });
    });
    return id;
}

void CallManager::handle_answered(sip::DialogId dialog, const std::string& sdp_text) {
    Call* call = by_dialog(dialog);
    if (!call) return;
    auto pit = pending_.find(call->id());
    if (pit == pending_.end()) return;  // a retransmitted 200
    std::string err;
    auto sd = sdp::parse(sdp_text, &err);
    std::optional<sdp::NegotiatedMedia> m;
    if (sd) m = sdp::accept_answer(*sd, pit->second.local, &err);
    if (m) log_media_addresses(call->id(), pit->second.local, m->remote_address, m->remote_port);
    pending_.erase(pit);
    call->set_state(CallState::kActive);
    call->info().answered = std::chrono::system_clock::now();
    if (!m) {
        PLOG_WARN("event=bad_sdp_answer call={} error=\"{}\"", call->id(), err.empty() ? "no SDP" : err);
        return do_hangup(call->id(), "bad_sdp_answer");
    }
    if (!call->start_media(to_stream(*m), &err)) {
        PLOG_ERROR("event=media_start_failed call={} error=\"{}\"", call->id(), err);
        return do_hangup(call->id(), "media_failed");
    }
    call->info().codec = std::string(media::codec_info(m->codec).name);
    PLOG_INFO("event=call_answered call={} codec={} pt={} ptime={} srtp={} remote={}:{} local_port={}", call->id(),
              call->info().codec, m->payload_type, m->ptime, srtp_str(m->srtp), m->remote_address, m->remote_port,
              call->local_port());
    // A bridge leg is part of the original call: observers (e.g. `parley call` waiting for its call) see that one.
    if (observer_ && !call->info().bridge_of) observer_->on_call_answered(call->info());
    if (bridge_legs_.count(call->id())) complete_bridge(call->id());
}

void CallManager::request_hangup(CallId id, const std::string& reason) {
    post([this, id, reason] { do_hangup(id, reason); });
}

void CallManager::request_transfer(CallId id, const std::string& target) {
    post([this, id, target] { start_transfer(id, target); });
}

// ---- transfer (control thread) ------------------------------------------------------------------

void CallManager::start_transfer(CallId id, const std::string& target) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    Call& call = *it->second;
    auto refuse = [&](const std::string& why) {
        PLOG_WARN("event=transfer_result call={} outcome=failed status=0 target={} detail=\"{}\"", id, target, why);
        call.handler_on_transfer({TransferOutcome::kFailed, 0, why});
    };
    if (call.state() != CallState::kActive && call.state() != CallState::kAnswered)
        return refuse("the call is not answered or is ending");
    if (transfers_.count(id) || bridge_legs_.count(id)) return refuse("a transfer is already under way");
    if (target.rfind("sip:", 0) != 0 && target.rfind("sips:", 0) != 0)
        return refuse("expected a sip: URI, got \"" + target + "\"");
    Transfer& t = transfers_[id];
    t.serial = ++transfer_serial_;
    t.target = target;
    t.phase = Transfer::Phase::kRefer;
    PLOG_INFO("event=transfer_refer call={} target={}", id, target);
    sip_->refer(call.info().dialog, target);
    after(kReferAnswerTimeout, [this, id, serial = t.serial] {
        auto tr = transfers_.find(id);
        if (tr == transfers_.end() || tr->second.serial != serial || tr->second.phase != Transfer::Phase::kRefer)
            return;
        PLOG_WARN("event=transfer_refer_timeout call={} after_s={}", id, kReferAnswerTimeout.count());
        start_bridge(id, 408, "REFER unanswered");
    });
}

void CallManager::handle_refer_result(sip::DialogId dialog, int status, const std::string& phrase) {
    Call* call = by_dialog(dialog);
    if (!call) return;
    CallId id = call->id();
    auto it = transfers_.find(id);
    if (it == transfers_.end() || it->second.phase != Transfer::Phase::kRefer) return;  // late: already decided
    Transfer& t = it->second;
    t.refer_status = status;
    t.refer_detail = fmt::format("REFER {} {}", status, phrase);
    PLOG_INFO("event=transfer_refer_response call={} status={} phrase=\"{}\"", id, status, phrase);
    if (status >= 200 && status < 300) {
        t.phase = Transfer::Phase::kWaitNotify;
        after(kReferNotifyTimeout, [this, id, serial = t.serial] {
            auto tr = transfers_.find(id);
            if (tr == transfers_.end() || tr->second.serial != serial ||
                tr->second.phase != Transfer::Phase::kWaitNotify)
                return;
            int st = tr->second.refer_status;
            std::string detail = tr->second.refer_detail + fmt::format(", no final NOTIFY in {} s",
                                                                      kReferNotifyTimeout.count());
            finish_transfer(id, TransferOutcome::kTransferred, st, detail);
            do_hangup(id, "transferred");
        });
        return;
    }
    start_bridge(id, status, t.refer_detail);
}

void CallManager::handle_refer_notify(sip::DialogId dialog, int sipfrag, bool terminated) {
    Call* call = by_dialog(dialog);
    if (!call) return;
    CallId id = call->id();
    auto it = transfers_.find(id);
    PLOG_INFO("event=transfer_notify call={} sipfrag={} terminated={}", id, sipfrag, terminated);
    if (it == transfers_.end()) return;
    Transfer& t = it->second;
    // A NOTIFY can overtake the 202 (UDP): it proves the REFER was accepted.
    if (t.phase == Transfer::Phase::kRefer) {
        t.phase = Transfer::Phase::kWaitNotify;
        t.refer_status = 202;
        t.refer_detail = "REFER accepted";
    }
    if (t.phase != Transfer::Phase::kWaitNotify || sipfrag < 200) return;  // 1xx: the target is ringing
    std::string detail = fmt::format("{}, NOTIFY SIP/2.0 {}", t.refer_detail, sipfrag);
    if (sipfrag < 300) {
        finish_transfer(id, TransferOutcome::kTransferred, sipfrag, detail);
        do_hangup(id, "transferred");
    } else {
        finish_transfer(id, TransferOutcome::kFailed, sipfrag, detail);
    }
}

void CallManager::start_bridge(CallId id, int refer_status, const std::string& why) {
    auto it = transfers_.find(id);
    auto c = calls_.find(id);
    if (it == transfers_.end() || c == calls_.end()) return;
    Transfer& t = it->second;
    t.refer_status = refer_status;
    t.refer_detail = why;
    std::string err;
    CallId leg = originate_call(t.target, c->second->info().line, std::make_unique<BridgeLegHandler>(), id, &err);
    if (leg == 0) {
        finish_transfer(id, TransferOutcome::kFailed, refer_status, why + "; cannot call the target: " + err);
        return;
    }
    t.phase = Transfer::Phase::kDialing;
    t.leg = leg;
    bridge_legs_[leg] = id;
    PLOG_INFO("event=transfer_bridge_dial call={} leg={} target={} why=\"{}\"", id, leg, t.target, why);
    after(kBridgeAnswerTimeout, [this, id, serial = t.serial] {
        auto tr = transfers_.find(id);
        if (tr == transfers_.end() || tr->second.serial != serial || tr->second.phase != Transfer::Phase::kDialing)
            return;
        PLOG_WARN("event=transfer_bridge_timeout call={} leg={} after_s={}", id, tr->second.leg,
                  kBridgeAnswerTimeout.count());
        tr->second.leg_timed_out = true;
        do_hangup(tr->second.leg, "transfer_no_answer");  // its end reports the failure
    });
}

void CallManager::complete_bridge(CallId leg_id) {
    auto lit = bridge_legs_.find(leg_id);
    if (lit == bridge_legs_.end()) return;
    CallId id = lit->second;
    auto tit = transfers_.find(id);
    auto c = calls_.find(id);
    auto l = calls_.find(leg_id);
    if (tit == transfers_.end() || c == calls_.end() || l == calls_.end()) return;
    Call& orig = *c->second;
    Call& leg = *l->second;
    if (orig.state() == CallState::kEnding || !orig.media_started() || !leg.media_started()) {
        do_hangup(leg_id, "bridge_peer_ended");
        return;
    }
    auto bridge = std::make_shared<AudioBridge>(orig, leg);
    orig.playout().flush();  // whatever the handler had queued is not for the target's conversation
    orig.set_bridge(bridge);
    leg.set_bridge(bridge);
    Transfer& t = tit->second;
    t.phase = Transfer::Phase::kBridged;
    t.bridge = bridge;
    PLOG_INFO("event=bridge_started call={} leg={} target={} codecs={}/{}", id, leg_id, t.target, orig.info().codec,
              leg.info().codec);
    finish_transfer(id, TransferOutcome::kBridged, 200, t.refer_detail + "; target 200");
}

// Reports the result to the original call's handler; the Transfer stays while a bridge exists.
void CallManager::finish_transfer(CallId id, TransferOutcome outcome, int status, const std::string& detail) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    PLOG_INFO("event=transfer_result call={} outcome={} status={} target={} detail=\"{}\"", id,
              transfer_outcome_str(outcome), status, it->second.target, detail);
    if (outcome != TransferOutcome::kBridged) transfers_.erase(it);
    auto c = calls_.find(id);
    if (c != calls_.end()) c->second->handler_on_transfer({outcome, status, detail});
}

// `call` (id) is ending: detach any bridge it is in before it is destroyed, and end or fail its partner.
void CallManager::transfer_on_call_end(CallId id, Call& call) {
    if (auto lit = bridge_legs_.find(id); lit != bridge_legs_.end()) {  // a bridge leg
        CallId orig = lit->second;
        bridge_legs_.erase(lit);
        auto tit = transfers_.find(orig);
        if (tit == transfers_.end()) return;
        Transfer& t = tit->second;
        if (t.bridge) {
            t.bridge->detach();
            if (auto c = calls_.find(orig); c != calls_.end()) c->second->set_bridge(nullptr);
            PLOG_INFO("event=bridge_ended call={} leg={} ended_by=leg reason={} frames={}", orig, id,
                      call.info().end_reason, t.bridge->frames_relayed());
            call.set_bridge(nullptr);
            transfers_.erase(tit);
            do_hangup(orig, "bridge_peer_ended");
            return;
        }
        // Never answered: busy, failed, cancelled by our timeout.
        int st = t.leg_timed_out ? 408 : call.info().sip_status;
        std::string detail = fmt::format("{}; target {}", t.refer_detail, t.leg_timed_out ? std::string("no answer")
                                                                                             : call.info().end_reason);
        finish_transfer(orig, TransferOutcome::kFailed, st, detail);
        return;
    }
    auto tit = transfers_.find(id);  // an original call
    if (tit == transfers_.end()) return;
    Transfer& t = tit->second;
    if (t.leg) {
        bridge_legs_.erase(t.leg);
        if (t.bridge) {
            t.bridge->detach();
            if (auto l = calls_.find(t.leg); l != calls_.end()) l->second->set_bridge(nullptr);
            call.set_bridge(nullptr);
            PLOG_INFO("event=bridge_ended call={} leg={} ended_by=call reason={} frames={}", id, t.leg,
                      call.info().end_reason, t.bridge->frames_relayed());
        }
        do_hangup(t.leg, t.bridge ? "bridge_peer_ended" : "transfer_abandoned");
    }
    transfers_.erase(tit);
}

void CallManager::hangup_all(const std::string& reason) {
    post([this, reason] {
        std::vector<CallId> ids;
        for (auto& [id, c] : calls_) ids.push_back(id);
        for (auto id : ids) do_hangup(id, reason);
    });
}

void CallManager::do_hangup(CallId id, const std::string& reason) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    Call& call = *it->second;
    if (call.state() == CallState::kEnding) return;
    call.set_state(CallState::kEnding);
    call.info().end_reason = reason;
    PLOG_INFO("event=call_hangup call={} reason={}", id, reason);
    sip_->hangup(call.info().dialog);
    // Signalling ends the call (on_terminated); if it never does, free everything anyway.
    after(std::chrono::seconds(40), [this, id] {
        auto c = calls_.find(id);
        if (c == calls_.end()) return;
        sip::DialogId dialog = c->second->info().dialog;
        end_call(id, c->second->info().end_reason + "_unconfirmed");
        sip_->release(dialog);
    });
}

void CallManager::handle_terminated(sip::DialogId dialog, sip::EndCause cause, int status,
                                    const std::string& phrase) {
    Call* call = by_dialog(dialog);
    if (call) {
        auto& info = call->info();
        info.sip_status = status;
        // A transferee may send its own BYE as we send ours: the call still ended by transfer.
        if (info.end_reason.empty() || (cause == sip::EndCause::kRemoteBye && info.end_reason != "transferred")) {
            if (cause == sip::EndCause::kFailed)
                info.end_reason = "failed_" + std::to_string(status);
            else
                info.end_reason = sip::end_cause_str(cause);
        }
        (void)phrase;
        end_call(call->id(), info.end_reason);
    }
    dialog_to_call_.erase(dialog);
    sip_->release(dialog);
}

void CallManager::end_call(CallId id, std::string reason) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    it->second->info().end_reason = reason;
    transfer_on_call_end(id, *it->second);  // before the call goes: no bridge may point at it
    it = calls_.find(id);
    std::unique_ptr<Call> call = std::move(it->second);
    calls_.erase(it);
    pending_.erase(id);
    dialog_to_call_.erase(call->info().dialog);

    CallSummary summary;
    summary.info = call->info();
    summary.info.end_reason = reason;
    summary.info.ended = std::chrono::system_clock::now();
    summary.answered = summary.info.answered.time_since_epoch().count() != 0;
    if (summary.answered)
        summary.duration_s =
            std::chrono::duration<double>(summary.info.ended - summary.info.answered).count();
    call->stop_media();  // joins the media thread: its final counters are now in the stats
    summary.media = call->media_stats();
    call.reset();  // handler told, sockets closed, ports returned
    active_--;
    const auto& m = summary.media;
    PLOG_INFO("event=call_ended call={} reason={} sip_status={} answered={} duration_s={:.2f} rx={} tx={} lost={} "
              "late={} invalid={} foreign={} srtp_auth_failed={} jitter_ms={:.1f} send_late_p99_us={} dtmf_rx={}",
              id, reason, summary.info.sip_status, summary.answered, summary.duration_s, m.packets_received,
              m.packets_sent, m.packets_lost, m.packets_late, m.packets_invalid, m.packets_foreign,
              m.packets_auth_failed, m.jitter_ms, m.send_late_p99_us, m.dtmf_received);
    if (observer_ && !summary.info.bridge_of) observer_->on_call_ended(summary);
    {
        std::lock_guard lk(idle_mu_);
    }
    idle_cv_.notify_all();
}

bool CallManager::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lk(idle_mu_);
    return idle_cv_.wait_for(lk, timeout, [this] { return active_.load() == 0; });
}

}  // namespace parley::call
