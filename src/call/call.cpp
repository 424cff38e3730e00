#include "call/call.h"

#include "common/log.h"
#include "media/recording.h"

namespace parley::call {

const char* call_state_str(CallState s) {
    switch (s) {
        case CallState::kRinging: return "ringing";
        case CallState::kAnswered: return "answered";
        case CallState::kActive: return "active";
        case CallState::kEnding: return "ending";
    }
    return "?";
}

Call::Call(CallInfo info, std::unique_ptr<media::RtpSockets> sockets, media::MediaSessionOptions media_options,
           std::unique_ptr<CallHandler> handler, CallRequests& requests)
    : info_(std::move(info)), requests_(requests), handler_(std::move(handler)) {
    media_ = std::make_unique<media::MediaSession>(std::move(sockets), std::move(media_options), *this);
}

Call::~Call() {
    media_->stop();  // joins the media thread: no more sink callbacks after this
    if (handler_started_) handler_->on_end();
    if (tap_) tap_->recording()->close();  // the writer thread finalizes the file; no I/O here
    // media_ (sockets, ports) and handler_ are freed by their unique_ptrs.
}

void Call::set_recording(std::shared_ptr<media::Recording> recording) {
    if (!recording || media_started_ || tap_) return;
    tap_ = std::make_unique<media::RecordingTap>(std::move(recording));
    media_->set_tap(tap_.get());
}

bool Call::start_media(const media::StreamParams& params, std::string* error) {
    if (media_started_) {
        update_media(params);
        return true;
    }
    if (!media_->start(params, error)) return false;
    srtp_ = params.srtp;
    media_started_ = true;
    handler_->on_start(*this);
    handler_started_.store(true, std::memory_order_release);
    return true;
}

void Call::update_media(const media::StreamParams& params) {
    srtp_ = params.srtp;
    media_->update(params);
}

void Call::set_bridge(std::shared_ptr<AudioBridge> bridge) {
    bool on = bridge != nullptr;
    {
        std::lock_guard lk(bridge_mu_);
        bridge_ = std::move(bridge);
    }
    // Stays true once set: a call that was bridged never goes back to its handler.
    if (on) bridged_.store(true, std::memory_order_release);
}

bool Call::relay_info_dtmf(char digit) {
    if (!bridged()) return false;
    if (auto b = bridge()) b->relay_dtmf(*this, digit);
    return true;
}

void Call::deliver_info_dtmf(char digit) {
    if (handler_started_.load(std::memory_order_acquire)) handler_->on_dtmf(digit);
}

void Call::on_audio(const AudioFrame& frame) {
    if (bridged_.load(std::memory_order_acquire)) {
        if (auto b = bridge()) b->relay_audio(*this, frame);
        return;
    }
    if (handler_started_.load(std::memory_order_acquire)) handler_->on_audio(frame);
}

void Call::on_dtmf(char digit) {
    if (bridged_.load(std::memory_order_acquire)) {
        if (auto b = bridge()) b->relay_dtmf(*this, digit);
        return;
    }
    if (handler_started_.load(std::memory_order_acquire)) handler_->on_dtmf(digit);
}

// ---- AudioBridge --------------------------------------------------------------------------------

void AudioBridge::relay_audio(const Call& from, const AudioFrame& frame) {
    std::lock_guard lk(mu_);
    if (!a_) return;
    media::Playout& out = peer_of(from)->playout();
    if (out.queued_ms() > kMaxQueuedMs) out.flush();
    out.push(frame);
    ++frames_;
}

void AudioBridge::relay_dtmf(const Call& from, char digit) {
    std::lock_guard lk(mu_);
    if (!a_) return;
    peer_of(from)->send_dtmf(std::string(1, digit));
}

void AudioBridge::detach() {
    std::lock_guard lk(mu_);
    a_ = b_ = nullptr;
}

bool AudioBridge::attached() const {
    std::lock_guard lk(mu_);
    return a_ != nullptr;
}

uint64_t AudioBridge::frames_relayed() const {
    std::lock_guard lk(mu_);
    return frames_;
}

void Call::on_media_timeout() { requests_.request_hangup(info_.id, "media_timeout"); }

}  // namespace parley::call
