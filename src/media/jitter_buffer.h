// jitter_buffer.h — receive-side reorder and de-jitter buffer for one RTP stream.
//
// Packets go in as they arrive (any order); the media clock takes them out one at a time in sequence
// order, after an initial fill of `target_packets`. A gap in the sequence becomes kMissing (the caller
// conceals it); packets that arrive after their slot was played are dropped as late; duplicates are
// dropped; a jump of more than `max_packets` (a new stream or a restart) resets the buffer.
// Not thread-safe: owned and used by one call's media thread.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace parley::media {

class JitterBuffer {
public:
    struct Config {
        int target_packets = 3;  // packets buffered before playout starts (3 x 20 ms = 60 ms)
        int max_packets = 50;    // capacity; beyond this the oldest are played out early / dropped
    };
    enum class Result { kPacket, kMissing, kEmpty };
    struct Stats {
        uint64_t received = 0, played = 0, missing = 0, late = 0, duplicate = 0, overflow = 0, resets = 0;
    };

    JitterBuffer() : JitterBuffer(Config{}) {}
    explicit JitterBuffer(Config config);

    void put(uint16_t sequence, uint32_t timestamp, std::span<const uint8_t> payload);
    // kPacket: `payload` holds the next packet in order. kMissing: the next slot's packet is lost but
    // later ones are buffered (conceal one packet). kEmpty: nothing to play (not yet filled, or drained);
    // the caller plays silence/concealment and the buffer refills to target before resuming.
    Result get(std::vector<uint8_t>& payload, uint32_t* timestamp = nullptr);

    size_t depth() const;  // packets currently buffered
    const Stats& stats() const { return stats_; }

private:
    struct Slot {
        uint16_t sequence;
        uint32_t timestamp;
        std::vector<uint8_t> payload;
    };
    Config config_;
    std::deque<Slot> slots_;  // sorted by sequence (wrap-aware)
    bool playing_ = false;    // false while (re)filling to target
    bool have_next_ = false;
    uint16_t next_seq_ = 0;   // sequence of the next slot to play
    Stats stats_;
};

}  // namespace parley::media
