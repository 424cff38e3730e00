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
    // The LSTM state buffer is not zeroed by whisper_vad_init_*; a fresh stream starts from zero state.
    explicit WhisperVad(whisper_vad_context* ctx) : ctx_(ctx) { whisper_vad_reset_state(ctx_); }
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

    // Streaming: whisper.cpp's Silero graph carries nothing between 512-sample windows except the LSTM
    // state (no context samples, no padding other than zero-filling a final partial window), so running
    // each complete window through whisper_vad_detect_speech_no_reset() yields exactly the probabilities
    // that probabilities() gives over the concatenated audio. Complete windows are handed over together:
    // each call builds and allocates the graph once (about 20 us, against about 120 us per window on a
    // 2-core x86 VM), so 20 ms frames cost ~140 us per window; a trailing partial window waits for more.
    void stream(std::span<const float> pcm, std::vector<float>& probs) override {
        pending_.insert(pending_.end(), pcm.begin(), pcm.end());
        const size_t n = pending_.size() / kWindow * kWindow;
        if (n == 0) return;
        if (whisper_vad_detect_speech_no_reset(ctx_, pending_.data(), static_cast<int>(n))) {
            const float* p = whisper_vad_probs(ctx_);
            probs.insert(probs.end(), p, p + whisper_vad_n_probs(ctx_));
        } else {
            PLOG_WARN("event=vad_failed samples={}", n);
            probs.insert(probs.end(), n / kWindow, 0.0f);
        }
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    }

    void reset_stream() override {
        pending_.clear();
        whisper_vad_reset_state(ctx_);
    }

    // segments() and probabilities() reset the LSTM state (whisper_vad_detect_speech does), and with it a
    // stream in progress: a caller that mixes them calls reset_stream() before streaming again.
    std::vector<float> probabilities(std::span<const float> pcm) override {
        if (pcm.empty() || !whisper_vad_detect_speech(ctx_, pcm.data(), static_cast<int>(pcm.size()))) return {};
        const float* p = whisper_vad_probs(ctx_);
        return std::vector<float>(p, p + whisper_vad_n_probs(ctx_));
    }

private:
    static constexpr size_t kWindow = 512;  // Silero's window at 16 kHz (whisper_vad_context::n_window)
    whisper_vad_context* ctx_;
    std::vector<float> pending_;  // samples of the stream's incomplete window
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
