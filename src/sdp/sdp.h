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
};

// What was agreed for the one audio stream, from Parley's point of view.
struct NegotiatedMedia {
    media::CodecId codec = media::CodecId::kPcmu;
    int payload_type = 0;             // the number to send and expect for `codec`
    int telephone_event_pt = -1;      // -1: no RFC 4733
    int ptime = 20;                   // packetization we send with
    std::string remote_address;       // where to send RTP
    uint16_t remote_port = 0;
    Direction direction = Direction::kSendRecv;  // our direction: kRecvOnly means we must not send
    bool on_hold() const { return direction == Direction::kInactive || direction == Direction::kRecvOnly; }
};

struct Answer {
    int status = 200;            // 200, or the SIP status to reject the offer with (488)
    std::string reason;          // why, when status != 200
    std::string sdp;             // the answer body when status == 200
    NegotiatedMedia media;       // valid when status == 200
};

// Answers `offer`. Non-audio and extra audio streams are refused with port 0 in the answer; an audio
// stream whose proto is not RTP/AVP, or with no codec we share, yields 488.
Answer answer_offer(const SessionDescription& offer, const LocalMedia& local);

// Our offer (for outgoing calls, and for incoming INVITEs that carry no SDP).
std::string make_offer(const LocalMedia& local);

// Reads the peer's answer to make_offer(local). nullopt (and *error) when it accepts none of our codecs
// or refuses the audio stream.
std::optional<NegotiatedMedia> accept_answer(const SessionDescription& answer, const LocalMedia& local,
                                             std::string* error = nullptr);

}  // namespace parley::sdp
