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
#include <string>

#include "call/handler.h"
#include "media/media_session.h"
#include "sip/sip_stack.h"

namespace parley::call {

enum class CallState { kRinging, kAnswered, kActive, kEnding };
const char* call_state_str(CallState s);

struct CallInfo {
    CallId id = 0;
    bool outgoing = false;
    sip::DialogId dialog = 0;
    std::string from, to, sip_call_id, line, remote_uri;
    std::chrono::system_clock::time_point started, answered, ended;
    std::string end_reason;
    int sip_status = 0;
    std::string codec;
};

// What a Call asks of its manager; implemented by CallManager, thread-safe, never blocks.
class CallRequests {
public:
    virtual ~CallRequests() = default;
    virtual void request_hangup(CallId id, const std::string& reason) = 0;
    virtual void request_transfer(CallId id, const std::string& target) = 0;
};

class Call final : public media::MediaSink, public CallControl {
public:
    Call(CallInfo info, std::unique_ptr<media::RtpSockets> sockets, media::MediaSessionOptions media_options,
         std::unique_ptr<CallHandler> handler, CallRequests& requests);
    ~Call() override;
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    // Starts RTP and then the handler. false (and *error) when the media cannot start.
    bool start_media(const media::StreamParams& params, std::string* error);
    void update_media(const media::StreamParams& params);
    void stop_media() { media_->stop(); }  // joins the media thread; idempotent
    bool media_started() const { return media_started_; }
    uint16_t local_port() const { return media_->local_port(); }
    media::MediaStats media_stats() const { return media_->stats(); }

    // Control thread: forwards to the handler once it has started.
    void handler_on_transfer(const TransferResult& r) {
        if (handler_started_) handler_->on_transfer(r);
    }
    bool handler_on_time_limit() { return handler_started_ && handler_->on_time_limit(); }

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
    std::unique_ptr<media::MediaSession> media_;  // declared last: destroyed (joined) first
    std::atomic<bool> handler_started_{false};
    bool media_started_ = false;
    CallState state_ = CallState::kRinging;
};

}  // namespace parley::call
