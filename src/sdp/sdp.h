// sdp.h — SDP (RFC 4566) parsing/serialization and offer/answer (RFC 3264) for one audio stream.
//
// parse() accepts what real phones and PBXs send (CRLF or LF, unknown attributes and extra m-lines are
// kept or skipped) and rejects anything that is not structurally SDP with a one-line reason; it never
// throws and never reads past its input. The negotiation functions decide what Parley answers: the first
// codec in the offerer's order that we support, the offerer's payload type numbers and ptime, and
// RFC 4733 telephone-event when offered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "media/codec.h"
#include "media/srtp.h"

namespace parley::sdp {

enum class Direction { kSendRecv, kSendOnly, kRecvOnly, kInactive };
const char* direction_str(Direction d);  // "sendrecv", ...

struct RtpMap {
    int payload_type = -1;
    std::string encoding;  // as written, e.g. "PCMU", "telephone-event"
    int clock_rate = 0;
    int channels = 1;
};

struct Fmtp {
    int payload_type = -1;
    std::string params;  // e.g. "0-16"
};

struct MediaDescription {
    std::string media;     // "audio", "video", ...
    uint16_t port = 0;     // 0 = rejected/disabled stream
    std::string proto;     // "RTP/AVP", "RTP/SAVP", ...
    std::vector<int> formats;  // payload types in the m= line, in preference order (empty: non-RTP proto)
    std::vector<RtpMap> rtpmaps;
    std::vector<Fmtp> fmtps;
    std::optional<int> ptime;     // a=ptime (ms)
    std::optional<int> maxptime;  // a=maxptime (ms)
    std::optional<std::string> connection_address;  // media-level c= (IP4/IP6 address)
    std::optional<uint16_t> rtcp_port;              // a=rtcp:
    Direction direction = Direction::kSendRecv;  // effective: the session-level one if the section has none
    // SRTP with SDES (RFC 4568): the a=crypto lines we can use, in the order given, and why the others
    // cannot be used (unsupported suite, MKI, ...; no key bytes). Both bounded (kMaxCrypto).
    std::vector<media::CryptoAttribute> crypto;
    std::vector<std::string> crypto_refused;
};

struct SessionDescription {
    std::string origin_username = "-";
    uint64_t session_id = 0;
    uint64_t session_version = 0;
    std::string origin_address = "127.0.0.1";
    std::string session_name = "-";
    std::optional<std::string> connection_address;  // session-level c=
    Direction direction = Direction::kSendRecv;     // session-level a=sendrecv etc.
    std::vector<MediaDescription> media;
};

// Returns nullopt and sets *error (if non-null) to a reason such as "line 3: m= line has no port".
std::optional<SessionDescription> parse(std::string_view text, std::string* error = nullptr);
std::string serialize(const SessionDescription& sd);  // CRLF line endings

// ---- Offer/answer -------------------------------------------------------------------------------

struct LocalMedia {
    std::vector<media::CodecId> codecs = {media::CodecId::kPcmu, media::CodecId::kPcma,
                                          media::CodecId::kG722};  // ours, in our preference order
    bool telephone_event = true;
    int telephone_event_pt = 101;  // used in our offers
    std::string address = "127.0.0.1";  // our media address (c=)
    uint16_t port = 0;                  // our RTP port
    int ptime = 20;                     // used in our offers
    uint64_t session_id = 0;
    uint64_t session_version = 0;       // caller increments for each new offer/answer in a dialog

    // ---- SRTP (docs/srtp.md) ----
    // kOff: RTP/SAVP offers are refused (488), our offers are RTP/AVP. kOptional: RTP/SAVP and RTP/AVP
    // offers are both accepted, our offers are plain RTP/AVP. kRequired: RTP/AVP offers are refused,
    // our offers are RTP/SAVP.
    enum class Srtp { kOff, kOptional, kRequired };
    Srtp srtp = Srtp::kOff;
    // false when the signalling is not encrypted (no TLS) and media.srtp_insecure_signalling is off: then
    // no SDES key may be sent or accepted, so every RTP/SAVP stream is refused.
    bool srtp_keys_allowed = true;
    // Our master keys (fresh per call): [0] is the one in answers and in our offer's tag 1
    // (AES_CM_128_HMAC_SHA1_80); [1], when present, is our offer's tag 2 (AES_CM_128_HMAC_SHA1_32).
    std::vector<media::SrtpKeySalt> srtp_keys;
};

// Why an RTP/SAVP stream is refused when LocalMedia::srtp_keys_allowed is false.
extern const char* const kSrtpInsecureSignallingReason;

// What was agreed for the one audio stream, from Parley's point of view.
struct NegotiatedMedia {
    media::CodecId codec = media::CodecId::kPcmu;
    int payload_type = 0;             // the number to send and expect for `codec`
    int telephone_event_pt = -1;      // -1: no RFC 4733
    int ptime = 20;                   // packetization we send with
    std::string remote_address;       // where to send RTP
    uint16_t remote_port = 0;
    Direction direction = Direction::kSendRecv;  // our direction: kRecvOnly means we must not send
    std::optional<media::SrtpParams> srtp;       // set when the stream is RTP/SAVP (SDES keys agreed)
    bool on_hold() const { return direction == Direction::kInactive || direction == Direction::kRecvOnly; }
};

struct Answer {
    int status = 200;            // 200, or the SIP status to reject the offer with (488)
    std::string reason;          // why, when status != 200
    std::string sdp;             // the answer body when status == 200
    NegotiatedMedia media;       // valid when status == 200
};

// Answers `offer`. Non-audio and extra audio streams are refused with port 0 in the answer; an audio
// stream with no codec we share, whose proto is neither RTP/AVP nor RTP/SAVP, or that local.srtp (and
// srtp_keys_allowed) does not allow, yields 488. An RTP/SAVP stream is answered with the first of its
// a=crypto lines whose suite we support: the same tag and suite, our key local.srtp_keys[0].
Answer answer_offer(const SessionDescription& offer, const LocalMedia& local);

// Our offer (for outgoing calls, and for incoming INVITEs that carry no SDP). RTP/SAVP with a=crypto
// for both suites when local.srtp is kRequired (and keys are given), otherwise RTP/AVP.
std::string make_offer(const LocalMedia& local);

// Reads the peer's answer to make_offer(local). nullopt (and *error) when it accepts none of our codecs
// or refuses the audio stream.
std::optional<NegotiatedMedia> accept_answer(const SessionDescription& answer, const LocalMedia& local,
                                             std::string* error = nullptr);

}  // namespace parley::sdp
