// rtp.h — RTP (RFC 3550) packet parsing and serialization. Pure functions, no I/O, no allocation.
//
// rtp_parse() validates a received datagram completely before anything reads its payload: version 2,
// CSRC list, header extension and padding must all lie inside the datagram. Anything else is rejected with
// a reason the caller can log (once per source).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace parley::media {

inline constexpr size_t kRtpHeaderSize = 12;
inline constexpr size_t kRtpMaxPacket = 1500;

struct RtpHeader {
    bool padding = false;
    bool extension = false;
    uint8_t csrc_count = 0;
    bool marker = false;
    uint8_t payload_type = 0;  // 0..127
    uint16_t sequence = 0;
    uint32_t timestamp = 0;
    uint32_t ssrc = 0;
};

struct RtpPacketView {
    RtpHeader header;
    std::span<const uint8_t> payload;  // points into the datagram passed to rtp_parse
};

enum class RtpParseError {
    kOk,
    kTooShort,           // shorter than the fixed 12-byte header
    kBadVersion,         // version field is not 2
    kCsrcPastEnd,        // CSRC list runs past the end of the datagram
    kExtensionPastEnd,   // header extension runs past the end
    kBadPadding,         // padding count is 0 or larger than what is left
    kRtcp,               // payload type 72..76 with marker: an RTCP packet (RFC 5761), not RTP
};

const char* rtp_parse_error_str(RtpParseError e);

// Parses and validates `datagram`. On kOk, `out` is filled and out.payload excludes header, CSRCs,
// extension and padding. On error `out` is unspecified.
RtpParseError rtp_parse(std::span<const uint8_t> datagram, RtpPacketView& out);

// Writes a 12-byte header (csrc_count and extension are written as 0/false; padding false) followed by
// `payload` into `out`. Returns the number of bytes written, or 0 if `out` is too small.
size_t rtp_serialize(const RtpHeader& header, std::span<const uint8_t> payload, std::span<uint8_t> out);

// Signed distance from `a` to `b` in 16-bit sequence space (b - a, wrap-aware): in [-32768, 32767].
inline int seq_diff(uint16_t a, uint16_t b) { return static_cast<int16_t>(static_cast<uint16_t>(b - a)); }

}  // namespace parley::media
