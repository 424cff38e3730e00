// vad.cpp — Silero VAD through whisper.cpp's VAD API (whisper_vad_*), with whisper.cpp's default parameters.
//
// The model file is checked by validate_ggml_model() (whisper_stt.cpp) before whisper.cpp reads it, since
// whisper.cpp aborts or throws on many malformed files.
// ggml-backend.h (via whisper.h) trips -Wshadow, and the engines' headers are not SYSTEM includes.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <whisper.h>
#pragma GCC diagnostic pop

#include <cmath>

#include "common/log.h"
#include "stt/stt.h"

namespace parley::stt {

namespace detail {
// Defined in whisper_stt.cpp (the one place that knows the ggml layout); no shared header is ours to add.
bool validate_ggml_model(const std::string& path, const char* kind, std::string* error);
void route_whisper_logs();
}  // namespace detail

namespace {

class WhisperVad final : public Vad {
public:
    explicit WhisperVad(whisper_vad_context* ctx) : ctx_(ctx) {}
    ~WhisperVad() override { whisper_vad_free(ctx_); }
    WhisperVad(const WhisperVad&) = delete;
    WhisperVad& operator=(const WhisperVad&) = delete;

    std::vector<SpeechSpan> segments(std::span<const float> pcm) override {
        std::vector<SpeechSpan> out;
        if (pcm.empty()) return out;
        whisper_vad_segments* segs = whisper_vad_segments_from_samples(ctx_, whisper_vad_default_params(),
                                                                       pcm.data(), static_cast<int>(pcm.size()));
        if (!segs) {
            PLOG_WARN("event=vad_failed samples={}", pcm.size());
            return out;
        }
        const int n = whisper_vad_segments_n_segments(segs);
        for (int i = 0; i < n; ++i) {
            // whisper.cpp reports segment times in centiseconds.
            out.push_back({std::llround(whisper_vad_segments_get_segment_t0(segs, i) * 10.0),
                           std::llround(whisper_vad_segments_get_segment_t1(segs, i) * 10.0)});
        }
        whisper_vad_free_segments(segs);
        return out;
    }

    // TODO(streaming): placeholder — whole-window probabilities with LSTM state reset per window.
    void stream(std::span<const float> pcm, std::vector<float>& probs) override {
        pending_.insert(pending_.end(), pcm.begin(), pcm.end());
        while (pending_.size() >= 512) {
            auto p = probabilities(std::span<const float>(pending_.data(), 512));
            probs.insert(probs.end(), p.begin(), p.end());
            pending_.erase(pending_.begin(), pending_.begin() + 512);
        }
    }
    void reset_stream() override { pending_.clear(); }
    std::vector<float> pending_;

    std::vector<float> probabilities(std::span<const float> pcm) override {
        if (pcm.empty() || !whisper_vad_detect_speech(ctx_, pcm.data(), static_cast<int>(pcm.size()))) return {};
        const float* p = whisper_vad_probs(ctx_);
        return std::vector<float>(p, p + whisper_vad_n_probs(ctx_));
    }

private:
    whisper_vad_context* ctx_;
};

}  // namespace

std::unique_ptr<Vad> create_vad(const std::string& model_path, std::string* error) {
    detail::route_whisper_logs();
    if (!detail::validate_ggml_model(model_path, "vad", error)) return nullptr;
    whisper_vad_context_params p = whisper_vad_default_context_params();
    p.n_threads = 1;  // one 32 ms window at a time; more threads cost more than they save
    whisper_vad_context* ctx = whisper_vad_init_from_file_with_params(model_path.c_str(), p);
    if (!ctx) {
        if (error) *error = model_path + ": whisper.cpp could not load the VAD model";
        PLOG_ERROR("event=vad_load_failed model={}", model_path);
        return nullptr;
    }
    return std::make_unique<WhisperVad>(ctx);
}

}  // namespace parley::stt
