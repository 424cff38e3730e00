// handlers.cpp — the built-in call handlers: echo and playback.
#include <atomic>
#include <deque>

#include "call/handler.h"
#include "common/log.h"
#include "media/wav.h"

namespace parley::call {

const char* transfer_outcome_str(TransferOutcome o) {
    switch (o) {
        case TransferOutcome::kTransferred: return "transferred";
        case TransferOutcome::kBridged: return "bridged";
        case TransferOutcome::kFailed: return "failed";
    }
    return "failed";
}

namespace {

// Returns the caller's audio after a fixed delay: the simplest end-to-end check of a phone line.
class EchoHandler final : public CallHandler {
public:
    explicit EchoHandler(int delay_ms) : delay_frames_(static_cast<size_t>(delay_ms / kFrameMs)) {}
    void on_start(CallControl& control) override { control_ = &control; }
    void on_audio(const AudioFrame& frame) override {
        if (!control_) return;
        line_.push_back(frame);
        while (line_.size() > delay_frames_) {
            control_->playout().push(line_.front());
            line_.pop_front();
        }
    }

private:
    size_t delay_frames_;
    std::deque<AudioFrame> line_;
    CallControl* control_ = nullptr;
};

// Plays a prompt once, then hangs up when the far end has heard all of it.
class PlaybackHandler final : public CallHandler {
public:
    explicit PlaybackHandler(std::shared_ptr<const media::WavAudio> audio) : audio_(std::move(audio)) {}
    void on_start(CallControl& control) override {
        control_ = &control;
        control.playout().push(audio_->samples, audio_->sample_rate);
        started_ = true;
    }
    void on_audio(const AudioFrame&) override {
        if (started_ && !done_ && control_->playout().queued_ms() == 0) {
            done_ = true;
            control_->hangup("playback_done");
        }
    }

private:
    std::shared_ptr<const media::WavAudio> audio_;
    CallControl* control_ = nullptr;
    std::atomic<bool> started_{false};
    bool done_ = false;
};

class Factory final : public HandlerFactory {
public:
    Factory(CallConfig config, std::shared_ptr<const media::WavAudio> audio)
        : config_(std::move(config)), audio_(std::move(audio)) {}
    std::unique_ptr<CallHandler> create() override {
        if (config_.handler == "playback") return std::make_unique<PlaybackHandler>(audio_);
        return std::make_unique<EchoHandler>(config_.echo_delay_ms);
    }

private:
    CallConfig config_;
    std::shared_ptr<const media::WavAudio> audio_;
};

}  // namespace

std::unique_ptr<HandlerFactory> make_handler_factory(const CallConfig& config, std::string* error) {
    std::shared_ptr<const media::WavAudio> audio;
    if (config.handler == "playback") {
        auto wav = media::wav_read(config.playback_file, error);
        if (!wav) return nullptr;
        if (wav->samples.empty()) {
            if (error) *error = config.playback_file + ": no audio";
            return nullptr;
        }
        audio = std::make_shared<const media::WavAudio>(std::move(*wav));
    } else if (config.handler != "echo") {
        if (error) *error = "unknown call.handler \"" + config.handler + "\"";
        return nullptr;
    }
    return std::make_unique<Factory>(config, std::move(audio));
}

}  // namespace parley::call
