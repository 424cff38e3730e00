// playout.h — what a call is about to say: a thread-safe queue of PCM at the codec's rate.
//
// Producers (call handlers, TTS) push audio at whatever rate they make it (8, 16, 22.05, 24, 48 kHz…);
// it is resampled to the codec rate on the producer's thread, so the media thread only copies.
// The media thread pops exactly one packet's worth per tick; when the queue is short the rest of the
// packet is silence. flush() drops everything queued at once (barge-in must silence us within a tick).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/audio.h"
#include "media/resampler.h"

namespace parley::media {

class Playout {
public:
    explicit Playout(int codec_rate);

    // Producer side (any thread; one producer at a time per source rate is the normal case, but any
    // number is safe).
    void push(std::span<const int16_t> pcm, int sample_rate);
    void push(const AudioFrame& frame) { push(frame.samples, kInternalRate); }
    // Drops all queued audio and the resamplers' history. Returns the number of ms dropped.
    int flush();

    // Media thread: copies up to out.size() samples, returns how many were real audio (rest untouched).
    size_t pop(std::span<int16_t> out);

    // Echo-canceller reference. Once enabled, every pop() also records the whole packet as the far end
    // hears it (the real audio, then zeros for the silence the media thread fills in), at the codec rate.
    // take_reference() appends what was recorded since its last call to `out`; at most 1 s is kept.
    void enable_reference();
    void take_reference(std::vector<int16_t>& out);

    // Latency marker: mark() notes the current end of the queue; the first pop() that hands out audio pushed
    // after that moment records the time (the packet carrying it is sent right after). take_mark_time()
    // returns that time once, nullopt before. A flush() or a new mark() re-arms.
    void mark();
    std::optional<std::chrono::steady_clock::time_point> take_mark_time();

    int codec_rate() const { return codec_rate_; }
    int queued_ms() const;
    // Total ms of real audio handed to the media thread since the start (what the far end has heard).
    uint64_t played_ms() const;

private:
    const int codec_rate_;
    std::mutex producer_mu_;  // resamplers
    std::map<int, std::unique_ptr<Resampler>> resamplers_;
    mutable std::mutex queue_mu_;
    std::deque<int16_t> queue_;
    uint64_t played_samples_ = 0;
    uint64_t pushed_samples_ = 0;  // played_samples_ + queue_.size()
    bool mark_armed_ = false;
    uint64_t mark_pos_ = 0;
    std::optional<std::chrono::steady_clock::time_point> mark_time_;
    bool reference_on_ = false;
    std::deque<int16_t> reference_;
};

}  // namespace parley::media
