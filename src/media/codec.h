// codec.h — the audio codecs Parley speaks on the wire (G.711 µ-law/A-law, G.722) via spandsp, with
// packet loss concealment. Encoders and decoders are per call and per direction (they keep state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

namespace parley::media {

enum class CodecId { kPcmu, kPcma, kG722 };

struct CodecInfo {
    CodecId id;
    std::string_view name;     // SDP encoding name: "PCMU", "PCMA", "G722"
    int static_payload_type;   // 0, 8, 9
    int rtp_clock_rate;        // as written in SDP and used for RTP timestamps: 8000 for all three
    int sample_rate;           // PCM rate of encoder input / decoder output: 8000, 8000, 16000
};

const CodecInfo& codec_info(CodecId id);
// Case-insensitive lookup by SDP encoding name; nullopt if unsupported.
std::optional<CodecId> codec_from_name(std::string_view name);

class Encoder {
public:
    virtual ~Encoder() = default;
    // Encodes `pcm` (at codec_info().sample_rate) into `out`; returns bytes written (0 if `out` is too
    // small). G.711: 1 byte per sample. G.722: 1 byte per 2 samples.
    virtual size_t encode(std::span<const int16_t> pcm, std::span<uint8_t> out) = 0;
};

class Decoder {
public:
    virtual ~Decoder() = default;
    // Decodes one payload into `out`; returns the number of samples written (at sample_rate), truncated
    // to out.size(). Also feeds the loss concealer with the decoded audio.
    virtual size_t decode(std::span<const uint8_t> payload, std::span<int16_t> out) = 0;
    // Synthesizes `out.size()` samples for a lost packet from the recent history (spandsp PLC).
    virtual void conceal(std::span<int16_t> out) = 0;
};

std::unique_ptr<Encoder> make_encoder(CodecId id);
std::unique_ptr<Decoder> make_decoder(CodecId id);

}  // namespace parley::media
