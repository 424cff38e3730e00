// tts.h — text to speech, sentence by sentence, streamed at the engine's native rate.
//
//   auto tts = parley::tts::create(config.tts, &err);
//   tts->synthesize("Hello there.", [&](std::span<const int16_t> pcm, int rate) { playout.push(pcm, rate); return true; }, token);
//
// Audio is delivered in chunks as it is produced, at the engine's own sample rate (espeak-ng: 22050 Hz;
// remote: tts.remote_sample_rate); the media layer resamples. Threading: synthesize() may be called from
// many threads at once; espeak-ng has process-global state, so the embedded engine serialises syntheses
// on one engine thread (a sentence takes a few ms) — callers just block a little longer. Cancel: returns
// within one chunk. Errors never throw.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/cancel.h"
#include "common/config.h"

namespace parley::tts {

using AudioCallback = std::function<bool(std::span<const int16_t> pcm, int sample_rate)>;  // false = stop

struct Result {
    bool ok = false;
    std::string error;
    int sample_rate = 0;
    int64_t samples = 0;
    double first_audio_ms = 0, total_ms = 0;
};

class TextToSpeech {
public:
    virtual ~TextToSpeech() = default;
    virtual Result synthesize(const std::string& text, const AudioCallback& on_audio, const CancelToken& cancel) = 0;
    virtual int sample_rate() const = 0;
    virtual std::string describe() const = 0;
};

std::unique_ptr<TextToSpeech> create(const TtsConfig& config, std::string* error);

}  // namespace parley::tts
