// engine_gauges.h — counts the requests in flight on each engine (waiting for a worker or running) for
// parley_engine_queue_depth. Thin decorators: one atomic increment before, one decrement after.
#pragma once

#include <atomic>
#include <memory>

#include "llm/llm.h"
#include "stt/stt.h"
#include "tts/tts.h"

namespace parley::app {

struct EngineDepths {
    std::atomic<int> stt{0}, llm{0}, tts{0};
};

class InFlight {
public:
    explicit InFlight(std::atomic<int>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
    ~InFlight() { n_.fetch_sub(1, std::memory_order_relaxed); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

private:
    std::atomic<int>& n_;
};

class CountingStt final : public stt::SpeechToText {
public:
    CountingStt(std::shared_ptr<stt::SpeechToText> inner, std::shared_ptr<EngineDepths> d)
        : inner_(std::move(inner)), d_(std::move(d)) {}
    stt::Transcript transcribe(std::span<const float> pcm, const stt::Options& options, const CancelToken& cancel) override {
        InFlight f(d_->stt);
        return inner_->transcribe(pcm, options, cancel);
    }
    std::string describe() const override { return inner_->describe(); }

private:
    std::shared_ptr<stt::SpeechToText> inner_;
    std::shared_ptr<EngineDepths> d_;
};

class CountingChat final : public llm::Chat {
public:
    CountingChat(std::unique_ptr<llm::Chat> inner, std::shared_ptr<EngineDepths> d)
        : inner_(std::move(inner)), d_(std::move(d)) {}
    llm::Reply reply(const std::vector<llm::Message>& history, const llm::TokenCallback& on_piece,
                     const CancelToken& cancel, const llm::Sampling* sampling) override {
        InFlight f(d_->llm);
        return inner_->reply(history, on_piece, cancel, sampling);
    }

private:
    std::unique_ptr<llm::Chat> inner_;
    std::shared_ptr<EngineDepths> d_;
};

class CountingLlm final : public llm::LanguageModel {
public:
    CountingLlm(std::shared_ptr<llm::LanguageModel> inner, std::shared_ptr<EngineDepths> d)
        : inner_(std::move(inner)), d_(std::move(d)) {}
    std::unique_ptr<llm::Chat> open() override {
        auto c = inner_->open();
        if (!c) return c;
        return std::make_unique<CountingChat>(std::move(c), d_);
    }
    std::string describe() const override { return inner_->describe(); }
    int active_sequences() const override { return inner_->active_sequences(); }

private:
    std::shared_ptr<llm::LanguageModel> inner_;
    std::shared_ptr<EngineDepths> d_;
};

class CountingTts final : public tts::TextToSpeech {
public:
    CountingTts(std::shared_ptr<tts::TextToSpeech> inner, std::shared_ptr<EngineDepths> d)
        : inner_(std::move(inner)), d_(std::move(d)) {}
    tts::Result synthesize(const std::string& text, const tts::AudioCallback& on_audio, const CancelToken& cancel) override {
        InFlight f(d_->tts);
        return inner_->synthesize(text, on_audio, cancel);
    }
    int sample_rate() const override { return inner_->sample_rate(); }
    std::string describe() const override { return inner_->describe(); }

private:
    std::shared_ptr<tts::TextToSpeech> inner_;
    std::shared_ptr<EngineDepths> d_;
};

}  // namespace parley::app
