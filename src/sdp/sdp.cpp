// sdp.cpp — SDP (RFC 4566) parser/serializer and the offer/answer rules (RFC 3264) Parley applies.
//
// The parser is written for hostile input: every line, number and count is bounded before it is used,
// numbers go through std::from_chars (no exceptions, no locale), and anything we do not understand is
// skipped rather than guessed at. It is lenient where real phones differ (LF or CRLF, blank lines, a
// missing final newline, attributes in any order, unknown line types and attributes) and strict where a
// mistake would change what we send (m=, c=, o=, a=rtpmap, a=fmtp).
#include "sdp/sdp.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <system_error>

namespace parley::sdp {

namespace {

// Limits on hostile input. A real offer is well under 2 KiB; these are generous enough for any phone or
// PBX and small enough that parsing and negotiation stay cheap whatever arrives.
constexpr size_t kMaxTotal = 64 * 1024;   // counting every line ending as CRLF (see parse())
constexpr size_t kMaxLine = 4 * 1024;     // one line, without its line ending
constexpr size_t kMaxMedia = 64;          // m= sections
constexpr size_t kMaxFormats = 128;       // formats on one m= line (there are only 128 RTP payload types)
constexpr int kMaxPayloadType = 127;
constexpr uint64_t kMaxPacketTime = 10000;  // ms; larger a=ptime/maxptime values are ignored
constexpr uint64_t kMaxChannels = 255;
constexpr size_t kMaxCrypto = 16;  // a=crypto lines kept per m= section (usable and refused each)

// What one serialized direction line ("a=sendrecv\r\n" etc.) costs: serialize() always writes the
// media-level direction, so parse() budgets for it when the input has none (see parse()).
constexpr size_t kDirectionLineSize = 12;

constexpr int kDefaultPtime = 20;  // RFC 3551: the default packetization for G.711/G.722
constexpr int kMinPtime = 10;
constexpr int kMaxPtime = 60;
constexpr const char* kTelephoneEventRange = "0-16";  // DTMF 0-9 * # A-D, and flash (RFC 4733)
constexpr const char* kSessionName = "parley";
// All our codecs use an 8000 Hz RTP clock (G.722 too, RFC 3551 §4.5.2), so one telephone-event does.
constexpr int kTelephoneEventClock = 8000;

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split_ws(std::string_view s) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(s[i])) ++i;
        const size_t start = i;
        while (i < s.size() && !is_space(s[i])) ++i;
        if (i > start) out.push_back(s.substr(start, i - start));
    }
    return out;
}

// Splits at the first run of whitespace: "96 opus/48000/2" -> {"96", "opus/48000/2"}.
std::pair<std::string_view, std::string_view> split_first(std::string_view s) {
    s = trim(s);
    size_t i = 0;
    while (i < s.size() && !is_space(s[i])) ++i;
    return {s.substr(0, i), trim(s.substr(i))};
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}

// A whole-token unsigned decimal number no larger than `max`. from_chars refuses signs, spaces and
// overflow without throwing, which is exactly what hostile input needs.
std::optional<uint64_t> to_uint(std::string_view s, uint64_t max) {
    if (s.empty()) return std::nullopt;
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size() || value > max) return std::nullopt;
    return value;
}

std::optional<int> to_payload_type(std::string_view s) {
    const auto v = to_uint(s, kMaxPayloadType);
    if (!v) return std::nullopt;
    return static_cast<int>(*v);
}

// RTP profiles carry numeric payload types; anything else (TCP/MSRP, UDP/DTLS/SCTP, udp/BFCP) has opaque
// format tokens that we neither understand nor need: such streams are only ever refused.
bool is_rtp_proto(std::string_view proto) {
    for (size_t i = 0; i + 4 <= proto.size(); ++i) {
        if (iequals(proto.substr(i, 4), "RTP/")) return true;
    }
    return false;
}

// Addresses end up in log lines, the resolver and sockets: allow IPv4/IPv6 literals and host names only.
bool valid_address(std::string_view a) {
    if (a.empty() || a.size() > 255) return false;
    return std::all_of(a.begin(), a.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
               c == ':' || c == '-' || c == '_';
    });
}

const char* address_type(std::string_view address) {
    return address.find(':') != std::string_view::npos ? "IP6" : "IP4";
}

std::optional<Direction> direction_from_name(std::string_view name) {
    if (iequals(name, "sendrecv")) return Direction::kSendRecv;
    if (iequals(name, "sendonly")) return Direction::kSendOnly;
    if (iequals(name, "recvonly")) return Direction::kRecvOnly;
    if (iequals(name, "inactive")) return Direction::kInactive;
    return std::nullopt;
}

// The peer's direction seen from our side: what they only send, we only receive.
Direction mirror(Direction d) {
    switch (d) {
        case Direction::kSendOnly: return Direction::kRecvOnly;
        case Direction::kRecvOnly: return Direction::kSendOnly;
        case Direction::kSendRecv:
        case Direction::kInactive: return d;
    }
    return d;
}

class Parser {
public:
    std::optional<SessionDescription> run(std::string_view text, std::string* error);

private:
    bool fail(std::string reason) {
        error_ = line_no_ > 0 ? "line " + std::to_string(line_no_) + ": " + reason : std::move(reason);
        return false;
    }
    bool line(char type, std::string_view value);
    bool origin(std::string_view value);
    bool timing(std::string_view value);
    bool connection(std::string_view value, std::optional<std::string>& out);
    bool media(std::string_view value);
    bool attribute(std::string_view value);
    bool rtpmap(std::string_view value, MediaDescription& m);
    bool fmtp(std::string_view value, MediaDescription& m);

    SessionDescription sd_;
    std::vector<bool> explicit_direction_;  // per m= section: had its own a=sendrecv etc.
    size_t line_no_ = 0;
    bool seen_origin_ = false;
    bool seen_name_ = false;
    bool seen_timing_ = false;
    std::string error_;
};

std::optional<SessionDescription> Parser::run(std::string_view text, std::string* error) {
    auto failed = [&]() -> std::optional<SessionDescription> {
        if (error) *error = error_.empty() ? "invalid SDP" : error_;
        return std::nullopt;
    };
    if (text.empty()) {
        fail("empty SDP body");
        return failed();
    }
    if (text.size() > kMaxTotal) {
        fail("SDP body of " + std::to_string(text.size()) + " bytes exceeds the " +
             std::to_string(kMaxTotal) + "-byte limit");
        return failed();
    }

    // `budget` is the size of the body as if every line ended in CRLF. serialize() never writes a line
    // longer than the one it came from, and writes CRLF, so bounding this (plus the direction lines it adds)
    // guarantees that serialize(parse(x)) parses again, even for an LF-only x close to the limit.
    size_t budget = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t nl = text.find('\n', pos);
        std::string_view ln =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (!ln.empty() && ln.back() == '\r') ln.remove_suffix(1);
        ++line_no_;

        budget += ln.size() + 2;
        if (budget > kMaxTotal) {
            fail("SDP body exceeds the " + std::to_string(kMaxTotal) + "-byte limit");
            return failed();
        }
        if (ln.size() > kMaxLine) {
            fail("line is " + std::to_string(ln.size()) + " bytes, longer than the " +
                 std::to_string(kMaxLine) + "-byte limit");
            return failed();
        }
        for (const char c : ln) {
            const auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u == 0x7f) {
                fail("control character 0x" + std::string(1, "0123456789abcdef"[u >> 4]) +
                     std::string(1, "0123456789abcdef"[u & 0xf]) + " in line");
                return failed();
            }
        }
        if (line_no_ == 1) {
            // RFC 4566 §5: the body starts with v=0. This is what tells SDP from anything else.
            if (ln.substr(0, 3) != "v=0" || !trim(ln.substr(3)).empty()) {
                fail("SDP must start with \"v=0\"");
                return failed();
            }
            continue;
        }
        if (ln.empty()) continue;  // not allowed by the RFC, but harmless, and some stacks add one
        const char type = ln[0];
        const bool letter = (type >= 'a' && type <= 'z') || (type >= 'A' && type <= 'Z');
        if (ln.size() < 2 || ln[1] != '=' || !letter) {
            fail("expected <type>=<value>");
            return failed();
        }
        if (!line(type, ln.substr(2))) return failed();
    }

    line_no_ = 0;  // the remaining errors are about the whole body
    // RFC 4566 §5: o=, s= and t= are mandatory; every real stack sends them.
    if (!seen_origin_ || !seen_name_ || !seen_timing_) {
        fail(!seen_origin_ ? "missing o= line" : !seen_name_ ? "missing s= line" : "missing t= line");
        return failed();
    }

    for (const bool has : explicit_direction_) {
        if (!has) budget += kDirectionLineSize;
    }
    if (budget > kMaxTotal) {
        fail("SDP body exceeds the " + std::to_string(kMaxTotal) + "-byte limit");
        return failed();
    }
    return std::move(sd_);
}

bool Parser::line(char type, std::string_view value) {
    const bool in_media = !sd_.media.empty();
    switch (type) {
        case 'v': return fail("second v= line");
        case 'o': return in_media ? true : origin(value);
        case 's':
            if (in_media) return true;
            // Kept verbatim (it may be UTF-8 or " "); serialize() writes it back unchanged.
            sd_.session_name = std::string(value);
            seen_name_ = true;
            return true;
        case 't': return in_media ? true : timing(value);
        case 'c':
            return connection(value, in_media ? sd_.media.back().connection_address : sd_.connection_address);
        case 'm': return media(value);
        case 'a': return attribute(value);
        default: return true;  // i=, u=, e=, p=, b=, r=, z=, k= and unknown types: nothing we act on
    }
}

bool Parser::origin(std::string_view value) {
    // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
    const auto f = split_ws(value);
    if (f.size() != 6) return fail("o= line needs 6 fields, has " + std::to_string(f.size()));
    const auto id = to_uint(f[1], UINT64_MAX);
    const auto version = to_uint(f[2], UINT64_MAX);
    if (!id || !version) return fail("o= session id and version must be unsigned 64-bit numbers");
    if (!iequals(f[3], "IN")) return fail("o= network type is not IN");
    if (!iequals(f[4], "IP4") && !iequals(f[4], "IP6")) return fail("o= address type is not IP4 or IP6");
    if (!valid_address(f[5])) return fail("o= address is not a valid address");
    sd_.origin_username = std::string(f[0]);
    sd_.session_id = *id;
    sd_.session_version = *version;
    sd_.origin_address = std::string(f[5]);
    seen_origin_ = true;
    return true;
}

bool Parser::timing(std::string_view value) {
    // t=<start> <stop>: always "0 0" for SIP; only checked so that a mangled line is noticed.
    const auto f = split_ws(value);
    if (f.size() != 2 || !to_uint(f[0], UINT64_MAX) || !to_uint(f[1], UINT64_MAX)) {
        return fail("t= line is not <start> <stop>");
    }
    seen_timing_ = true;
    return true;
}

bool Parser::connection(std::string_view value, std::optional<std::string>& out) {
    // c=<nettype> <addrtype> <connection-address>[/ttl[/count]] (the multicast suffixes are dropped)
    const auto f = split_ws(value);
    if (f.size() != 3) return fail("c= line needs 3 fields, has " + std::to_string(f.size()));
    if (!iequals(f[0], "IN")) return fail("c= network type is not IN");
    if (!iequals(f[1], "IP4") && !iequals(f[1], "IP6")) return fail("c= address type is not IP4 or IP6");
    const std::string_view address = f[2].substr(0, f[2].find('/'));
    if (!valid_address(address)) return fail("c= address is not a valid address");
    out = std::string(address);
    return true;
}

bool Parser::media(std::string_view value) {
    // m=<media> <port>[/<count>] <proto> <fmt> ...
    if (sd_.media.size() >= kMaxMedia) return fail("more than " + std::to_string(kMaxMedia) + " m= lines");
    const auto f = split_ws(value);
    if (f.size() < 2) return fail("m= line has no port");
    if (f.size() < 3) return fail("m= line has no transport protocol");
    if (f.size() < 4) return fail("m= line has no formats");
    if (f.size() - 3 > kMaxFormats) {
        return fail("m= line has " + std::to_string(f.size() - 3) + " formats, more than " +
                    std::to_string(kMaxFormats));
    }
    const std::string_view port_text = f[1].substr(0, f[1].find('/'));
    const auto port = to_uint(port_text, 65535);
    if (!port) {
        return fail("m= port \"" + std::string(port_text.substr(0, 32)) + "\" is not a number 0-65535");
    }
    if (port_text.size() < f[1].size() && !to_uint(f[1].substr(port_text.size() + 1), 65535)) {
        return fail("m= port count is not a number");
    }

    MediaDescription m;
    m.media = std::string(f[0]);
    m.port = static_cast<uint16_t>(*port);
    m.proto = std::string(f[2]);
    m.direction = sd_.direction;  // RFC 4566 §6: a session-level direction applies unless overridden
    if (is_rtp_proto(m.proto)) {
        m.formats.reserve(f.size() - 3);
        for (size_t i = 3; i < f.size(); ++i) {
            const auto pt = to_payload_type(f[i]);
            if (!pt) {
                return fail("m= format \"" + std::string(f[i].substr(0, 32)) +
                            "\" is not an RTP payload type");
            }
            m.formats.push_back(*pt);
        }
    }
    sd_.media.push_back(std::move(m));
    explicit_direction_.push_back(false);
    return true;
}

bool Parser::attribute(std::string_view value) {
    const size_t colon = value.find(':');
    const std::string_view name = trim(value.substr(0, colon));
    const std::string_view arg =
        colon == std::string_view::npos ? std::string_view() : value.substr(colon + 1);

    if (const auto dir = direction_from_name(name)) {
        if (sd_.media.empty()) {
            sd_.direction = *dir;
        } else {
            sd_.media.back().direction = *dir;
            explicit_direction_.back() = true;
        }
        return true;
    }
    if (sd_.media.empty()) return true;  // other session-level attributes: nothing we act on
    MediaDescription& m = sd_.media.back();

    if (iequals(name, "rtpmap")) return is_rtp_proto(m.proto) ? rtpmap(arg, m) : true;
    if (iequals(name, "fmtp")) return is_rtp_proto(m.proto) ? fmtp(arg, m) : true;
    // ptime/maxptime/rtcp only refine what we do: an unreadable one is ignored (the defaults are safe)
    // rather than failing the call.
    if (iequals(name, "ptime") || iequals(name, "maxptime")) {
        const auto v = to_uint(trim(arg), kMaxPacketTime);
        if (v && *v > 0) (iequals(name, "ptime") ? m.ptime : m.maxptime) = static_cast<int>(*v);
        return true;
    }
    if (iequals(name, "rtcp")) {
        const auto v = to_uint(split_first(arg).first, 65535);
        if (v) m.rtcp_port = static_cast<uint16_t>(*v);
        return true;
    }
    if (iequals(name, "crypto")) {
        // An unusable a=crypto line does not fail the SDP: another line may be usable, and if none is,
        // negotiation refuses the stream with the reasons kept here.
        std::string why;
        if (auto c = media::crypto_parse(arg, &why)) {
            if (m.crypto.size() < kMaxCrypto) m.crypto.push_back(*c);
        } else if (m.crypto_refused.size() < kMaxCrypto) {
            m.crypto_refused.push_back(std::move(why));
        }
        return true;
    }
    return true;  // unknown attributes are ignored (RFC 4566 §5.13)
}

bool Parser::rtpmap(std::string_view value, MediaDescription& m) {
    // a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]. Strict: this decides which codec
    // we would send, and guessing wrong is garbage audio.
    const auto [pt_text, rest] = split_first(value);
    const auto pt = to_payload_type(pt_text);
    if (!pt) return fail("a=rtpmap payload type is not a number 0-127");
    if (rest.empty()) return fail("a=rtpmap has no encoding");
    if (std::any_of(rest.begin(), rest.end(), is_space)) return fail("a=rtpmap encoding contains spaces");
    const size_t slash1 = rest.find('/');
    if (slash1 == std::string_view::npos) return fail("a=rtpmap has no clock rate");
    const size_t slash2 = rest.find('/', slash1 + 1);
    const std::string_view encoding = rest.substr(0, slash1);
    const std::string_view clock_text = rest.substr(
        slash1 + 1, slash2 == std::string_view::npos ? std::string_view::npos : slash2 - slash1 - 1);
    if (encoding.empty()) return fail("a=rtpmap has an empty encoding name");
    const auto clock = to_uint(clock_text, INT_MAX);
    if (!clock || *clock == 0) return fail("a=rtpmap clock rate is not a positive number");
    RtpMap map;
    map.payload_type = *pt;
    map.encoding = std::string(encoding);
    map.clock_rate = static_cast<int>(*clock);
    if (slash2 != std::string_view::npos) {
        const auto channels = to_uint(rest.substr(slash2 + 1), kMaxChannels);
        if (!channels || *channels == 0) return fail("a=rtpmap channel count is not a number 1-255");
        map.channels = static_cast<int>(*channels);
    }
    m.rtpmaps.push_back(std::move(map));
    return true;
}

bool Parser::fmtp(std::string_view value, MediaDescription& m) {
    // a=fmtp:<payload type> <format specific parameters>; the parameters are kept as text.
    const auto [pt_text, params] = split_first(value);
    const auto pt = to_payload_type(pt_text);
    if (!pt) return fail("a=fmtp payload type is not a number 0-127");
    m.fmtps.push_back(Fmtp{*pt, std::string(params)});
    return true;
}

// ---- negotiation helpers --------------------------------------------------------------------------------

const RtpMap* find_rtpmap(const MediaDescription& m, int pt) {
    for (const RtpMap& r : m.rtpmaps) {
        if (r.payload_type == pt) return &r;
    }
    return nullptr;
}

// What `pt` means in `m`: its rtpmap, or for the static types we speak (RFC 3551: 0 PCMU, 8 PCMA, 9 G722)
// the implied one. Dynamic types without an rtpmap mean nothing.
std::optional<RtpMap> format_of(const MediaDescription& m, int pt) {
    if (const RtpMap* r = find_rtpmap(m, pt)) return *r;
    for (const auto id : {media::CodecId::kPcmu, media::CodecId::kPcma, media::CodecId::kG722}) {
        const media::CodecInfo& info = media::codec_info(id);
        if (info.static_payload_type == pt) {
            return RtpMap{pt, std::string(info.name), info.rtp_clock_rate, 1};
        }
    }
    return std::nullopt;
}

struct CodecChoice {
    media::CodecId codec;
    int payload_type;
};

// The first format in `m`'s order that is one of `ours` (RFC 3264 §6.1: the offerer's order is its
// preference, and honouring it costs us nothing). The clock rate must match too: "G722/16000" is a
// different (wrong) format, and PCMU/16000 is not G.711.
std::optional<CodecChoice> choose_codec(const MediaDescription& m, const std::vector<media::CodecId>& ours) {
    for (const int pt : m.formats) {
        const auto f = format_of(m, pt);
        if (!f || f->channels != 1) continue;
        const auto id = media::codec_from_name(f->encoding);
        if (!id || f->clock_rate != media::codec_info(*id).rtp_clock_rate) continue;
        if (std::find(ours.begin(), ours.end(), *id) == ours.end()) continue;
        return CodecChoice{*id, pt};
    }
    return std::nullopt;
}

// The telephone-event format at the codec's clock rate (Linphone offers one per rate), or -1.
int choose_telephone_event(const MediaDescription& m, media::CodecId codec) {
    const int clock = media::codec_info(codec).rtp_clock_rate;
    for (const int pt : m.formats) {
        const RtpMap* r = find_rtpmap(m, pt);
        if (r && iequals(r->encoding, "telephone-event") && r->clock_rate == clock) return pt;
    }
    return -1;
}

// a=ptime is the packetization the peer wants to receive. We send 10-60 ms in 10 ms steps; anything
// else falls back to `fallback`, and a=maxptime caps the result.
int choose_ptime(const MediaDescription& m, int fallback) {
    int ptime = fallback;
    if (m.ptime && *m.ptime >= kMinPtime && *m.ptime <= kMaxPtime && *m.ptime % 10 == 0) ptime = *m.ptime;
    if (m.maxptime && *m.maxptime < ptime) ptime = std::max(kMinPtime, *m.maxptime / 10 * 10);
    return ptime;
}

std::string codec_list(const std::vector<media::CodecId>& ids) {
    std::string out;
    for (const auto id : ids) {
        if (!out.empty()) out += ' ';
        out += media::codec_info(id).name;
    }
    return out.empty() ? "none" : out;
}

std::string offered_list(const MediaDescription& m) {
    std::string out;
    for (const int pt : m.formats) {
        if (!out.empty()) out += ' ';
        const auto f = format_of(m, pt);
        out += f ? f->encoding + "/" + std::to_string(f->clock_rate) : std::to_string(pt);
        if (out.size() > 200) return out + " ...";
    }
    return out;
}

bool is_unspecified(const std::string& address) { return address == "0.0.0.0" || address == "::"; }

// Fills the audio m= section we send: the chosen codec first, then telephone-event if agreed.
void fill_audio(MediaDescription& m, const LocalMedia& local, const std::vector<media::CodecId>& codecs,
                const std::vector<int>& pts, int te_pt, int ptime, Direction direction) {
    m.media = "audio";
    m.port = local.port;
    m.proto = "RTP/AVP";
    for (size_t i = 0; i < codecs.size(); ++i) {
        const media::CodecInfo& info = media::codec_info(codecs[i]);
        m.formats.push_back(pts[i]);
        m.rtpmaps.push_back(RtpMap{pts[i], std::string(info.name), info.rtp_clock_rate, 1});
    }
    if (te_pt >= 0) {
        m.formats.push_back(te_pt);
        m.rtpmaps.push_back(RtpMap{te_pt, "telephone-event", kTelephoneEventClock, 1});
        m.fmtps.push_back(Fmtp{te_pt, kTelephoneEventRange});
    }
    m.ptime = ptime;
    m.direction = direction;
}

bool offers_srtp(const LocalMedia& local) {
    return local.srtp == LocalMedia::Srtp::kRequired && local.srtp_keys_allowed && !local.srtp_keys.empty();
}

// Why the RTP/SAVP stream `m` cannot be taken, or "" and its first usable a=crypto in `crypto`.
std::string srtp_problem(const MediaDescription& m, const LocalMedia& local,
                         std::optional<media::CryptoAttribute>& crypto) {
    if (local.srtp == LocalMedia::Srtp::kOff) return "audio stream is RTP/SAVP (SRTP) but media.srtp is off";
    if (!local.srtp_keys_allowed) return kSrtpInsecureSignallingReason;
    if (local.srtp_keys.empty()) return "no local SRTP key to answer RTP/SAVP with";
    if (m.crypto.empty()) {
        return m.crypto_refused.empty() ? "RTP/SAVP stream has no a=crypto line (DTLS-SRTP is not supported)"
                                        : "RTP/SAVP stream has no usable a=crypto: " + m.crypto_refused.front();
    }
    crypto = m.crypto.front();  // the offerer's order is its preference (RFC 4568 §7.1.1)
    return {};
}

SessionDescription local_session(const LocalMedia& local) {
    SessionDescription sd;
    sd.origin_username = kSessionName;
    sd.session_id = local.session_id;
    sd.session_version = local.session_version;
    sd.origin_address = local.address;
    sd.session_name = kSessionName;
    sd.connection_address = local.address;
    return sd;
}

}  // namespace

const char* const kSrtpInsecureSignallingReason =
    "RTP/SAVP over unencrypted signalling: SDES keys would travel in clear text (use TLS, or set "
    "media.srtp_insecure_signalling = true to allow it)";

const char* direction_str(Direction d) {
    switch (d) {
        case Direction::kSendRecv: return "sendrecv";
        case Direction::kSendOnly: return "sendonly";
        case Direction::kRecvOnly: return "recvonly";
        case Direction::kInactive: return "inactive";
    }
    return "sendrecv";
}

std::optional<SessionDescription> parse(std::string_view text, std::string* error) {
    Parser parser;
    return parser.run(text, error);
}

std::string serialize(const SessionDescription& sd) {
    // Every line written here is no longer than the line it was parsed from (numbers are normalized, the
    // c= multicast suffix and m= port count are dropped), which parse() relies on for its size budget.
    std::string out;
    out.reserve(256 + 128 * sd.media.size());
    auto line = [&out](std::string_view text) {
        out += text;
        out += "\r\n";
    };
    auto address_line = [&](char type, const std::string& address) {
        out += type;
        out += "=IN ";
        out += address_type(address);
        out += ' ';
        line(address);
    };

    line("v=0");
    const std::string origin_address = sd.origin_address.empty() ? std::string("0.0.0.0") : sd.origin_address;
    line("o=" + (sd.origin_username.empty() ? std::string("-") : sd.origin_username) + " " +
         std::to_string(sd.session_id) + " " + std::to_string(sd.session_version) + " IN " +
         address_type(origin_address) + " " + origin_address);
    line("s=" + sd.session_name);
    if (sd.connection_address && !sd.connection_address->empty()) address_line('c', *sd.connection_address);
    line("t=0 0");
    if (sd.direction != Direction::kSendRecv) line(std::string("a=") + direction_str(sd.direction));

    for (const MediaDescription& m : sd.media) {
        out += "m=" + m.media + " " + std::to_string(m.port) + " " + m.proto;
        if (m.formats.empty()) out += " *";  // non-RTP streams: their format tokens are not kept
        for (const int pt : m.formats) out += " " + std::to_string(pt);
        out += "\r\n";
        if (m.connection_address && !m.connection_address->empty()) address_line('c', *m.connection_address);
        for (const RtpMap& r : m.rtpmaps) {
            std::string text = "a=rtpmap:" + std::to_string(r.payload_type) + " " + r.encoding + "/" +
                               std::to_string(r.clock_rate);
            if (r.channels != 1) text += "/" + std::to_string(r.channels);
            line(text);
        }
        for (const Fmtp& f : m.fmtps) {
            line("a=fmtp:" + std::to_string(f.payload_type) + (f.params.empty() ? "" : " " + f.params));
        }
        if (m.ptime) line("a=ptime:" + std::to_string(*m.ptime));
        if (m.maxptime) line("a=maxptime:" + std::to_string(*m.maxptime));
        if (m.rtcp_port) line("a=rtcp:" + std::to_string(*m.rtcp_port));
        for (const media::CryptoAttribute& c : m.crypto) line("a=crypto:" + media::crypto_serialize(c));
        // Always explicit at media level: peers never have to work out inheritance from the session.
        line(std::string("a=") + direction_str(m.direction));
    }
    return out;
}

Answer answer_offer(const SessionDescription& offer, const LocalMedia& local) {
    Answer answer;
    auto reject = [&answer](std::string reason) {
        answer.status = 488;
        answer.reason = std::move(reason);
        answer.sdp.clear();
        return answer;
    };

    // The first audio stream we can take is the call; every other stream is refused (port 0) so that the
    // answer has one m= line per offered one, in the same order (RFC 3264 §6).
    std::optional<size_t> chosen_index;
    std::optional<media::CryptoAttribute> chosen_crypto;
    CodecChoice choice{};
    int te_pt = -1;
    std::string remote_address;
    std::string first_problem;
    bool any_audio = false;
    for (size_t i = 0; i < offer.media.size() && !chosen_index; ++i) {
        const MediaDescription& m = offer.media[i];
        if (!iequals(m.media, "audio") || m.port == 0) continue;
        any_audio = true;
        std::string problem;
        const auto codec = choose_codec(m, local.codecs);
        const std::optional<std::string>& address =
            m.connection_address ? m.connection_address : offer.connection_address;
        std::optional<media::CryptoAttribute> crypto;
        if (iequals(m.proto, "RTP/SAVP")) {
            problem = srtp_problem(m, local, crypto);
        } else if (!iequals(m.proto, "RTP/AVP")) {
            problem = "audio stream uses " + m.proto.substr(0, 40) +
                      "; only RTP/AVP and RTP/SAVP with SDES keys are supported";
        } else if (local.srtp == LocalMedia::Srtp::kRequired) {
            problem = "media.srtp is required but the audio stream is plain RTP/AVP";
        }
        if (problem.empty() && !codec) {
            problem =
                "no common codec: offered " + offered_list(m) + "; we support " + codec_list(local.codecs);
        } else if (problem.empty() && !address) {
            problem = "audio stream has no connection address (c=)";
        }
        if (!problem.empty()) {
            if (first_problem.empty()) first_problem = std::move(problem);
            continue;
        }
        chosen_index = i;
        chosen_crypto = crypto;
        choice = *codec;
        te_pt = local.telephone_event ? choose_telephone_event(m, choice.codec) : -1;
        remote_address = *address;
    }
    if (!chosen_index) return reject(any_audio ? first_problem : "no audio stream in the offer");

    const MediaDescription& offered = offer.media[*chosen_index];
    NegotiatedMedia& nm = answer.media;
    nm.codec = choice.codec;
    nm.payload_type = choice.payload_type;
    nm.telephone_event_pt = te_pt;
    nm.ptime = choose_ptime(offered, kDefaultPtime);
    nm.remote_address = remote_address;
    nm.remote_port = offered.port;
    // c=0.0.0.0 is RFC 2543 hold: the peer will not receive. We answer inactive, as RFC 3264 §8.4 allows
    // for any hold, since there is nowhere to send to anyway.
    nm.direction = is_unspecified(remote_address) ? Direction::kInactive : mirror(offered.direction);

    SessionDescription sd = local_session(local);
    for (size_t i = 0; i < offer.media.size(); ++i) {
        const MediaDescription& m = offer.media[i];
        MediaDescription a;
        if (i == *chosen_index) {
            // Only the chosen codec (and telephone-event): the answer then says exactly what we will send,
            // and peers that mishandle several codecs in an answer (switching mid-call) have nothing to
            // switch to.
            fill_audio(a, local, {nm.codec}, {nm.payload_type}, te_pt, nm.ptime, nm.direction);
            if (chosen_crypto) {
                // RFC 4568 §7.1.2: the answer has the accepted tag and suite, and the answerer's own key.
                a.proto = "RTP/SAVP";
                a.crypto.push_back(media::CryptoAttribute{chosen_crypto->tag, chosen_crypto->suite,
                                                          local.srtp_keys.front()});
                nm.srtp = media::SrtpParams{chosen_crypto->suite, local.srtp_keys.front(), chosen_crypto->key};
            }
        } else {
            // Refused: port 0, same media and proto, one of the offered formats (RFC 3264 §6 wants one).
            a.media = m.media;
            a.port = 0;
            a.proto = m.proto;
            if (!m.formats.empty()) a.formats.push_back(m.formats.front());
            a.direction = Direction::kInactive;
        }
        sd.media.push_back(std::move(a));
    }
    answer.status = 200;
    answer.sdp = serialize(sd);
    return answer;
}

std::string make_offer(const LocalMedia& local) {
    std::vector<media::CodecId> codecs;
    std::vector<int> pts;
    for (const auto id : local.codecs) {
        if (std::find(codecs.begin(), codecs.end(), id) != codecs.end()) continue;
        codecs.push_back(id);
        pts.push_back(media::codec_info(id).static_payload_type);
    }
    // telephone-event needs a dynamic number (RFC 3551 §3); 101 is what nearly everyone uses.
    int te_pt = -1;
    if (local.telephone_event) {
        te_pt = (local.telephone_event_pt >= 96 && local.telephone_event_pt <= kMaxPayloadType)
                    ? local.telephone_event_pt
                    : 101;
    }
    SessionDescription sd = local_session(local);
    MediaDescription m;
    fill_audio(m, local, codecs, pts, te_pt, local.ptime, Direction::kSendRecv);
    if (offers_srtp(local)) {
        m.proto = "RTP/SAVP";
        m.crypto.push_back({1, media::SrtpSuite::kAesCm128HmacSha1_80, local.srtp_keys[0]});
        m.crypto.push_back({2, media::SrtpSuite::kAesCm128HmacSha1_32,
                            local.srtp_keys.size() > 1 ? local.srtp_keys[1] : local.srtp_keys[0]});
    }
    sd.media.push_back(std::move(m));
    return serialize(sd);
}

std::optional<NegotiatedMedia> accept_answer(const SessionDescription& answer, const LocalMedia& local,
                                             std::string* error) {
    auto fail = [error](std::string reason) -> std::optional<NegotiatedMedia> {
        if (error) *error = std::move(reason);
        return std::nullopt;
    };
    // Our offers have exactly one m= line, audio; the answer's first audio line answers it.
    const auto it = std::find_if(answer.media.begin(), answer.media.end(),
                                 [](const MediaDescription& m) { return iequals(m.media, "audio"); });
    if (it == answer.media.end()) return fail("answer has no audio stream");
    const MediaDescription& m = *it;
    if (m.port == 0) return fail("answer refused the audio stream (port 0)");
    std::optional<media::SrtpParams> srtp;
    if (offers_srtp(local)) {
        if (!iequals(m.proto, "RTP/SAVP")) return fail("answer uses " + m.proto + " instead of RTP/SAVP");
        // The answer must take one of our tags with the suite we offered under it (RFC 4568 §7.1.3).
        for (const media::CryptoAttribute& c : m.crypto) {
            const bool tag1 = c.tag == 1 && c.suite == media::SrtpSuite::kAesCm128HmacSha1_80;
            const bool tag2 = c.tag == 2 && c.suite == media::SrtpSuite::kAesCm128HmacSha1_32;
            if (!tag1 && !tag2) continue;
            const media::SrtpKeySalt& ours =
                tag1 || local.srtp_keys.size() < 2 ? local.srtp_keys[0] : local.srtp_keys[1];
            srtp = media::SrtpParams{c.suite, ours, c.key};
            break;
        }
        if (!srtp) {
            return fail("answer has no a=crypto matching one we offered" +
                        (m.crypto_refused.empty() ? std::string() : ": " + m.crypto_refused.front()));
        }
    } else if (!iequals(m.proto, "RTP/AVP")) {
        return fail("answer uses " + m.proto + " instead of RTP/AVP");
    }
    const std::optional<std::string>& address =
        m.connection_address ? m.connection_address : answer.connection_address;
    if (!address) return fail("answer has no connection address (c=)");
    // The answerer's numbers: they are what it expects to receive (RFC 3264 §6.1 asks it to reuse ours,
    // but not every peer does, and sending with its numbers is right either way).
    const auto codec = choose_codec(m, local.codecs);
    if (!codec) {
        return fail("answer has no codec we offered: answered " + offered_list(m) + "; we offered " +
                    codec_list(local.codecs));
    }
    NegotiatedMedia nm;
    nm.codec = codec->codec;
    nm.payload_type = codec->payload_type;
    nm.telephone_event_pt = local.telephone_event ? choose_telephone_event(m, codec->codec) : -1;
    nm.ptime = choose_ptime(m, local.ptime);
    nm.remote_address = *address;
    nm.remote_port = m.port;
    nm.direction = is_unspecified(*address) ? Direction::kInactive : mirror(m.direction);
    nm.srtp = srtp;
    return nm;
}

}  // namespace parley::sdp
