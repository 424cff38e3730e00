// dtmf.cpp — RFC 4733 telephone-event payload, receiver de-duplication and sender packet sequence.
#include "media/dtmf.h"

#include <algorithm>

namespace parley::media {

namespace {

constexpr uint8_t kMaxEvent = 16;          // flash; 0-15 are the DTMF keys
constexpr int kEndPackets = 3;             // RFC 4733 section 2.5.1.4: the final packet is sent three times
constexpr int32_t kStaleWindow = 0x10000;  // the 16-bit duration field bounds one event's length

}  // namespace

std::optional<TelephoneEvent> rfc4733_parse(std::span<const uint8_t> payload) {
    if (payload.size() < 4) return std::nullopt;
    TelephoneEvent ev;
    ev.event = payload[0];
    if (ev.event > kMaxEvent) return std::nullopt;
    ev.end = (payload[1] & 0x80) != 0;
    // payload[1] & 0x40 is the reserved R bit: senders must set it to 0, receivers must ignore it.
    ev.volume = payload[1] & 0x3F;
    ev.duration = static_cast<uint16_t>((payload[2] << 8) | payload[3]);
    return ev;
}

size_t rfc4733_serialize(const TelephoneEvent& ev, std::span<uint8_t> out) {
    if (out.size() < 4) return 0;
    out[0] = ev.event;
    out[1] = static_cast<uint8_t>((ev.end ? 0x80 : 0x00) | (ev.volume & 0x3F));
    out[2] = static_cast<uint8_t>(ev.duration >> 8);
    out[3] = static_cast<uint8_t>(ev.duration);
    return 4;
}

char rfc4733_event_to_char(uint8_t event) {
    if (event <= 9) return static_cast<char>('0' + event);
    switch (event) {
        case 10:
            return '*';
        case 11:
            return '#';
        case 12:
        case 13:
        case 14:
        case 15:
            return static_cast<char>('A' + (event - 12));
        case 16:
            return '!';
        default:
            return 0;
    }
}

int rfc4733_char_to_event(char digit) {
    if (digit >= '0' && digit <= '9') return digit - '0';
    if (digit >= 'A' && digit <= 'D') return 12 + (digit - 'A');
    // Lower-case letters are accepted too: they come from config files and tool arguments typed by people.
    if (digit >= 'a' && digit <= 'd') return 12 + (digit - 'a');
    switch (digit) {
        case '*':
            return 10;
        case '#':
            return 11;
        case '!':
            return 16;
        default:
            return -1;
    }
}

std::optional<char> DtmfReceiver::on_packet(uint32_t rtp_timestamp, const TelephoneEvent& ev) {
    if (ev.event > kMaxEvent) return std::nullopt;
    // All packets of one key press (start, updates, the three ends) carry the timestamp of the event
    // start, so (timestamp, event) identifies a press. Keying on it rather than on the E bit means a press
    // whose start packets were all lost is still reported (from its end packet), and a press is reported
    // as soon as its first packet arrives instead of after its end.
    if (have_last_) {
        if (rtp_timestamp == last_timestamp_ && ev.event == last_event_) return std::nullopt;
        // A retransmitted end packet of the previous press can arrive after the next press has started
        // (reordering); it carries an older timestamp. Successive presses have increasing timestamps, so
        // anything up to one maximum event duration behind the last press is stale. A new stream with a
        // random timestamp lands in that window with probability 2^-16, which is acceptable.
        const auto behind = static_cast<int32_t>(rtp_timestamp - last_timestamp_);
        if (behind < 0 && behind >= -kStaleWindow) return std::nullopt;
    }
    have_last_ = true;
    last_timestamp_ = rtp_timestamp;
    last_event_ = ev.event;
    return rfc4733_event_to_char(ev.event);
}

DtmfSender::DtmfSender(char digit, int duration_ms, int ptime_ms, int clock_rate, uint8_t volume)
    : event_(rfc4733_char_to_event(digit)), total_duration_(0), step_(0), volume_(volume & 0x3F) {
    if (duration_ms <= 0 || ptime_ms <= 0 || clock_rate <= 0) {
        event_ = -1;
        return;
    }
    // The duration field is 16 bits; a longer press would need RFC 4733 segmentation, which no
    // DTMF use of ours needs (65535 samples is 8 s at 8 kHz), so clamp.
    const int64_t total = int64_t{duration_ms} * clock_rate / 1000;
    const int64_t step = int64_t{ptime_ms} * clock_rate / 1000;
    if (total <= 0 || step <= 0) {
        event_ = -1;
        return;
    }
    total_duration_ = static_cast<uint16_t>(std::min<int64_t>(total, 0xFFFF));
    step_ = static_cast<uint16_t>(std::min<int64_t>(step, 0xFFFF));
}

std::optional<DtmfPacket> DtmfSender::next() {
    if (!valid()) return std::nullopt;
    DtmfPacket pkt;
    pkt.event.event = static_cast<uint8_t>(event_);
    pkt.event.volume = volume_;
    pkt.timestamp_offset = 0;  // every packet of the event carries the event's start timestamp
    if (!started_) {
        // First packet: marker bit, duration of the first packet interval (RFC 4733 section 2.5.1.2).
        started_ = true;
        duration_ = std::min(step_, total_duration_);
        pkt.marker = true;
        pkt.event.duration = duration_;
        return pkt;
    }
    if (duration_ < total_duration_) {
        const uint32_t grown = uint32_t{duration_} + step_;
        if (grown < total_duration_) {
            duration_ = static_cast<uint16_t>(grown);
            pkt.event.duration = duration_;
            return pkt;
        }
        duration_ = total_duration_;  // fall through to the first end packet
    }
    if (ends_sent_ >= kEndPackets) return std::nullopt;
    ++ends_sent_;
    pkt.event.end = true;
    pkt.event.duration = total_duration_;
    return pkt;
}

}  // namespace parley::media
