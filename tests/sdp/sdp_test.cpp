// sdp_test.cpp — SDP parsing (a canned corpus of real-world offers and malformed bodies), the offer/answer
// decisions Parley makes (one table row per case), and serialization round trips.
#include "sdp/sdp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <sstream>

namespace parley::sdp {
namespace {

using media::CodecId;

// ---- helpers ----------------------------------------------------------------------------------------------

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << path;
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string corpus_path(const std::string& name) {
    return std::string(PARLEY_TEST_DATA_DIR) + "/sip/sdp/" + name;
}

// A table entry is either a file in the corpus ("good/x.sdp", "bad/y.sdp") or an inline SDP body.
std::string load(const std::string& source) {
    const bool is_file = source.size() > 4 && source.compare(source.size() - 4, 4, ".sdp") == 0 &&
                         source.find('\n') == std::string::npos;
    return is_file ? read_file(corpus_path(source)) : source;
}

// The corpus is stored with LF endings (readable diffs); SIP carries CRLF, so every good case runs both ways.
std::string to_crlf(const std::string& lf) {
    std::string out;
    for (size_t i = 0; i < lf.size(); ++i) {
        if (lf[i] == '\n' && (i == 0 || lf[i - 1] != '\r')) out += '\r';
        out += lf[i];
    }
    return out;
}

const std::vector<std::string> kGoodCorpus = {
    "good/linphone_offer.sdp", "good/baresip_offer.sdp",  "good/asterisk_offer.sdp", "good/polycom_offer.sdp",
    "good/hold_sendonly.sdp",  "good/hold_c0.sdp",        "good/audio_video.sdp",    "good/srtp_only.sdp",
    "good/opus_only.sdp",      "good/ipv6_offer.sdp",     "good/sipp_static_only.sdp", "good/audio_msrp.sdp",
};

std::string rtpmap_str(const RtpMap& r) {
    std::string s = std::to_string(r.payload_type) + " " + r.encoding + "/" + std::to_string(r.clock_rate);
    if (r.channels != 1) s += "/" + std::to_string(r.channels);
    return s;
}

std::vector<std::string> rtpmap_strs(const MediaDescription& m) {
    std::vector<std::string> out;
    for (const auto& r : m.rtpmaps) out.push_back(rtpmap_str(r));
    return out;
}

std::vector<std::string> fmtp_strs(const MediaDescription& m) {
    std::vector<std::string> out;
    for (const auto& f : m.fmtps) out.push_back(std::to_string(f.payload_type) + " " + f.params);
    return out;
}

template <typename T>
std::string show(const std::optional<T>& v) {
    if (!v) return "(none)";
    std::ostringstream os;
    os << *v;
    return os.str();
}

// Field-by-field equality with a message naming the first difference.
::testing::AssertionResult same(const SessionDescription& a, const SessionDescription& b) {
    auto diff = [](const std::string& what, const std::string& x, const std::string& y) {
        return ::testing::AssertionFailure() << what << ": \"" << x << "\" vs \"" << y << "\"";
    };
    if (a.origin_username != b.origin_username) {
        return diff("origin_username", a.origin_username, b.origin_username);
    }
    if (a.session_id != b.session_id) {
        return diff("session_id", std::to_string(a.session_id), std::to_string(b.session_id));
    }
    if (a.session_version != b.session_version) {
        return diff("session_version", std::to_string(a.session_version), std::to_string(b.session_version));
    }
    if (a.origin_address != b.origin_address) {
        return diff("origin_address", a.origin_address, b.origin_address);
    }
    if (a.session_name != b.session_name) return diff("session_name", a.session_name, b.session_name);
    if (a.connection_address != b.connection_address) {
        return diff("connection_address", show(a.connection_address), show(b.connection_address));
    }
    if (a.direction != b.direction) {
        return diff("direction", direction_str(a.direction), direction_str(b.direction));
    }
    if (a.media.size() != b.media.size()) {
        return diff("media count", std::to_string(a.media.size()), std::to_string(b.media.size()));
    }
    for (size_t i = 0; i < a.media.size(); ++i) {
        const auto& x = a.media[i];
        const auto& y = b.media[i];
        const std::string at = "media[" + std::to_string(i) + "].";
        if (x.media != y.media) return diff(at + "media", x.media, y.media);
        if (x.port != y.port) return diff(at + "port", std::to_string(x.port), std::to_string(y.port));
        if (x.proto != y.proto) return diff(at + "proto", x.proto, y.proto);
        if (x.formats != y.formats) return ::testing::AssertionFailure() << at << "formats differ";
        if (rtpmap_strs(x) != rtpmap_strs(y)) return ::testing::AssertionFailure() << at << "rtpmaps differ";
        if (fmtp_strs(x) != fmtp_strs(y)) return ::testing::AssertionFailure() << at << "fmtps differ";
        if (x.ptime != y.ptime) return diff(at + "ptime", show(x.ptime), show(y.ptime));
        if (x.maxptime != y.maxptime) return diff(at + "maxptime", show(x.maxptime), show(y.maxptime));
        if (x.connection_address != y.connection_address) {
            return diff(at + "connection_address", show(x.connection_address), show(y.connection_address));
        }
        if (x.rtcp_port != y.rtcp_port) return diff(at + "rtcp_port", show(x.rtcp_port), show(y.rtcp_port));
        if (x.direction != y.direction) {
            return diff(at + "direction", direction_str(x.direction), direction_str(y.direction));
        }
    }
    return ::testing::AssertionSuccess();
}

// serialize(parse(x)) parses to the same description, and serializing that gives the same text.
void expect_stable(const SessionDescription& first) {
    const std::string text = serialize(first);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n') {
            ASSERT_TRUE(i > 0 && text[i - 1] == '\r') << "serialize() must write CRLF";
        }
    }
    std::string error;
    const auto again = parse(text, &error);
    ASSERT_TRUE(again) << error << "\n" << text;
    EXPECT_TRUE(same(first, *again)) << text;
    EXPECT_EQ(serialize(*again), text);
}

// gtest case names from table rows: letters, digits and '_' only.
template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& param) {
    std::string s = param.param.name;
    for (char& c : s) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    return s;
}

// ---- parsing: the good corpus ---------------------------------------------------------------------------

struct MediaExpect {
    std::string media{};
    uint16_t port = 0;
    std::string proto = "RTP/AVP";
    std::vector<int> formats{};
    std::vector<std::string> rtpmaps{};  // "<pt> <encoding>/<clock>[/<channels>]", in order
    std::vector<std::string> fmtps{};    // "<pt> <params>", in order
    std::optional<int> ptime{};
    std::optional<int> maxptime{};
    std::optional<std::string> connection{};  // media level
    std::optional<uint16_t> rtcp_port{};
    Direction direction = Direction::kSendRecv;
};

struct ParseCase {
    std::string name{};
    std::string source{};  // corpus file or inline SDP
    std::string origin_username{};
    uint64_t session_id = 0;
    uint64_t session_version = 0;
    std::string origin_address{};
    std::string session_name{};
    std::optional<std::string> connection{};  // session level
    Direction direction = Direction::kSendRecv;
    std::vector<MediaExpect> media{};
};

const std::string kHeader = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n";
constexpr char kWithNul[] = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=a\0b\nt=0 0\n";

const ParseCase kParseCases[] = {
    {.name = "linphone", .source = "good/linphone_offer.sdp", .origin_username = "alice", .session_id = 1852,
     .session_version = 2936, .origin_address = "192.168.1.20", .session_name = "Talk",
     .connection = "192.168.1.20",
     .media = {{.media = "audio", .port = 7078, .formats = {96, 97, 98, 0, 8, 18, 101, 99, 100},
                .rtpmaps = {"96 opus/48000/2", "97 speex/16000", "98 speex/8000", "101 telephone-event/48000",
                            "99 telephone-event/16000", "100 telephone-event/8000"},
                .fmtps = {"96 useinbandfec=1", "97 vbr=on", "98 vbr=on", "18 annexb=yes"}}}},
    {.name = "baresip", .source = "good/baresip_offer.sdp", .origin_username = "-", .session_id = 1675436310,
     .session_version = 1675436311, .origin_address = "10.0.0.5", .session_name = "-",
     .connection = "10.0.0.5",
     .media = {{.media = "audio", .port = 10866, .formats = {96, 9, 0, 8, 101},
                .rtpmaps = {"96 opus/48000/2", "9 G722/8000", "0 PCMU/8000", "8 PCMA/8000",
                            "101 telephone-event/8000"},
                .fmtps = {"96 stereo=1;sprop-stereo=1", "101 0-15"}}}},
    {.name = "asterisk", .source = "good/asterisk_offer.sdp", .origin_username = "-",
     .session_id = 1439281739, .session_version = 1439281739, .origin_address = "203.0.113.10",
     .session_name = "Asterisk", .connection = "203.0.113.10",
     .media = {{.media = "audio", .port = 16384, .formats = {0, 8, 9, 101},
                .rtpmaps = {"0 PCMU/8000", "8 PCMA/8000", "9 G722/8000", "101 telephone-event/8000"},
                .fmtps = {"101 0-16"}, .ptime = 30, .maxptime = 150}}},
    {.name = "polycom", .source = "good/polycom_offer.sdp", .origin_username = "-", .session_id = 1700000000,
     .session_version = 1700000000, .origin_address = "172.16.5.33", .session_name = "Polycom IP Phone",
     .connection = "172.16.5.33",
     .media = {{.media = "audio", .port = 2222, .formats = {9, 102, 0, 8, 18, 127},
                .rtpmaps = {"9 G722/8000", "102 G7221/16000", "0 PCMU/8000", "8 PCMA/8000", "18 G729/8000",
                            "127 telephone-event/8000"},
                .fmtps = {"102 bitrate=32000", "18 annexb=no"}}}},
    {.name = "hold_sendonly", .source = "good/hold_sendonly.sdp", .origin_username = "-",
     .session_id = 1439281739, .session_version = 1439281740, .origin_address = "203.0.113.10",
     .session_name = "Asterisk", .connection = "203.0.113.10",
     .media = {{.media = "audio", .port = 16384, .formats = {0, 101},
                .rtpmaps = {"0 PCMU/8000", "101 telephone-event/8000"}, .fmtps = {"101 0-16"}, .ptime = 20,
                .maxptime = 150, .direction = Direction::kSendOnly}}},
    {.name = "hold_c0", .source = "good/hold_c0.sdp", .origin_username = "CiscoSystemsSIP-GW-UserAgent",
     .session_id = 2637, .session_version = 8855, .origin_address = "198.51.100.7",
     .session_name = "SIP Call",
     .connection = "0.0.0.0",
     .media = {{.media = "audio", .port = 19128, .formats = {0, 101},
                .rtpmaps = {"0 PCMU/8000", "101 telephone-event/8000"}, .fmtps = {"101 0-15"}, .ptime = 20}}},
    {.name = "audio_video", .source = "good/audio_video.sdp", .origin_username = "bob", .session_id = 3,
     .session_version = 2, .origin_address = "192.0.2.44", .session_name = "-", .connection = "192.0.2.44",
     .media = {{.media = "audio", .port = 40000, .formats = {8, 0, 101},
                .rtpmaps = {"8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000"}, .fmtps = {"101 0-15"},
                .ptime = 20, .connection = "192.0.2.45", .rtcp_port = 40001},
               {.media = "video", .port = 40002, .formats = {96, 97},
                .rtpmaps = {"96 H264/90000", "97 VP8/90000"},
                .fmtps = {"96 profile-level-id=42801F;packetization-mode=1"},
                .direction = Direction::kRecvOnly}}},
    {.name = "srtp_only", .source = "good/srtp_only.sdp", .origin_username = "-", .session_id = 20518,
     .session_version = 0, .origin_address = "198.51.100.20", .session_name = "-",
     .connection = "198.51.100.20",
     .media = {{.media = "audio", .port = 5004, .proto = "RTP/SAVP", .formats = {0, 8, 101},
                .rtpmaps = {"0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"},
                .fmtps = {"101 0-16"}}}},
    {.name = "opus_only", .source = "good/opus_only.sdp", .origin_username = "-",
     .session_id = 4611731400430051336ULL, .session_version = 2, .origin_address = "127.0.0.1",
     .session_name = "-", .connection = "198.51.100.30",
     .media = {{.media = "audio", .port = 9000, .formats = {111, 110},
                .rtpmaps = {"111 opus/48000/2", "110 telephone-event/48000"},
                .fmtps = {"111 minptime=10;useinbandfec=1"}, .ptime = 20}}},
    {.name = "ipv6", .source = "good/ipv6_offer.sdp", .origin_username = "-", .session_id = 1,
     .session_version = 1, .origin_address = "2001:db8::10", .session_name = "-",
     .connection = "2001:db8::10",
     .media = {{.media = "audio", .port = 30000, .formats = {8, 96},
                .rtpmaps = {"8 PCMA/8000", "96 telephone-event/8000"}, .fmtps = {"96 0-16"}, .ptime = 20}}},
    {.name = "sipp_static_only", .source = "good/sipp_static_only.sdp", .origin_username = "user1",
     .session_id = 53655765, .session_version = 2353687637ULL, .origin_address = "127.0.1.1",
     .session_name = "-", .connection = "127.0.1.1",
     .media = {{.media = "audio", .port = 6000, .formats = {0}}}},
    {.name = "audio_msrp", .source = "good/audio_msrp.sdp", .origin_username = "-",
     .session_id = 2890844526ULL,
     .session_version = 2890844527ULL, .origin_address = "198.51.100.40", .session_name = "-",
     .connection = "198.51.100.40",
     .media = {{.media = "audio", .port = 49170, .formats = {0, 101},
                .rtpmaps = {"0 PCMU/8000", "101 telephone-event/8000"}},
               // Non-RTP formats ("*") are opaque and not kept; such streams are only ever refused.
               {.media = "message", .port = 7394, .proto = "TCP/MSRP"}}},
    // RFC 4566 §6: a session-level direction applies to every m= section that has none of its own.
    {.name = "session_direction_inherited",
     .source = "v=0\no=- 5 6 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=inactive\n"
               "m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\na=sendrecv\n",
     .origin_username = "-", .session_id = 5, .session_version = 6, .origin_address = "10.0.0.1",
     .session_name = "-", .connection = "10.0.0.1", .direction = Direction::kInactive,
     .media = {{.media = "audio", .port = 4000, .formats = {0}, .direction = Direction::kInactive},
               {.media = "audio", .port = 4002, .formats = {8}}}},
    // Mixed CRLF/LF, blank lines, trailing spaces and no final line ending: all seen in the wild.
    {.name = "sloppy_line_endings",
     .source = "v=0\r\no=- 7 8 IN IP4 10.0.0.2 \ns=-\r\n\r\nc=IN IP4 10.0.0.2\nt=0 0\r\n"
               "m=audio  4000   RTP/AVP  0   8\r\na=sendonly \r\na=ptime:20",
     .origin_username = "-", .session_id = 7, .session_version = 8, .origin_address = "10.0.0.2",
     .session_name = "-", .connection = "10.0.0.2",
     .media = {{.media = "audio", .port = 4000, .formats = {0, 8}, .ptime = 20,
                .direction = Direction::kSendOnly}}},
    // Lines and attributes we do not act on are skipped; an unreadable ptime is ignored (default is safe);
    // the m= port count and the c= multicast TTL are dropped.
    {.name = "ignored_lines_and_suffixes",
     .source = "v=0\no=- 9 9 IN IP4 10.0.0.3\ns=-\ni=info\nu=http://example.com/\ne=a@example.com\n"
               "p=+1 555 0100\nc=IN IP4 224.2.1.1/127/3\nb=AS:80\nt=0 0\nr=7d 1h 0 25h\nz=0 0\nk=clear:x\n"
               "a=x-unknown:1\ny=0123456789\nm=audio 49170/2 RTP/AVP 0\ni=audio\nb=TIAS:64000\nk=prompt\n"
               "a=ptime:abc\na=maxptime:-5\na=rtcp:junk\na=x-vendor\n",
     .origin_username = "-", .session_id = 9, .session_version = 9, .origin_address = "10.0.0.3",
     .session_name = "-", .connection = "224.2.1.1",
     .media = {{.media = "audio", .port = 49170, .formats = {0}}}},
    {.name = "case_insensitive_keywords",
     .source = "v=0\no=- 1 2 in ip4 10.0.0.4\ns= \nc=in ip4 10.0.0.4\nt=0 0\nm=audio 4000 RTP/AVP 0 101\n"
               "a=RTPMAP:0 pcmu/8000/1\na=rtpmap:101 telephone-event/8000\na=FMTP:101 0-16\na=PTIME:30\n"
               "a=SendOnly\n",
     .origin_username = "-", .session_id = 1, .session_version = 2, .origin_address = "10.0.0.4",
     .session_name = " ", .connection = "10.0.0.4",
     .media = {{.media = "audio", .port = 4000, .formats = {0, 101},
                .rtpmaps = {"0 pcmu/8000", "101 telephone-event/8000"}, .fmtps = {"101 0-16"}, .ptime = 30,
                .direction = Direction::kSendOnly}}},
};

void PrintTo(const ParseCase& c, std::ostream* os) { *os << c.name; }

class SdpParse : public ::testing::TestWithParam<ParseCase> {};

TEST_P(SdpParse, ParsesExpectedFields) {
    const ParseCase& c = GetParam();
    const std::string lf = load(c.source);
    for (const std::string& text : {lf, to_crlf(lf)}) {
        SCOPED_TRACE(text.find('\r') == std::string::npos ? "LF" : "CRLF");
        std::string error;
        const auto sd = parse(text, &error);
        ASSERT_TRUE(sd) << error;
        EXPECT_EQ(sd->origin_username, c.origin_username);
        EXPECT_EQ(sd->session_id, c.session_id);
        EXPECT_EQ(sd->session_version, c.session_version);
        EXPECT_EQ(sd->origin_address, c.origin_address);
        EXPECT_EQ(sd->session_name, c.session_name);
        EXPECT_EQ(sd->connection_address, c.connection);
        EXPECT_EQ(sd->direction, c.direction);
        ASSERT_EQ(sd->media.size(), c.media.size());
        for (size_t i = 0; i < c.media.size(); ++i) {
            SCOPED_TRACE("m= section " + std::to_string(i));
            const MediaDescription& m = sd->media[i];
            const MediaExpect& e = c.media[i];
            EXPECT_EQ(m.media, e.media);
            EXPECT_EQ(m.port, e.port);
            EXPECT_EQ(m.proto, e.proto);
            EXPECT_EQ(m.formats, e.formats);
            EXPECT_EQ(rtpmap_strs(m), e.rtpmaps);
            EXPECT_EQ(fmtp_strs(m), e.fmtps);
            EXPECT_EQ(m.ptime, e.ptime);
            EXPECT_EQ(m.maxptime, e.maxptime);
            EXPECT_EQ(m.connection_address, e.connection);
            EXPECT_EQ(m.rtcp_port, e.rtcp_port);
            EXPECT_EQ(m.direction, e.direction) << direction_str(m.direction);
        }
    }
}

TEST_P(SdpParse, SerializeRoundTripIsStable) {
    const std::string lf = load(GetParam().source);
    for (const std::string& text : {lf, to_crlf(lf)}) {
        const auto sd = parse(text);
        ASSERT_TRUE(sd);
        expect_stable(*sd);
    }
}

// Every prefix of a good body (a body cut off by a broken transport) parses or fails with a reason.
TEST_P(SdpParse, EveryPrefixParsesOrFailsCleanly) {
    const std::string lf = load(GetParam().source);
    for (const std::string& text : {lf, to_crlf(lf)}) {
        for (size_t n = 0; n <= text.size(); ++n) {
            std::string error;
            std::optional<SessionDescription> sd;
            EXPECT_NO_THROW(sd = parse(std::string_view(text).substr(0, n), &error));
            if (!sd) {
                EXPECT_FALSE(error.empty()) << "prefix of " << n << " bytes";
            } else {
                expect_stable(*sd);
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Corpus, SdpParse, ::testing::ValuesIn(kParseCases),
                         case_name<ParseCase>);

TEST(SdpCorpus, TableCoversTheWholeGoodCorpus) {
    for (const std::string& file : kGoodCorpus) {
        const bool listed = std::any_of(std::begin(kParseCases), std::end(kParseCases),
                                        [&](const ParseCase& c) { return c.source == file; });
        EXPECT_TRUE(listed) << file;
    }
}

// ---- parsing: malformed bodies ----------------------------------------------------------------------------

struct BadCase {
    std::string name{};
    std::string source{};  // corpus file or inline SDP
    std::string error{};   // substring the reason must contain
};

const BadCase kBadCases[] = {
    {"empty", "bad/empty.sdp", "empty"},
    {"no_version", "bad/no_version.sdp", "line 1: SDP must start with \"v=0\""},
    {"not_sdp", "bad/not_sdp.sdp", "line 1:"},
    {"port_not_numeric", "bad/port_not_numeric.sdp", "line 6: m= port \"sixteen\""},
    {"port_too_big", "bad/port_too_big.sdp", "line 6: m= port \"70000\""},
    {"rtpmap_garbage", "bad/rtpmap_garbage.sdp", "line 8: a=rtpmap has no clock rate"},
    {"rtpmap_bad_pt", "bad/rtpmap_bad_pt.sdp", "line 7: a=rtpmap payload type"},
    {"truncated_mid_line", "bad/truncated.sdp", "line 8: a=rtpmap has no clock rate"},
    {"truncated_m_line", "bad/truncated_m_line.sdp", "line 6: m= line has no transport"},
    {"binary_junk", "bad/binary_junk.sdp", "line 1:"},
    {"binary_after_header", "bad/binary_after_header.sdp", "line 4: control character 0x00"},
    {"too_many_formats", "bad/too_many_formats.sdp", "line 6: m= line has 200 formats, more than 128"},
    {"long_line", "bad/long_line.sdp", "line 7: line is 5009 bytes, longer than the 4096-byte limit"},
    {"format_not_numeric", "bad/format_not_numeric.sdp", "line 6: m= format \"PCMU\""},
    {"bad_connection", "bad/bad_connection.sdp", "line 4: c= line needs 3 fields"},
    {"missing_origin", "bad/missing_origin.sdp", "missing o= line"},
    {"only_version", "v=0\n", "missing o= line"},
    {"missing_session_name", "v=0\no=- 1 1 IN IP4 10.0.0.1\nt=0 0\n", "missing s= line"},
    {"missing_timing", "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nm=audio 4000 RTP/AVP 0\n", "missing t= line"},
    {"version_not_zero", "v=1\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n", "line 1:"},
    {"blank_first_line", "\nv=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n", "line 1:"},
    {"second_version", kHeader + "v=0\n", "line 6: second v= line"},
    {"no_equals", kHeader + "m=audio 4000 RTP/AVP 0\nhello world\n", "line 7: expected <type>=<value>"},
    {"type_not_letter", kHeader + "1=foo\n", "line 6: expected"},
    {"origin_too_few_fields", "v=0\no=- 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n", "line 2: o= line needs 6 fields"},
    {"origin_id_not_numeric", "v=0\no=- abc 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n", "line 2: o= session id"},
    {"origin_id_overflow", "v=0\no=- 99999999999999999999 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n", "o= session id"},
    {"timing_garbage", "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=now\n", "line 4: t= line"},
    {"connection_atm", "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=ATM NSAP 47.0091\nt=0 0\n", "c= network type"},
    {"connection_addrtype", "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IPX 10.0.0.1\nt=0 0\n",
     "c= address type"},
    {"connection_odd_chars", kHeader + "m=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.1;rm\n",
     "line 7: c= address"},
    {"m_no_port", kHeader + "m=audio\n", "m= line has no port"},
    {"m_no_formats", kHeader + "m=audio 4000 RTP/AVP\n", "line 6: m= line has no formats"},
    {"m_negative_port", kHeader + "m=audio -1 RTP/AVP 0\n", "m= port \"-1\""},
    {"m_bad_port_count", kHeader + "m=audio 4000/x RTP/AVP 0\n", "m= port count"},
    {"m_format_too_big", kHeader + "m=audio 4000 RTP/AVP 0 128\n", "m= format \"128\""},
    {"rtpmap_no_encoding", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0\n", "a=rtpmap has no encoding"},
    {"rtpmap_clock_zero", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/0\n", "clock rate"},
    {"rtpmap_clock_text", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8k\n", "clock rate"},
    {"rtpmap_channels_zero", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000/0\n", "channel count"},
    {"rtpmap_too_many_parts", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000/1/1\n",
     "channel count"},
    {"rtpmap_empty_encoding", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 /8000\n", "empty encoding"},
    {"rtpmap_spaces", kHeader + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU /8000\n", "contains spaces"},
    {"fmtp_bad_pt", kHeader + "m=audio 4000 RTP/AVP 0\na=fmtp:x 0-16\n", "line 7: a=fmtp payload type"},
    {"nul_in_line", std::string(kWithNul, sizeof(kWithNul) - 1), "line 3: control character 0x00"},
    {"bare_cr_separators", "v=0\ro=- 1 1 IN IP4 10.0.0.1\rs=-\rt=0 0\r", "line 1:"},
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class SdpParseBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(SdpParseBad, FailsWithReason) {
    const BadCase& c = GetParam();
    const std::string text = load(c.source);
    std::string error;
    std::optional<SessionDescription> sd;
    EXPECT_NO_THROW(sd = parse(text, &error));
    EXPECT_FALSE(sd) << serialize(*sd);
    EXPECT_FALSE(error.empty());
    EXPECT_NE(error.find(c.error), std::string::npos) << "error was: " << error;
    EXPECT_FALSE(parse(text, nullptr));  // no error pointer: still fails, still no crash
}

INSTANTIATE_TEST_SUITE_P(Corpus, SdpParseBad, ::testing::ValuesIn(kBadCases),
                         case_name<BadCase>);

// ---- parsing: limits on hostile input (each at the limit passes, one past it fails) --------------------

std::string with_media(size_t count) {
    std::string s = kHeader;
    for (size_t i = 0; i < count; ++i) s += "m=audio " + std::to_string(4000 + 2 * i) + " RTP/AVP 0\n";
    return s;
}

std::string with_formats(size_t count) {
    std::string s = kHeader + "m=audio 4000 RTP/AVP";
    for (size_t i = 0; i < count; ++i) s += " " + std::to_string(i % 128);
    return s + "\n";
}

std::string with_line_of(size_t length) {
    const std::string prefix = "a=x-long:";
    return kHeader + "m=audio 4000 RTP/AVP 0\n" + prefix + std::string(length - prefix.size(), 'x') + "\n";
}

// A body of exactly `total` bytes (CRLF endings), padded with unknown attributes of at most 4002 bytes
// each, always leaving room for a last one of at least 6 ("a=x:\r\n").
std::string with_total(size_t total) {
    std::string s = to_crlf(kHeader + "m=audio 4000 RTP/AVP 0\na=sendrecv\n");
    while (s.size() < total) {
        const size_t room = total - s.size();
        const size_t line = room > 4002 ? std::min<size_t>(4002, room - 6) : room;
        s += "a=x:" + std::string(line - 6, 'x') + "\r\n";
    }
    return s;
}

struct LimitCase {
    std::string name{};
    std::string text{};
    bool ok{};
    std::string error{};  // substring, when !ok
};

void PrintTo(const LimitCase& c, std::ostream* os) { *os << c.name; }

class SdpLimits : public ::testing::TestWithParam<LimitCase> {};

TEST_P(SdpLimits, EnforcedWithReason) {
    const LimitCase& c = GetParam();
    std::string error;
    const auto sd = parse(c.text, &error);
    EXPECT_EQ(sd.has_value(), c.ok) << error;
    if (!c.ok) {
        EXPECT_NE(error.find(c.error), std::string::npos) << "error was: " << error;
    }
    if (sd) expect_stable(*sd);
}

INSTANTIATE_TEST_SUITE_P(
    Generated, SdpLimits,
    ::testing::Values(LimitCase{"media_64", with_media(64), true, ""},
                      LimitCase{"media_65", with_media(65), false, "more than 64 m= lines"},
                      LimitCase{"formats_128", with_formats(128), true, ""},
                      LimitCase{"formats_129", with_formats(129), false, "129 formats, more than 128"},
                      LimitCase{"line_4096", with_line_of(4096), true, ""},
                      LimitCase{"line_4097", with_line_of(4097), false, "longer than the 4096-byte limit"},
                      LimitCase{"total_65536", with_total(65536), true, ""},
                      LimitCase{"total_65537", with_total(65537), false, "65536-byte limit"},
                      LimitCase{"total_huge", std::string(1 << 20, 'a'), false, "65536-byte limit"}),
    case_name<LimitCase>);

TEST(SdpLimitsGenerated, HelpersBuildWhatTheyClaim) {
    EXPECT_EQ(with_total(65536).size(), 65536u);
    EXPECT_EQ(with_total(65537).size(), 65537u);
}

// An LF-only body whose size with CRLF endings would be `crlf_size`, mostly rtpmaps (which serialize()
// writes back, with CRLF). With `direction` false the m= section has no direction attribute, which
// serialize() adds.
std::string lf_body(size_t crlf_size, bool direction) {
    std::string s = kHeader + "m=audio 4000 RTP/AVP 0 8\n" + (direction ? "a=sendrecv\n" : "");
    size_t crlf = s.size() + static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
    const std::string rtpmap = "a=rtpmap:8 PCMA/8000\n";
    while (crlf + rtpmap.size() + 1 + 10 <= crlf_size) {
        s += rtpmap;
        crlf += rtpmap.size() + 1;
    }
    return s + "a=x:" + std::string(crlf_size - crlf - 6, 'x') + "\n";
}

// serialize() writes CRLF and adds direction lines, so an LF-only body under 64 KiB can serialize to more.
// parse() counts line endings as CRLF (and budgets for the direction lines) so that the serialization of
// anything it accepts is accepted too.
TEST(SdpLimitsGenerated, LfBodyNearTheLimit) {
    struct Row {
        size_t crlf_size;
        bool direction;
        bool ok;
    };
    const Row rows[] = {{65536, true, true}, {65537, true, false}, {65536 - 12, false, true},
                        {65536 - 11, false, false}};
    for (const Row& row : rows) {
        SCOPED_TRACE(std::to_string(row.crlf_size) + (row.direction ? " with" : " without") + " a=sendrecv");
        const std::string text = lf_body(row.crlf_size, row.direction);
        ASSERT_LT(text.size(), 64u * 1024u);
        std::string error;
        const auto sd = parse(text, &error);
        ASSERT_EQ(sd.has_value(), row.ok) << error;
        if (sd) {
            EXPECT_GT(serialize(*sd).size(), text.size()) << "the case must exercise growth";
            expect_stable(*sd);
        } else {
            EXPECT_NE(error.find("65536-byte limit"), std::string::npos) << error;
        }
    }
}

// ---- offer/answer -----------------------------------------------------------------------------------------

LocalMedia parley_local() {
    LocalMedia local;
    local.address = "192.0.2.100";
    local.port = 20000;
    local.session_id = 42;
    local.session_version = 7;
    return local;
}

struct OfferCase {
    std::string name{};
    std::string offer{};  // corpus file or inline SDP
    int status = 200;
    std::string reason{};  // substring, for 488
    CodecId codec = CodecId::kPcmu;
    int payload_type = 0;
    int te_pt = -1;
    int ptime = 20;
    std::string remote_address{};
    uint16_t remote_port = 0;
    Direction direction = Direction::kSendRecv;  // ours
    size_t audio_index = 0;                      // the m= line that carries the call
    std::vector<CodecId> local_codecs = {CodecId::kPcmu, CodecId::kPcma, CodecId::kG722};
    bool local_te = true;
};

std::string offer_with(const std::string& media_section) { return kHeader + media_section; }

const OfferCase kOfferCases[] = {
    // The corpus: the first codec in the offer's order that we support, the offer's numbers.
    {.name = "linphone_pcmu_te_at_8000", .offer = "good/linphone_offer.sdp", .codec = CodecId::kPcmu,
     .payload_type = 0, .te_pt = 100, .remote_address = "192.168.1.20", .remote_port = 7078},
    {.name = "baresip_g722", .offer = "good/baresip_offer.sdp", .codec = CodecId::kG722, .payload_type = 9,
     .te_pt = 101, .remote_address = "10.0.0.5", .remote_port = 10866},
    {.name = "asterisk_ptime_30", .offer = "good/asterisk_offer.sdp", .codec = CodecId::kPcmu,
     .payload_type = 0, .te_pt = 101, .ptime = 30, .remote_address = "203.0.113.10", .remote_port = 16384},
    {.name = "polycom_g722_te_127", .offer = "good/polycom_offer.sdp", .codec = CodecId::kG722,
     .payload_type = 9, .te_pt = 127, .remote_address = "172.16.5.33", .remote_port = 2222},
    {.name = "hold_sendonly", .offer = "good/hold_sendonly.sdp", .codec = CodecId::kPcmu, .payload_type = 0,
     .te_pt = 101, .remote_address = "203.0.113.10", .remote_port = 16384, .direction = Direction::kRecvOnly},
    {.name = "hold_c0", .offer = "good/hold_c0.sdp", .codec = CodecId::kPcmu, .payload_type = 0, .te_pt = 101,
     .remote_address = "0.0.0.0", .remote_port = 19128, .direction = Direction::kInactive},
    {.name = "audio_video_media_level_c", .offer = "good/audio_video.sdp", .codec = CodecId::kPcma,
     .payload_type = 8, .te_pt = 101, .remote_address = "192.0.2.45", .remote_port = 40000},
    {.name = "srtp_only", .offer = "good/srtp_only.sdp", .status = 488, .reason = "RTP/SAVP"},
    {.name = "opus_only", .offer = "good/opus_only.sdp", .status = 488,
     .reason = "no common codec: offered opus/48000 telephone-event/48000; we support PCMU PCMA G722"},
    {.name = "ipv6_te_96", .offer = "good/ipv6_offer.sdp", .codec = CodecId::kPcma, .payload_type = 8,
     .te_pt = 96, .remote_address = "2001:db8::10", .remote_port = 30000},
    {.name = "static_without_rtpmap", .offer = "good/sipp_static_only.sdp", .codec = CodecId::kPcmu,
     .payload_type = 0, .remote_address = "127.0.1.1", .remote_port = 6000},
    {.name = "msrp_refused_audio_accepted", .offer = "good/audio_msrp.sdp", .codec = CodecId::kPcmu,
     .payload_type = 0, .te_pt = 101, .remote_address = "198.51.100.40", .remote_port = 49170},

    // Direction: ours mirrors the offerer's.
    {.name = "recvonly_offer", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=recvonly\n"),
     .remote_address = "10.0.0.1", .remote_port = 4000, .direction = Direction::kSendOnly},
    {.name = "inactive_offer", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=inactive\n"),
     .remote_address = "10.0.0.1", .remote_port = 4000, .direction = Direction::kInactive},
    {.name = "session_level_sendonly",
     .offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\n"
              "m=audio 4000 RTP/AVP 0\n",
     .remote_address = "10.0.0.1", .remote_port = 4000, .direction = Direction::kRecvOnly},
    {.name = "ipv6_unspecified_hold",
     .offer = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 ::\nt=0 0\nm=audio 4000 RTP/AVP 8\n",
     .codec = CodecId::kPcma, .payload_type = 8, .remote_address = "::", .remote_port = 4000,
     .direction = Direction::kInactive},

    // Streams: one m= line in the answer per offered one; only the first usable audio is taken.
    {.name = "video_first_then_audio",
     .offer = offer_with("m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\nm=audio 4000 RTP/AVP 8 0\n"),
     .codec = CodecId::kPcma, .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4000,
     .audio_index = 1},
    {.name = "second_audio_refused",
     .offer = offer_with("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\n"), .remote_address = "10.0.0.1",
     .remote_port = 4000},
    {.name = "best_effort_srtp_takes_plain_rtp",
     .offer = offer_with("m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\n"
                         "m=audio 4002 RTP/AVP 0\n"),
     .remote_address = "10.0.0.1", .remote_port = 4002, .audio_index = 1},
    {.name = "disabled_audio_skipped", .offer = offer_with("m=audio 0 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\n"),
     .codec = CodecId::kPcma, .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4002,
     .audio_index = 1},
    {.name = "video_only", .offer = offer_with("m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"),
     .status = 488, .reason = "no audio stream"},
    {.name = "no_media_at_all", .offer = kHeader, .status = 488, .reason = "no audio stream"},
    {.name = "audio_port_0_only", .offer = offer_with("m=audio 0 RTP/AVP 0\n"), .status = 488,
     .reason = "no audio stream"},
    {.name = "avpf_refused", .offer = offer_with("m=audio 4000 RTP/AVPF 0\n"), .status = 488,
     .reason = "RTP/AVPF"},
    {.name = "webrtc_savpf_refused", .offer = offer_with("m=audio 9 UDP/TLS/RTP/SAVPF 0\n"), .status = 488,
     .reason = "UDP/TLS/RTP/SAVPF"},
    {.name = "no_connection_address",
     .offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n", .status = 488,
     .reason = "no connection address"},
    {.name = "media_level_c_only",
     .offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 10.9.9.9\n",
     .remote_address = "10.9.9.9", .remote_port = 4000},
    {.name = "sipp_g729_gsm_opus",
     .offer = offer_with("m=audio 4000 RTP/AVP 18 3 96\na=rtpmap:18 G729/8000\na=rtpmap:3 GSM/8000\n"
                         "a=rtpmap:96 opus/48000/2\na=sendrecv\n"),
     .status = 488, .reason = "no common codec"},

    // Codec choice.
    {.name = "offerer_order_beats_ours", .offer = offer_with("m=audio 4000 RTP/AVP 0 8\n"),
     .codec = CodecId::kPcmu, .payload_type = 0, .remote_address = "10.0.0.1", .remote_port = 4000,
     .local_codecs = {CodecId::kPcma, CodecId::kPcmu}},
    {.name = "only_what_we_enable", .offer = offer_with("m=audio 4000 RTP/AVP 0 8 9\n"),
     .codec = CodecId::kG722, .payload_type = 9, .remote_address = "10.0.0.1", .remote_port = 4000,
     .local_codecs = {CodecId::kG722}},
    {.name = "nothing_we_enable", .offer = offer_with("m=audio 4000 RTP/AVP 0 8\n"), .status = 488,
     .reason = "we support G722", .local_codecs = {CodecId::kG722}},
    {.name = "dynamic_pcmu_number", .offer = offer_with("m=audio 4000 RTP/AVP 110\na=rtpmap:110 PCMU/8000\n"),
     .codec = CodecId::kPcmu, .payload_type = 110, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "dynamic_without_rtpmap_skipped", .offer = offer_with("m=audio 4000 RTP/AVP 96 8\n"),
     .codec = CodecId::kPcma, .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "static_number_remapped_by_rtpmap",
     .offer = offer_with("m=audio 4000 RTP/AVP 0 8\na=rtpmap:0 G729/8000\n"), .codec = CodecId::kPcma,
     .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "g722_16000_is_not_g722",
     .offer = offer_with("m=audio 4000 RTP/AVP 9 0\na=rtpmap:9 G722/16000\n"), .codec = CodecId::kPcmu,
     .payload_type = 0, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "stereo_pcmu_is_not_ours",
     .offer = offer_with("m=audio 4000 RTP/AVP 96 8\na=rtpmap:96 PCMU/8000/2\n"), .codec = CodecId::kPcma,
     .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "encoding_case_insensitive",
     .offer = offer_with("m=audio 4000 RTP/AVP 8\na=rtpmap:8 pcma/8000\n"),
     .codec = CodecId::kPcma, .payload_type = 8, .remote_address = "10.0.0.1", .remote_port = 4000},

    // telephone-event: the offerer's number, at 8000 Hz only, and only if we want it.
    {.name = "te_at_48000_only",
     .offer = offer_with("m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/48000\n"),
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "te_rtpmap_without_format",
     .offer = offer_with("m=audio 4000 RTP/AVP 0\na=rtpmap:101 telephone-event/8000\n"),
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "te_disabled_locally", .offer = "good/asterisk_offer.sdp", .ptime = 30,
     .remote_address = "203.0.113.10", .remote_port = 16384, .local_te = false},

    // ptime: copied when we can send it (10-60 ms in 10 ms steps), capped by maxptime, else 20.
    {.name = "ptime_40", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:40\n"), .ptime = 40,
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "ptime_10", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:10\n"), .ptime = 10,
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "ptime_25_unsupported", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:25\n"), .ptime = 20,
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "ptime_120_unsupported", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:120\n"),
     .ptime = 20,
     .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "ptime_capped_by_maxptime",
     .offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:40\na=maxptime:30\n"),
     .ptime = 30, .remote_address = "10.0.0.1", .remote_port = 4000},
    {.name = "ptime_absent_maxptime_10", .offer = offer_with("m=audio 4000 RTP/AVP 0\na=maxptime:10\n"),
     .ptime = 10, .remote_address = "10.0.0.1", .remote_port = 4000},
};

const RtpMap* find_map(const MediaDescription& m, int pt) {
    for (const auto& r : m.rtpmaps) {
        if (r.payload_type == pt) return &r;
    }
    return nullptr;
}

const Fmtp* find_fmtp(const MediaDescription& m, int pt) {
    for (const auto& f : m.fmtps) {
        if (f.payload_type == pt) return &f;
    }
    return nullptr;
}

void PrintTo(const OfferCase& c, std::ostream* os) { *os << c.name; }

class SdpOfferAnswer : public ::testing::TestWithParam<OfferCase> {};

TEST_P(SdpOfferAnswer, AnswersAsExpected) {
    const OfferCase& c = GetParam();
    std::string error;
    const auto offer = parse(load(c.offer), &error);
    ASSERT_TRUE(offer) << error;
    LocalMedia local = parley_local();
    local.codecs = c.local_codecs;
    local.telephone_event = c.local_te;

    const Answer answer = answer_offer(*offer, local);
    ASSERT_EQ(answer.status, c.status) << answer.reason;
    if (c.status != 200) {
        EXPECT_NE(answer.reason.find(c.reason), std::string::npos) << "reason was: " << answer.reason;
        EXPECT_TRUE(answer.sdp.empty());
        return;
    }

    // What we agreed to.
    const NegotiatedMedia& nm = answer.media;
    EXPECT_EQ(nm.codec, c.codec);
    EXPECT_EQ(nm.payload_type, c.payload_type);
    EXPECT_EQ(nm.telephone_event_pt, c.te_pt);
    EXPECT_EQ(nm.ptime, c.ptime);
    EXPECT_EQ(nm.remote_address, c.remote_address);
    EXPECT_EQ(nm.remote_port, c.remote_port);
    EXPECT_EQ(nm.direction, c.direction) << direction_str(nm.direction);
    EXPECT_EQ(nm.on_hold(), c.direction == Direction::kInactive || c.direction == Direction::kRecvOnly);

    // What we said, read back by our own parser.
    const auto sd = parse(answer.sdp, &error);
    ASSERT_TRUE(sd) << error << "\n" << answer.sdp;
    SCOPED_TRACE(answer.sdp);
    EXPECT_EQ(sd->origin_address, local.address);
    EXPECT_EQ(sd->session_id, local.session_id);
    EXPECT_EQ(sd->session_version, local.session_version);
    EXPECT_EQ(sd->connection_address, local.address);
    ASSERT_EQ(sd->media.size(), offer->media.size()) << "RFC 3264 §6: one answer m= line per offered one";
    for (size_t i = 0; i < sd->media.size(); ++i) {
        SCOPED_TRACE("m= section " + std::to_string(i));
        const MediaDescription& a = sd->media[i];
        const MediaDescription& o = offer->media[i];
        EXPECT_EQ(a.media, o.media);
        if (i != c.audio_index) {
            EXPECT_EQ(a.port, 0) << "refused streams have port 0";
            EXPECT_EQ(a.proto, o.proto);
            if (!o.formats.empty()) {
                ASSERT_EQ(a.formats.size(), 1u);
                EXPECT_EQ(a.formats[0], o.formats[0]);
            }
            continue;
        }
        EXPECT_EQ(a.port, local.port);
        EXPECT_EQ(a.proto, "RTP/AVP");
        EXPECT_FALSE(a.connection_address) << "our address is at session level";
        ASSERT_FALSE(a.formats.empty());
        EXPECT_EQ(a.formats[0], c.payload_type) << "chosen codec first";
        const RtpMap* map = find_map(a, c.payload_type);
        ASSERT_NE(map, nullptr);
        EXPECT_EQ(map->encoding, media::codec_info(c.codec).name);
        EXPECT_EQ(map->clock_rate, 8000);
        if (c.te_pt >= 0) {
            EXPECT_EQ(a.formats, (std::vector<int>{c.payload_type, c.te_pt}));
            const RtpMap* te = find_map(a, c.te_pt);
            ASSERT_NE(te, nullptr);
            EXPECT_EQ(te->encoding, "telephone-event");
            EXPECT_EQ(te->clock_rate, 8000);
            const Fmtp* fmtp = find_fmtp(a, c.te_pt);
            ASSERT_NE(fmtp, nullptr);
            EXPECT_EQ(fmtp->params, "0-16");
            EXPECT_NE(answer.sdp.find("a=fmtp:" + std::to_string(c.te_pt) + " 0-16\r\n"), std::string::npos);
        } else {
            EXPECT_EQ(a.formats, std::vector<int>{c.payload_type}) << "only the chosen codec";
        }
        EXPECT_EQ(a.ptime, c.ptime);
        EXPECT_EQ(a.direction, c.direction);
        const std::string direction_line = std::string("a=") + direction_str(c.direction) + "\r\n";
        EXPECT_NE(answer.sdp.find(direction_line), std::string::npos);
    }
    expect_stable(*sd);
}

INSTANTIATE_TEST_SUITE_P(Table, SdpOfferAnswer, ::testing::ValuesIn(kOfferCases),
                         case_name<OfferCase>);

// ---- our offers and the answers to them ------------------------------------------------------------------

TEST(SdpMakeOffer, DescribesOurCodecsInOrder) {
    const LocalMedia local = parley_local();
    const std::string text = make_offer(local);
    std::string error;
    const auto sd = parse(text, &error);
    ASSERT_TRUE(sd) << error << "\n" << text;
    EXPECT_EQ(sd->session_id, 42u);
    EXPECT_EQ(sd->session_version, 7u);
    EXPECT_EQ(sd->origin_address, "192.0.2.100");
    EXPECT_EQ(sd->connection_address, "192.0.2.100");
    ASSERT_EQ(sd->media.size(), 1u);
    const MediaDescription& m = sd->media[0];
    EXPECT_EQ(m.media, "audio");
    EXPECT_EQ(m.port, 20000);
    EXPECT_EQ(m.proto, "RTP/AVP");
    EXPECT_EQ(m.formats, (std::vector<int>{0, 8, 9, 101}));
    EXPECT_EQ(rtpmap_strs(m), (std::vector<std::string>{"0 PCMU/8000", "8 PCMA/8000", "9 G722/8000",
                                                         "101 telephone-event/8000"}));
    EXPECT_EQ(fmtp_strs(m), std::vector<std::string>{"101 0-16"});
    EXPECT_EQ(m.ptime, 20);
    EXPECT_EQ(m.direction, Direction::kSendRecv);
    EXPECT_NE(text.find("a=sendrecv\r\n"), std::string::npos);
    expect_stable(*sd);
}

TEST(SdpMakeOffer, FollowsLocalSettings) {
    LocalMedia local = parley_local();
    local.address = "2001:db8::5";
    local.codecs = {CodecId::kG722, CodecId::kPcma, CodecId::kG722};
    local.telephone_event_pt = 96;
    local.ptime = 30;
    const std::string text = make_offer(local);
    EXPECT_NE(text.find("c=IN IP6 2001:db8::5\r\n"), std::string::npos) << text;
    EXPECT_NE(text.find("o=parley 42 7 IN IP6 2001:db8::5\r\n"), std::string::npos) << text;
    const auto sd = parse(text);
    ASSERT_TRUE(sd);
    EXPECT_EQ(sd->media[0].formats, (std::vector<int>{9, 8, 96})) << "duplicates dropped";
    EXPECT_EQ(sd->media[0].ptime, 30);

    local.telephone_event = false;
    const auto no_te = parse(make_offer(local));
    ASSERT_TRUE(no_te);
    EXPECT_EQ(no_te->media[0].formats, (std::vector<int>{9, 8}));
    EXPECT_TRUE(no_te->media[0].fmtps.empty());
}

TEST(SdpMakeOffer, RoundTripThroughOurOwnAnswer) {
    const LocalMedia alice = parley_local();
    LocalMedia bob;
    bob.address = "198.51.100.9";
    bob.port = 31000;
    bob.codecs = {CodecId::kPcma, CodecId::kG722};

    const auto offer = parse(make_offer(alice));
    ASSERT_TRUE(offer);
    const Answer answer = answer_offer(*offer, bob);
    ASSERT_EQ(answer.status, 200) << answer.reason;
    // Bob honours Alice's order among what he supports: PCMA comes before G722 in her offer.
    EXPECT_EQ(answer.media.codec, CodecId::kPcma);
    EXPECT_EQ(answer.media.remote_address, "192.0.2.100");
    EXPECT_EQ(answer.media.remote_port, 20000);

    const auto parsed_answer = parse(answer.sdp);
    ASSERT_TRUE(parsed_answer);
    std::string error;
    const auto nm = accept_answer(*parsed_answer, alice, &error);
    ASSERT_TRUE(nm) << error;
    EXPECT_EQ(nm->codec, CodecId::kPcma);
    EXPECT_EQ(nm->payload_type, 8);
    EXPECT_EQ(nm->telephone_event_pt, 101);
    EXPECT_EQ(nm->ptime, 20);
    EXPECT_EQ(nm->remote_address, "198.51.100.9");
    EXPECT_EQ(nm->remote_port, 31000);
    EXPECT_EQ(nm->direction, Direction::kSendRecv);
}

struct AcceptCase {
    std::string name{};
    std::string answer{};  // inline SDP
    bool ok = true;
    std::string error{};  // substring, when !ok
    CodecId codec = CodecId::kPcmu;
    int payload_type = 0;
    int te_pt = -1;
    int ptime = 20;
    std::string remote_address = "10.0.0.1";
    uint16_t remote_port = 5000;
    Direction direction = Direction::kSendRecv;
};

const AcceptCase kAcceptCases[] = {
    {.name = "pcmu_te_101",
     .answer = offer_with("m=audio 5000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"),
     .codec = CodecId::kPcmu, .payload_type = 0, .te_pt = 101},
    // The answerer's numbers are used, even where RFC 3264 asks it to keep ours.
    {.name = "answerer_te_number",
     .answer = offer_with("m=audio 5000 RTP/AVP 8 96\na=rtpmap:96 telephone-event/8000\n"),
     .codec = CodecId::kPcma, .payload_type = 8, .te_pt = 96},
    {.name = "answerer_codec_number",
     .answer = offer_with("m=audio 5000 RTP/AVP 110\na=rtpmap:110 PCMU/8000\n"),
     .codec = CodecId::kPcmu, .payload_type = 110},
    {.name = "g722_only", .answer = offer_with("m=audio 5000 RTP/AVP 9\n"), .codec = CodecId::kG722,
     .payload_type = 9},
    {.name = "first_common_in_answer_order", .answer = offer_with("m=audio 5000 RTP/AVP 18 8 0\n"),
     .codec = CodecId::kPcma, .payload_type = 8},
    {.name = "answer_ptime_30", .answer = offer_with("m=audio 5000 RTP/AVP 0\na=ptime:30\n"), .ptime = 30},
    {.name = "media_level_c", .answer = offer_with("m=audio 5000 RTP/AVP 0\nc=IN IP4 10.7.7.7\n"),
     .remote_address = "10.7.7.7"},
    {.name = "answer_recvonly", .answer = offer_with("m=audio 5000 RTP/AVP 0\na=recvonly\n"),
     .direction = Direction::kSendOnly},
    {.name = "answer_sendonly", .answer = offer_with("m=audio 5000 RTP/AVP 0\na=sendonly\n"),
     .direction = Direction::kRecvOnly},
    {.name = "answer_c0",
     .answer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 5000 RTP/AVP 0\n",
     .remote_address = "0.0.0.0", .direction = Direction::kInactive},
    {.name = "opus_only", .answer = offer_with("m=audio 5000 RTP/AVP 111\na=rtpmap:111 opus/48000/2\n"),
     .ok = false, .error = "no codec we offered"},
    {.name = "not_offered_by_us", .answer = offer_with("m=audio 5000 RTP/AVP 18\n"), .ok = false,
     .error = "no codec we offered"},
    {.name = "refused", .answer = offer_with("m=audio 0 RTP/AVP 0\n"), .ok = false, .error = "port 0"},
    {.name = "savp", .answer = offer_with("m=audio 5000 RTP/SAVP 0\n"), .ok = false, .error = "RTP/SAVP"},
    {.name = "no_connection", .answer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0\n",
     .ok = false, .error = "no connection address"},
    {.name = "no_audio", .answer = offer_with("m=video 5000 RTP/AVP 96\n"), .ok = false,
     .error = "no audio stream"},
};

void PrintTo(const AcceptCase& c, std::ostream* os) { *os << c.name; }

class SdpAcceptAnswer : public ::testing::TestWithParam<AcceptCase> {};

TEST_P(SdpAcceptAnswer, ReadsTheAnswer) {
    const AcceptCase& c = GetParam();
    const auto answer = parse(c.answer);
    ASSERT_TRUE(answer);
    std::string error;
    const auto nm = accept_answer(*answer, parley_local(), &error);
    ASSERT_EQ(nm.has_value(), c.ok) << error;
    if (!c.ok) {
        EXPECT_NE(error.find(c.error), std::string::npos) << "error was: " << error;
        return;
    }
    EXPECT_EQ(nm->codec, c.codec);
    EXPECT_EQ(nm->payload_type, c.payload_type);
    EXPECT_EQ(nm->telephone_event_pt, c.te_pt);
    EXPECT_EQ(nm->ptime, c.ptime);
    EXPECT_EQ(nm->remote_address, c.remote_address);
    EXPECT_EQ(nm->remote_port, c.remote_port);
    EXPECT_EQ(nm->direction, c.direction);
}

INSTANTIATE_TEST_SUITE_P(Table, SdpAcceptAnswer, ::testing::ValuesIn(kAcceptCases),
                         case_name<AcceptCase>);

TEST(SdpAcceptAnswerLocal, OnlyCodecsWeOffered) {
    LocalMedia local = parley_local();
    local.codecs = {CodecId::kPcmu};
    const auto answer = parse(offer_with("m=audio 5000 RTP/AVP 8\n"));
    ASSERT_TRUE(answer);
    std::string error;
    EXPECT_FALSE(accept_answer(*answer, local, &error));
    EXPECT_NE(error.find("we offered PCMU"), std::string::npos) << error;
    EXPECT_FALSE(accept_answer(*answer, local));  // no error pointer
}

TEST(SdpDirection, Names) {
    EXPECT_STREQ(direction_str(Direction::kSendRecv), "sendrecv");
    EXPECT_STREQ(direction_str(Direction::kSendOnly), "sendonly");
    EXPECT_STREQ(direction_str(Direction::kRecvOnly), "recvonly");
    EXPECT_STREQ(direction_str(Direction::kInactive), "inactive");
}

}  // namespace
}  // namespace parley::sdp
