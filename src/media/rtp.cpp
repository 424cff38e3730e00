// rtp.cpp — RTP (RFC 3550) header parsing and serialization.
#include "media/rtp.h"

#include <algorithm>

namespace parley::media {

namespace {

uint16_t load_be16(const uint8_t* p) {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

uint32_t load_be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

void store_be16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

void store_be32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

}  // namespace

const char* rtp_parse_error_str(RtpParseError e) {
    switch (e) {
        case RtpParseError::kOk:
            return "ok";
        case RtpParseError::kTooShort:
            return "shorter than the 12-byte RTP header";
        case RtpParseError::kBadVersion:
            return "RTP version is not 2";
        case RtpParseError::kCsrcPastEnd:
            return "CSRC list runs past the end of the datagram";
        case RtpParseError::kExtensionPastEnd:
            return "header extension runs past the end of the datagram";
        case RtpParseError::kBadPadding:
            return "invalid padding count";
        case RtpParseError::kRtcp:
            return "RTCP packet on the RTP port";
    }
    return "unknown RTP parse error";
}

RtpParseError rtp_parse(std::span<const uint8_t> datagram, RtpPacketView& out) {
    const size_t size = datagram.size();
    if (size < kRtpHeaderSize) return RtpParseError::kTooShort;
    const uint8_t* p = datagram.data();

    if ((p[0] >> 6) != 2) return RtpParseError::kBadVersion;
    // RFC 5761 section 4: with rtcp-mux, RTCP packet types 200..204 (SR, RR, SDES, BYE, APP) show up as
    // marker=1 and payload type 72..76. Checked before the CSRC/extension fields because in an RTCP packet
    // those bits are the report count and would otherwise produce a misleading error.
    const bool marker = (p[1] & 0x80) != 0;
    const uint8_t payload_type = p[1] & 0x7F;
    if (marker && payload_type >= 72 && payload_type <= 76) return RtpParseError::kRtcp;

    RtpHeader& h = out.header;
    h.padding = (p[0] & 0x20) != 0;
    h.extension = (p[0] & 0x10) != 0;
    h.csrc_count = p[0] & 0x0F;
    h.marker = marker;
    h.payload_type = payload_type;
    h.sequence = load_be16(p + 2);
    h.timestamp = load_be32(p + 4);
    h.ssrc = load_be32(p + 8);

    // Every offset below is compared against `size` before it is used, so no read can leave the datagram.
    size_t offset = kRtpHeaderSize + 4 * size_t{h.csrc_count};
    if (offset > size) return RtpParseError::kCsrcPastEnd;

    if (h.extension) {
        // 16-bit profile-defined id, 16-bit length in 32-bit words (not counting this 4-byte header).
        if (size - offset < 4) return RtpParseError::kExtensionPastEnd;
        const size_t ext_words = load_be16(p + offset + 2);
        offset += 4;
        if ((size - offset) / 4 < ext_words) return RtpParseError::kExtensionPastEnd;
        offset += 4 * ext_words;
    }

    size_t end = size;
    if (h.padding) {
        // The last octet counts the padding octets, itself included, so 0 is invalid and the count may
        // not eat into the header, CSRCs or extension.
        const size_t pad = p[size - 1];
        if (pad == 0 || pad > size - offset) return RtpParseError::kBadPadding;
        end -= pad;
    }

    out.payload = datagram.subspan(offset, end - offset);
    return RtpParseError::kOk;
}

size_t rtp_serialize(const RtpHeader& header, std::span<const uint8_t> payload, std::span<uint8_t> out) {
    const size_t total = kRtpHeaderSize + payload.size();
    if (out.size() < total) return 0;
    uint8_t* p = out.data();
    p[0] = 0x80;  // version 2, no padding, no extension, no CSRCs
    p[1] = static_cast<uint8_t>((header.marker ? 0x80 : 0x00) | (header.payload_type & 0x7F));
    store_be16(p + 2, header.sequence);
    store_be32(p + 4, header.timestamp);
    store_be32(p + 8, header.ssrc);
    std::copy(payload.begin(), payload.end(), p + kRtpHeaderSize);
    return total;
}

}  // namespace parley::media
