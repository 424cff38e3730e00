// dtmf.h — RFC 4733 telephone-events: payload format, a receiver that turns packets into digit events,
// and a sender that turns a digit into the packet sequence the RFC prescribes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace parley::media {

struct TelephoneEvent {
    uint8_t event = 0;      // 0-9, 10 '*', 11 '#', 12-15 'A'-'D', 16 flash
    bool end = false;       // E bit
    uint8_t volume = 10;    // 0..63, -dBm0
    uint16_t duration = 0;  // in RTP timestamp units
};

// Parses the first 4-byte event block of a telephone-event payload. Returns nullopt for a payload shorter
// than 4 bytes or an event code above 16 (we only handle DTMF and flash).
std::optional<TelephoneEvent> rfc4733_parse(std::span<const uint8_t> payload);

// Writes the 4-byte payload. Returns 4, or 0 if `out` is smaller than 4 bytes.
size_t rfc4733_serialize(const TelephoneEvent& ev, std::span<uint8_t> out);

// '0'-'9', '*', '#', 'A'-'D', '!' (flash) <-> event code. Returns 0 / -1 for anything else.
char rfc4733_event_to_char(uint8_t event);
int rfc4733_char_to_event(char digit);

// Turns a stream of telephone-event packets into one digit per key press. RFC 4733 senders repeat the
// start packet and send the end packet three times; all packets of one event share an RTP timestamp.
class DtmfReceiver {
public:
    // Returns the digit the first time a new event (new RTP timestamp or new event code) is seen,
    // nullopt for repeats, retransmitted ends and unknown events.
    std::optional<char> on_packet(uint32_t rtp_timestamp, const TelephoneEvent& ev);

private:
    bool have_last_ = false;
    uint32_t last_timestamp_ = 0;
    uint8_t last_event_ = 0;
};

// One RTP packet the sender wants on the wire.
struct DtmfPacket {
    TelephoneEvent event;
    bool marker = false;         // set on the first packet of the event
    uint32_t timestamp_offset = 0;  // RTP timestamp of the event start, relative to the start argument
};

// Generates the packets of one key press, one per call to next() (the caller sends one per ptime):
// the first with the marker bit, duration growing by `samples_per_packet`, then three end packets.
class DtmfSender {
public:
    // `clock_rate` is the telephone-event RTP clock (8000 for all our codecs), duration in ms.
    DtmfSender(char digit, int duration_ms, int ptime_ms, int clock_rate = 8000, uint8_t volume = 10);
    bool valid() const { return event_ >= 0; }
    // Returns the next packet, or nullopt when the event is complete.
    std::optional<DtmfPacket> next();

private:
    int event_;
    uint16_t total_duration_;
    uint16_t step_;
    uint16_t duration_ = 0;
    int ends_sent_ = 0;
    bool started_ = false;
    uint8_t volume_;
};

}  // namespace parley::media
