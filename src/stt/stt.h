// stt.h — speech to text: what a SpeechToText promises, embedded (whisper.cpp) or remote (OpenAI API).
//
//   std::string err;
//   auto stt = parley::stt::create(config.stt, &err);          // loads the model once
//   auto r = stt->transcribe(pcm16k, {}, token);                 // blocking; any thread; many at once
//   if (r.ok) use(r.text);
//
// Threading: transcribe() may be called from many threads at once. Embedded: at most `workers` decodes
// run in parallel, each on its own whisper_state (the model's weights are shared); further calls wait
// for a free worker (the wait is cancellable). Buffers: the caller owns `pcm`; nothing is kept after
// return. Cancel: cancelling the token makes transcribe() return within one decoder step with
// ok=false, error="cancelled". Errors never throw: ok=false and a one-line `error`.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/cancel.h"
#include "common/config.h"

namespace parley::stt {

struct Segment {
    int64_t t0_ms = 0, t1_ms = 0;
    std::string text;
};

struct Transcript {
    bool ok = false;
    std::string error;
    std::string text;               // all segments joined, trimmed
    std::vector<Segment> segments;
    double compute_ms = 0;          // time spent decoding (not waiting for a worker)
    double encode_ms = 0;           // embedded: the first window's encoder and first decoder pass (0 if unknown)
};

struct Options {
    std::string language;  // overrides the config's when not empty
    std::string prompt;    // appended to the config's initial prompt (e.g. conversation context)
};

class SpeechToText {
public:
    virtual ~SpeechToText() = default;
    // `pcm`: 16 kHz mono float samples in [-1, 1].
    virtual Transcript transcribe(std::span<const float> pcm, const Options& options, const CancelToken& cancel) = 0;
    virtual std::string describe() const = 0;  // "whisper.cpp ggml-base.en.bin, 2 workers" / "openai http://…"
};

// whisper's encoder positions for `samples` of 16 kHz audio when stt.fit_window is on: one per 20 ms
// (whisper's 30 s window is 1500 positions), plus 32 (0.64 s) of margin, rounded up to a multiple of 16;
// 0 (= whisper's full window) when that reaches the 1500 of the full window.
int fitted_audio_ctx(size_t samples);

// nullptr and *error (naming the file or URL and what is wrong) when the engine cannot start. A
// missing, truncated or non-whisper model file is detected before whisper.cpp sees it.
std::unique_ptr<SpeechToText> create(const SttConfig& config, std::string* error);

// ---- Voice activity detection (Silero via whisper.cpp's VAD API) ---------------------------------

struct SpeechSpan {
    int64_t start_ms = 0, end_ms = 0;
};

// One per call (it is not thread-safe); the model file is loaded per instance (it is 0.9 MB).
class Vad {
public:
    virtual ~Vad() = default;
    // Speech segments in 16 kHz mono `pcm`, with whisper.cpp's default VAD parameters.
    virtual std::vector<SpeechSpan> segments(std::span<const float> pcm) = 0;
    // Speech probability of each 32 ms window (512 samples) of `pcm`.
    virtual std::vector<float> probabilities(std::span<const float> pcm) = 0;

    // Streaming (one call's live audio): feed 16 kHz samples in any amounts (e.g. 320 per 20 ms frame);
    // appends to `probs` the probability of each 512-sample window completed by this call, keeping the
    // model's LSTM state between calls, so the values equal probabilities() over the concatenated audio.
    // Cheap enough for the media thread (one window is well under a millisecond).
    virtual void stream(std::span<const float> pcm, std::vector<float>& probs) = 0;
    // Forgets the stream (buffered samples and LSTM state).
    virtual void reset_stream() = 0;
};

std::unique_ptr<Vad> create_vad(const std::string& model_path, std::string* error);

}  // namespace parley::stt
