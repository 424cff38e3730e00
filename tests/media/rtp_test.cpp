// rtp_test.cpp — RTP header parse/serialize, malformed datagrams, sequence arithmetic.
#include "media/rtp.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace parley::media {
namespace {

// A PCMU packet: V=2, M=1, PT=0, seq 0x1234, ts 0xDEADBEEF, ssrc 0x01020304, payload 3 bytes.
const std::vector<uint8_t> kSimple = {0x80, 0x80, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF,
                                      0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB, 0xCC};

TEST(RtpParse, FixedHeaderFields) {
    RtpPacketView v;
    ASSERT_EQ(rtp_parse(kSimple, v), RtpParseError::kOk);
    EXPECT_FALSE(v.header.padding);
    EXPECT_FALSE(v.header.extension);
    EXPECT_EQ(v.header.csrc_count, 0);
    EXPECT_TRUE(v.header.marker);
    EXPECT_EQ(v.header.payload_type, 0);
    EXPECT_EQ(v.header.sequence, 0x1234);
    EXPECT_EQ(v.header.timestamp, 0xDEADBEEFu);
    EXPECT_EQ(v.header.ssrc, 0x01020304u);
    ASSERT_EQ(v.payload.size(), 3u);
    EXPECT_EQ(v.payload.data(), kSimple.data() + 12);  // a view into the datagram, not a copy
    EXPECT_EQ(v.payload[2], 0xCC);
}

TEST(RtpParse, SkipsCsrcExtensionAndPadding) {
    // V=2 P=1 X=1 CC=2, PT=9 no marker; 2 CSRCs; extension id 0xBEDE with 1 word; payload 2 bytes;
    // 3 bytes of padding (last octet = 3).
    const std::vector<uint8_t> d = {0xB2, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xA0, 0x11, 0x22,
                                    0x33, 0x44, 0xC1, 0xC1, 0xC1, 0xC1, 0xC2, 0xC2, 0xC2, 0xC2,  // CSRCs
                                    0xBE, 0xDE, 0x00, 0x01, 0x10, 0xFF, 0x00, 0x00,              // extension
                                    0x55, 0x66,                                                  // payload
                                    0x00, 0x00, 0x03};                                           // padding
    RtpPacketView v;
    ASSERT_EQ(rtp_parse(d, v), RtpParseError::kOk);
    EXPECT_TRUE(v.header.padding);
    EXPECT_TRUE(v.header.extension);
    EXPECT_EQ(v.header.csrc_count, 2);
    EXPECT_FALSE(v.header.marker);
    EXPECT_EQ(v.header.payload_type, 9);
    EXPECT_EQ(v.header.sequence, 1);
    EXPECT_EQ(v.header.timestamp, 160u);
    ASSERT_EQ(v.payload.size(), 2u);
    EXPECT_EQ(v.payload[0], 0x55);
    EXPECT_EQ(v.payload[1], 0x66);
}

TEST(RtpParse, EmptyPayloadAndPaddingOnlyAreValid) {
    RtpPacketView v;
    const std::vector<uint8_t> header_only(kSimple.begin(), kSimple.begin() + 12);
    ASSERT_EQ(rtp_parse(header_only, v), RtpParseError::kOk);
    EXPECT_TRUE(v.payload.empty());

    std::vector<uint8_t> pad_only = header_only;
    pad_only[0] |= 0x20;
    pad_only.insert(pad_only.end(), {0x00, 0x00, 0x00, 0x04});
    ASSERT_EQ(rtp_parse(pad_only, v), RtpParseError::kOk);
    EXPECT_TRUE(v.payload.empty());
}

TEST(RtpSerialize, RoundTrip) {
    RtpHeader h;
    h.marker = true;
    h.payload_type = 101;
    h.sequence = 65535;
    h.timestamp = 0xFFFFFF00u;
    h.ssrc = 0xCAFEBABEu;
    const std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
    std::vector<uint8_t> buf(kRtpMaxPacket);
    const size_t n = rtp_serialize(h, payload, buf);
    ASSERT_EQ(n, 17u);
    // Byte-exact header: V=2 only in byte 0, M|PT in byte 1, then big-endian fields.
    const std::vector<uint8_t> expect_header = {0x80, 0xE5, 0xFF, 0xFF, 0xFF, 0xFF,
                                                0xFF, 0x00, 0xCA, 0xFE, 0xBA, 0xBE};
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + 12), expect_header);

    RtpPacketView v;
    ASSERT_EQ(rtp_parse(std::span<const uint8_t>(buf.data(), n), v), RtpParseError::kOk);
    EXPECT_EQ(v.header.marker, h.marker);
    EXPECT_EQ(v.header.payload_type, h.payload_type);
    EXPECT_EQ(v.header.sequence, h.sequence);
    EXPECT_EQ(v.header.timestamp, h.timestamp);
    EXPECT_EQ(v.header.ssrc, h.ssrc);
    EXPECT_EQ(std::vector<uint8_t>(v.payload.begin(), v.payload.end()), payload);
}

TEST(RtpSerialize, IgnoresCsrcExtensionPaddingAndMasksPayloadType) {
    RtpHeader h;
    h.padding = true;
    h.extension = true;
    h.csrc_count = 3;
    h.payload_type = 0xFF;  // out of range: only 7 bits go on the wire, the marker stays clear
    std::vector<uint8_t> buf(12);
    ASSERT_EQ(rtp_serialize(h, {}, buf), 12u);
    EXPECT_EQ(buf[0], 0x80);
    EXPECT_EQ(buf[1], 0x7F);
}

TEST(RtpSerialize, TooSmallOutputWritesNothing) {
    RtpHeader h;
    const std::vector<uint8_t> payload(10, 0x42);
    std::vector<uint8_t> buf(21, 0xEE);
    EXPECT_EQ(rtp_serialize(h, payload, buf), 0u);
    EXPECT_EQ(buf, std::vector<uint8_t>(21, 0xEE));
    buf.resize(22);
    EXPECT_EQ(rtp_serialize(h, payload, buf), 22u);
}

struct MalformedCase {
    std::string name;
    std::vector<uint8_t> bytes;
    RtpParseError expect;
};

std::vector<uint8_t> header(uint8_t b0, uint8_t b1) {
    return {b0, b1, 0x00, 0x07, 0x00, 0x00, 0x01, 0x40, 0x12, 0x34, 0x56, 0x78};
}

std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const std::vector<MalformedCase>& malformed_cases() {
    static const std::vector<MalformedCase> cases = {
        {"Empty", {}, RtpParseError::kTooShort},
        {"ElevenBytes", std::vector<uint8_t>(kSimple.begin(), kSimple.begin() + 11),
         RtpParseError::kTooShort},
        {"Version0", header(0x00, 0x00), RtpParseError::kBadVersion},
        {"Version1", header(0x40, 0x00), RtpParseError::kBadVersion},
        {"Version3", header(0xC0, 0x00), RtpParseError::kBadVersion},
        // CC=1 but no room for the CSRC; CC=15 with only 14 CSRCs present.
        {"CsrcPastEnd", header(0x81, 0x00), RtpParseError::kCsrcPastEnd},
        {"CsrcPastEndPartial", concat(header(0x81, 0x00), {0x01, 0x02, 0x03}), RtpParseError::kCsrcPastEnd},
        {"FifteenCsrcsShort", concat(header(0x8F, 0x00), std::vector<uint8_t>(56, 0)),
         RtpParseError::kCsrcPastEnd},
        // X=1 with fewer than the 4 bytes of the extension header.
        {"ExtensionHeaderPastEnd", concat(header(0x90, 0x00), {0xBE, 0xDE}),
         RtpParseError::kExtensionPastEnd},
        {"ExtensionHeaderMissing", header(0x90, 0x00), RtpParseError::kExtensionPastEnd},
        // Extension header claims 2 words but only 1 (and a bit) follows.
        {"ExtensionLengthPastEnd", concat(header(0x90, 0x00), {0xBE, 0xDE, 0x00, 0x02, 1, 2, 3, 4, 5}),
         RtpParseError::kExtensionPastEnd},
        {"ExtensionLengthMax", concat(header(0x90, 0x00), {0xBE, 0xDE, 0xFF, 0xFF}),
         RtpParseError::kExtensionPastEnd},
        // Extension after a CSRC: the CSRC is accounted for before the extension.
        {"ExtensionAfterCsrcPastEnd", concat(header(0x91, 0x00), {1, 2, 3, 4, 0xBE, 0xDE, 0x00, 0x01}),
         RtpParseError::kExtensionPastEnd},
        {"PaddingCountZero", concat(header(0xA0, 0x00), {0xAA, 0xBB, 0x00}), RtpParseError::kBadPadding},
        {"PaddingCountTooLarge", concat(header(0xA0, 0x00), {0xAA, 0xBB, 0x04}), RtpParseError::kBadPadding},
        {"PaddingIntoHeader", concat(header(0xA0, 0x00), {0x0D}), RtpParseError::kBadPadding},
        // Padding may not eat the extension either.
        {"PaddingIntoExtension", concat(header(0xB0, 0x00), {0xBE, 0xDE, 0x00, 0x00, 0x00, 0x03}),
         RtpParseError::kBadPadding},
        // RTCP SR (200), RR (201), SDES (202), BYE (203), APP (204) as they look multiplexed on the RTP
        // port: second byte 0xC8..0xCC is marker + PT 72..76. A real RR with one report block (RC=1).
        {"RtcpSr", concat(header(0x80, 0xC8), std::vector<uint8_t>(16, 0)), RtpParseError::kRtcp},
        {"RtcpRr", concat(header(0x81, 0xC9), std::vector<uint8_t>(20, 0)), RtpParseError::kRtcp},
        {"RtcpSdes", header(0x81, 0xCA), RtpParseError::kRtcp},
        {"RtcpBye", header(0x81, 0xCB), RtpParseError::kRtcp},
        {"RtcpApp", header(0x80, 0xCC), RtpParseError::kRtcp},
    };
    return cases;
}

void PrintTo(const MalformedCase& c, std::ostream* os) {
    *os << c.name;
}

class RtpMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(RtpMalformed, RejectedWithReason) {
    const MalformedCase& c = GetParam();
    RtpPacketView v;
    EXPECT_EQ(rtp_parse(c.bytes, v), c.expect) << "expected " << rtp_parse_error_str(c.expect) << ", got "
                                               << rtp_parse_error_str(rtp_parse(c.bytes, v));
}

INSTANTIATE_TEST_SUITE_P(Table, RtpMalformed, ::testing::ValuesIn(malformed_cases()),
                         [](const ::testing::TestParamInfo<MalformedCase>& p) { return p.param.name; });

TEST(RtpParse, PayloadTypesNextToRtcpRangeAreRtp) {
    RtpPacketView v;
    // PT 71 and 77 with marker, and PT 72..76 without marker, are ordinary (dynamic) RTP.
    for (uint8_t b1 : {uint8_t{0xC7}, uint8_t{0xCD}, uint8_t{0x48}, uint8_t{0x4C}}) {
        EXPECT_EQ(rtp_parse(header(0x80, b1), v), RtpParseError::kOk) << int{b1};
    }
}

TEST(RtpParse, ErrorStringsAreDistinct) {
    const RtpParseError all[] = {
        RtpParseError::kOk,          RtpParseError::kTooShort,         RtpParseError::kBadVersion,
        RtpParseError::kCsrcPastEnd, RtpParseError::kExtensionPastEnd, RtpParseError::kBadPadding,
        RtpParseError::kRtcp};
    for (size_t i = 0; i < std::size(all); ++i) {
        for (size_t j = i + 1; j < std::size(all); ++j) {
            EXPECT_STRNE(rtp_parse_error_str(all[i]), rtp_parse_error_str(all[j]));
        }
    }
}

TEST(RtpSeqDiff, WrapAware) {
    EXPECT_EQ(seq_diff(10, 11), 1);
    EXPECT_EQ(seq_diff(11, 10), -1);
    EXPECT_EQ(seq_diff(5, 5), 0);
    EXPECT_EQ(seq_diff(65535, 0), 1);
    EXPECT_EQ(seq_diff(0, 65535), -1);
    EXPECT_EQ(seq_diff(65530, 4), 10);
    EXPECT_EQ(seq_diff(4, 65530), -10);
    EXPECT_EQ(seq_diff(0, 32767), 32767);
    EXPECT_EQ(seq_diff(0, 32768), -32768);
    EXPECT_EQ(seq_diff(32768, 0), -32768);
}

}  // namespace
}  // namespace parley::media
