// rtp_fuzz.cpp — rtp_parse on arbitrary datagrams. Anything it accepts must survive a serialize/re-parse
// round trip unchanged (fields and payload bytes), and the payload view must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "media/rtp.h"

using namespace parley::media;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> in(data, size);
    RtpPacketView v;
    const RtpParseError err = rtp_parse(in, v);
    if (rtp_parse_error_str(err) == nullptr) __builtin_trap();
    if (err != RtpParseError::kOk) return 0;

    // The payload view must be a sub-range of the datagram after the fixed header.
    if (v.payload.size() > size - kRtpHeaderSize) __builtin_trap();
    if (v.payload.data() < data + kRtpHeaderSize || v.payload.data() + v.payload.size() > data + size)
        __builtin_trap();
    if (v.header.payload_type > 127 || v.header.csrc_count > 15) __builtin_trap();

    std::vector<uint8_t> out(kRtpHeaderSize + v.payload.size());
    const size_t n = rtp_serialize(v.header, v.payload, out);
    if (n != out.size()) __builtin_trap();

    RtpPacketView again;
    const RtpParseError err2 = rtp_parse(std::span<const uint8_t>(out.data(), n), again);
    // Re-serialized packets carry no CSRCs, extension or padding, so the marker + PT 72..76 case is the
    // only way the second parse could disagree — and the first parse already rejected that as RTCP.
    if (err2 != RtpParseError::kOk) __builtin_trap();
    const RtpHeader& a = v.header;
    const RtpHeader& b = again.header;
    if (b.padding || b.extension || b.csrc_count != 0) __builtin_trap();
    if (a.marker != b.marker || a.payload_type != b.payload_type || a.sequence != b.sequence ||
        a.timestamp != b.timestamp || a.ssrc != b.ssrc)
        __builtin_trap();
    if (again.payload.size() != v.payload.size()) __builtin_trap();
    for (size_t i = 0; i < v.payload.size(); ++i) {
        if (again.payload[i] != v.payload[i]) __builtin_trap();
    }

    // A buffer one byte short must be refused without writing.
    if (n > 0) {
        std::vector<uint8_t> small(n - 1, 0xA5);
        if (rtp_serialize(v.header, v.payload, small) != 0) __builtin_trap();
        for (uint8_t byte : small) {
            if (byte != 0xA5) __builtin_trap();
        }
    }
    return 0;
}
