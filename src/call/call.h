// call.h — one Call object per phone call; destroying it ends everything the call started.
//
// A Call owns its media session (RTP/RTCP sockets from the port pool and the media thread), its handler,
// and its bookkeeping. It is created by the CallManager on the control thread and destroyed there, in
// this order: media thread stopped and joined, handler told the call ended, sockets closed and their
// ports returned to the pool. The SIP dialog is named by id only; the CallManager releases it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "call/handler.h"
#include "media/media_session.h"
#include "sip/sip_stack.h"

namespace parley::media {
class Recording;
class RecordingTap;
}  // namespace parley::media

namespace parley::call {

enum class CallState { kRinging, kAnswered, kActive, kEnding };
const char* call_state_str(CallState s);

struct CallInfo {
    CallId id = 0;
    // Unique across restarts: "<start epoch ms>-<id>". The one id that links SIP (logged with the SIP
    // Call-ID), media, the store, recordings, the API and logs.
    std::string uid;
    std::string recording;  // path of this call's WAV ("" = not recorded)
    bool outgoing = false;
    sip::DialogId dialog = 0;
    std::string from, to, sip_call_id, line, remote_uri;
    std::chrono::system_clock::time_point started, answered, ended;
    std::string end_reason;
    int sip_status = 0;
    std::string codec;
    CallId bridge_of = 0;  // a transfer's bridge leg: the call it was dialled for (not reported to observers)
};

// What a Call asks of its manager; implemented by CallManager, thread-safe, never blocks.
class CallRequests {
public:
    virtual ~CallRequests() = default;
    virtual void request_hangup(CallId id, const std::string& reason) = 0;
    virtual void request_transfer(CallId id, const std::string& target) = 0;
};

class Call;

// Relays audio and DTMF between two answered calls (the bridge fallback of a transfer). Both Calls hold it
// (shared_ptr) and call relay_* from their own media threads: each 16 kHz frame one call receives goes to
// the other's Playout, each digit to the other's send_dtmf. The control thread calls detach() before either
// Call is destroyed; once it returns no relay touches either Call again (the mutex is held only for memory
// work: a Playout push, a DTMF queue append; never across I/O).
class AudioBridge {
public:
    AudioBridge(Call& a, Call& b) : a_(&a), b_(&b) {}
    void relay_audio(const Call& from, const AudioFrame& frame);  // media thread of `from`
    void relay_dtmf(const Call& from, char digit);                // media (or control) thread of `from`
    void detach();                                                // control thread; idempotent
    bool attached() const;
    uint64_t frames_relayed() const;

    // When the peer's queue is longer than this (its clock runs slower than ours, or it was held), the
    // backlog is dropped so the delay through the bridge stays bounded.
    static constexpr int kMaxQueuedMs = 200;

private:
    Call* peer_of(const Call& from) const { return &from == a_ ? b_ : a_; }
    mutable std::mutex mu_;
    Call* a_;  // both null once detached
    Call* b_;
    uint64_t frames_ = 0;
};

class Call final : public media::MediaSink, public CallControl {
public:
    Call(CallInfo info, std::unique_ptr<media::RtpSockets> sockets, media::MediaSessionOptions media_options,
         std::unique_ptr<CallHandler> handler, CallRequests& requests);
    ~Call() override;
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    // Before start_media(): record this call (both directions, tick by tick, through a MediaTap). The recording
    // is closed when the Call is destroyed (after the media thread has stopped).
    void set_recording(std::shared_ptr<media::Recording> recording);

    // Starts RTP and then the handler. false (and *error) when the media cannot start.
    bool start_media(const media::StreamParams& params, std::string* error);
    void update_media(const media::StreamParams& params);
    void stop_media() { media_->stop(); }  // joins the media thread; idempotent
    bool media_started() const { return media_started_; }
    uint16_t local_port() const { return media_->local_port(); }
    media::MediaStats media_stats() const { return media_->stats(); }
    // SRTP (docs/srtp.md), control thread: whether this call's signalling is encrypted, so that SDES keys
    // may be exchanged in its re-INVITEs too.
    void set_signalling_secure(bool secure) { signalling_secure_ = secure; }
    bool signalling_secure() const { return signalling_secure_; }
    // The SRTP keys of the stream last started or updated (control thread); nullopt: plain RTP.
    const std::optional<media::SrtpParams>& srtp() const { return srtp_; }

    // Control thread: forwards to the handler once it has started.
    void handler_on_transfer(const TransferResult& r) {
        if (handler_started_) handler_->on_transfer(r);
    }
    bool handler_on_time_limit() { return handler_started_ && handler_->on_time_limit(); }

    // Control thread. Once a bridge is set, incoming audio and DTMF go to it instead of the handler (the
    // handler gets no more on_audio/on_dtmf). nullptr clears it (after AudioBridge::detach()).
    void set_bridge(std::shared_ptr<AudioBridge> bridge);
    bool bridged() const { return bridged_.load(std::memory_order_acquire); }
    // A digit that arrived by SIP INFO (control thread): relayed when bridged. true if it was.
    bool relay_info_dtmf(char digit);
    // Control thread: a SIP INFO digit for the handler (RFC 4733 digits arrive on the media thread).
    void deliver_info_dtmf(char digit);

    CallInfo& info() { return info_; }
    CallState state() const { return state_; }
    void set_state(CallState s) { state_ = s; }

    // CallControl (any thread)
    CallId id() const override { return info_.id; }
    void hangup(const std::string& reason) override { requests_.request_hangup(info_.id, reason); }
    void send_dtmf(const std::string& digits) override { media_->send_dtmf(digits); }
    void transfer(const std::string& target) override { requests_.request_transfer(info_.id, target); }
    media::Playout& playout() override { return media_->playout(); }

private:
    // MediaSink (media thread)
    void on_audio(const AudioFrame& frame) override;
    void on_dtmf(char digit) override;
    void on_media_timeout() override;

    CallInfo info_;
    CallRequests& requests_;
    std::unique_ptr<CallHandler> handler_;
    std::unique_ptr<media::RecordingTap> tap_;  // outlives the media thread (media_ is destroyed first)
    std::unique_ptr<media::MediaSession> media_;  // declared last: destroyed (joined) first
    std::atomic<bool> handler_started_{false};
    std::atomic<bool> bridged_{false};
    mutable std::mutex bridge_mu_;  // guards bridge_ (set on the control thread, read on the media thread)
    std::shared_ptr<AudioBridge> bridge_;
    std::shared_ptr<AudioBridge> bridge() const {
        std::lock_guard lk(bridge_mu_);
        return bridge_;
    }
    bool media_started_ = false;
    bool signalling_secure_ = false;
    std::optional<media::SrtpParams> srtp_;
    CallState state_ = CallState::kRinging;
};

}  // namespace parley::call
