// jitter_buffer.cpp — reorder/de-jitter buffer for one RTP stream (see the header for the contract).
//
// Rules, in the order put() applies them (all sequence comparisons are wrap-aware via seq_diff):
//   1. A packet more than max_packets away from the playout point (next_seq_ while playing, the oldest
//      buffered packet before that) ahead or behind is a new stream or a restart: reset, then keep it.
//   2. Behind the playout point (its slot was already played or skipped): late, dropped.
//   3. Same sequence as a buffered packet: duplicate, dropped.
//   4. Otherwise inserted in order; if that makes more than max_packets, the oldest is dropped (overflow)
//      and the playout point moves past it.
// get() starts (and, after draining to empty, restarts) playout only once target_packets are buffered,
// at the oldest buffered packet; then each call yields exactly one slot: the packet, or kMissing when the
// slot's packet is absent but a later one is buffered.
#include "media/jitter_buffer.h"

#include <algorithm>
#include <iterator>

#include "media/rtp.h"

namespace parley::media {

namespace {

// Keeps every buffered sequence within half the 16-bit space of every other, so wrap-aware ordering stays
// a total order over the buffer.
constexpr int kMaxPacketsLimit = 8192;

}  // namespace

JitterBuffer::JitterBuffer(Config config) : config_(config) {
    config_.max_packets = std::clamp(config_.max_packets, 1, kMaxPacketsLimit);
    config_.target_packets = std::clamp(config_.target_packets, 1, config_.max_packets);
}

void JitterBuffer::put(uint16_t sequence, uint32_t timestamp, std::span<const uint8_t> payload) {
    ++stats_.received;

    bool reset = false;
    if (have_next_) {
        const int d = seq_diff(next_seq_, sequence);
        if (d > config_.max_packets || d < -config_.max_packets) {
            reset = true;
        } else if (d < 0) {
            ++stats_.late;
            return;
        }
    } else if (!slots_.empty()) {
        const int d = seq_diff(slots_.front().sequence, sequence);
        reset = d > config_.max_packets || d < -config_.max_packets;
    }
    if (reset) {
        ++stats_.resets;
        slots_.clear();
        playing_ = false;
        have_next_ = false;
    }

    // Find the insertion point from the back: packets nearly always arrive in order or only slightly
    // out of order, so this is O(1) in the common case.
    auto it = slots_.end();
    while (it != slots_.begin()) {
        const int d = seq_diff(std::prev(it)->sequence, sequence);
        if (d == 0) {
            ++stats_.duplicate;
            return;
        }
        if (d > 0) break;
        --it;
    }
    slots_.insert(it, Slot{sequence, timestamp, std::vector<uint8_t>(payload.begin(), payload.end())});

    if (slots_.size() > static_cast<size_t>(config_.max_packets)) {
        ++stats_.overflow;
        if (have_next_) next_seq_ = static_cast<uint16_t>(slots_.front().sequence + 1);
        slots_.pop_front();
    }
}

JitterBuffer::Result JitterBuffer::get(std::vector<uint8_t>& payload, uint32_t* timestamp) {
    payload.clear();
    if (!playing_) {
        if (slots_.size() < static_cast<size_t>(config_.target_packets)) return Result::kEmpty;
        playing_ = true;
        // (Re)start at the oldest buffered packet: slots skipped while empty were already covered by the
        // kEmpty answers, so reporting them again as kMissing would only add delay.
        have_next_ = true;
        next_seq_ = slots_.front().sequence;
    }
    if (slots_.empty()) {
        playing_ = false;  // underrun: refill to target before playing again
        return Result::kEmpty;
    }

    Slot& front = slots_.front();
    if (front.sequence != next_seq_) {
        // Late packets were dropped in put(), so the front is ahead of next_seq_: this slot is lost.
        ++next_seq_;
        ++stats_.missing;
        return Result::kMissing;
    }
    payload.swap(front.payload);
    if (timestamp != nullptr) *timestamp = front.timestamp;
    slots_.pop_front();
    ++next_seq_;
    ++stats_.played;
    return Result::kPacket;
}

size_t JitterBuffer::depth() const {
    return slots_.size();
}

}  // namespace parley::media
