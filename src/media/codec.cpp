// codec.cpp — G.711 (µ-law, A-law) and G.722 64 kbit/s via spandsp, with spandsp's packet loss concealer.
//
// Only the spandsp headers we need are included (not <spandsp.h>, which pulls in libtiff for the fax
// modules). plc_state_t is a public struct in spandsp 0.0.6, so the concealer lives inside the decoder; the
// codec states are opaque and allocated by their init functions.
#include "media/codec.h"

#include <algorithm>
#include <array>
#include <cctype>

// telephony.h defines SPAN_DECLARE and must come first; bit_operations.h provides top_bit() for g711.h.
#include <spandsp/telephony.h>

#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>
#include <spandsp/g722.h>
#include <spandsp/plc.h>

namespace parley::media {

namespace {

constexpr std::array<CodecInfo, 3> kCodecs{{
    {CodecId::kPcmu, "PCMU", 0, 8000, 8000},
    {CodecId::kPcma, "PCMA", 8, 8000, 8000},
    // RFC 3551 section 4.5.2: G.722 samples at 16 kHz, but its RTP clock rate is 8000 (an error in
    // RFC 1890 kept for compatibility), so timestamps advance by 160 per 20 ms packet of 320 samples.
    {CodecId::kG722, "G722", 9, 8000, 16000},
}};

constexpr int kG722BitRate = 64000;

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

class G711Encoder final : public Encoder {
public:
    explicit G711Encoder(int mode) : st_(g711_init(nullptr, mode)) {}
    ~G711Encoder() override { g711_free(st_); }
    G711Encoder(const G711Encoder&) = delete;
    G711Encoder& operator=(const G711Encoder&) = delete;

    size_t encode(std::span<const int16_t> pcm, std::span<uint8_t> out) override {
        if (out.size() < pcm.size()) return 0;
        if (pcm.empty()) return 0;
        return static_cast<size_t>(g711_encode(st_, out.data(), pcm.data(), static_cast<int>(pcm.size())));
    }

private:
    g711_state_t* st_;
};

class G722Encoder final : public Encoder {
public:
    G722Encoder() : st_(g722_encode_init(nullptr, kG722BitRate, 0)) {}
    ~G722Encoder() override { g722_encode_free(st_); }
    G722Encoder(const G722Encoder&) = delete;
    G722Encoder& operator=(const G722Encoder&) = delete;

    // The G.722 QMF consumes samples in pairs (spandsp reads amp[j + 1] unchecked, so an odd length would
    // read past the buffer). An odd trailing sample is kept and prepended to the next call instead.
    size_t encode(std::span<const int16_t> pcm, std::span<uint8_t> out) override {
        const size_t total = pcm.size() + (have_pending_ ? 1 : 0);
        const size_t bytes = total / 2;
        if (out.size() < bytes) return 0;
        size_t written = 0;
        if (have_pending_ && !pcm.empty()) {
            const int16_t pair[2] = {pending_, pcm[0]};
            written += static_cast<size_t>(g722_encode(st_, out.data(), pair, 2));
            pcm = pcm.subspan(1);
            have_pending_ = false;
        }
        const size_t even = pcm.size() & ~size_t{1};
        if (even > 0) {
            written += static_cast<size_t>(
                g722_encode(st_, out.data() + written, pcm.data(), static_cast<int>(even)));
        }
        if (even < pcm.size()) {
            pending_ = pcm[even];
            have_pending_ = true;
        }
        return written;
    }

private:
    g722_encode_state_t* st_;
    int16_t pending_ = 0;
    bool have_pending_ = false;
};

// Shared by both decoders: every decoded sample goes through plc_rx so that conceal() can synthesize
// from the most recent pitch period. plc_rx also smooths the join after a concealed stretch.
class PlcDecoder : public Decoder {
public:
    PlcDecoder() { plc_init(&plc_); }

    void conceal(std::span<int16_t> out) override {
        if (out.empty()) return;
        plc_fillin(&plc_, out.data(), static_cast<int>(out.size()));
    }

protected:
    void feed_plc(std::span<int16_t> pcm) {
        if (!pcm.empty()) plc_rx(&plc_, pcm.data(), static_cast<int>(pcm.size()));
    }

private:
    // spandsp's concealer is tuned for 8 kHz (pitch search 40..120 samples = 66..200 Hz, fade-out over
    // 50 ms). At G.722's 16 kHz the same constants cover 133..400 Hz and a 25 ms fade: lower voices are
    // repeated at a multiple of their period, which still sounds far better than silence for one or two
    // lost 20 ms packets, and the faster fade keeps longer losses from buzzing.
    plc_state_t plc_{};
};

class G711Decoder final : public PlcDecoder {
public:
    explicit G711Decoder(int mode) : st_(g711_init(nullptr, mode)) {}
    ~G711Decoder() override { g711_free(st_); }
    G711Decoder(const G711Decoder&) = delete;
    G711Decoder& operator=(const G711Decoder&) = delete;

    size_t decode(std::span<const uint8_t> payload, std::span<int16_t> out) override {
        const size_t n = std::min(payload.size(), out.size());
        if (n == 0) return 0;
        const int got = g711_decode(st_, out.data(), payload.data(), static_cast<int>(n));
        feed_plc(out.first(static_cast<size_t>(got)));
        return static_cast<size_t>(got);
    }

private:
    g711_state_t* st_;
};

class G722Decoder final : public PlcDecoder {
public:
    G722Decoder() : st_(g722_decode_init(nullptr, kG722BitRate, 0)) {}
    ~G722Decoder() override { g722_decode_free(st_); }
    G722Decoder(const G722Decoder&) = delete;
    G722Decoder& operator=(const G722Decoder&) = delete;

    size_t decode(std::span<const uint8_t> payload, std::span<int16_t> out) override {
        // One byte decodes to two samples. The whole payload is decoded even if `out` is too small, so the
        // ADPCM predictors stay in step with the far-end encoder; what does not fit is discarded.
        size_t written = 0;
        std::array<int16_t, 2 * kChunkBytes> tmp;
        while (!payload.empty()) {
            const size_t chunk = std::min(payload.size(), kChunkBytes);
            const int got = g722_decode(st_, tmp.data(), payload.data(), static_cast<int>(chunk));
            payload = payload.subspan(chunk);
            const size_t keep = std::min(static_cast<size_t>(got), out.size() - written);
            std::copy_n(tmp.begin(), keep, out.begin() + static_cast<std::ptrdiff_t>(written));
            written += keep;
        }
        feed_plc(out.first(written));
        return written;
    }

private:
    static constexpr size_t kChunkBytes = 160;  // one 20 ms packet
    g722_decode_state_t* st_;
};

}  // namespace

const CodecInfo& codec_info(CodecId id) {
    for (const auto& c : kCodecs) {
        if (c.id == id) return c;
    }
    return kCodecs[0];  // unreachable for valid enumerators
}

std::optional<CodecId> codec_from_name(std::string_view name) {
    for (const auto& c : kCodecs) {
        if (iequals(c.name, name)) return c.id;
    }
    return std::nullopt;
}

std::unique_ptr<Encoder> make_encoder(CodecId id) {
    switch (id) {
        case CodecId::kPcmu:
            return std::make_unique<G711Encoder>(G711_ULAW);
        case CodecId::kPcma:
            return std::make_unique<G711Encoder>(G711_ALAW);
        case CodecId::kG722:
            return std::make_unique<G722Encoder>();
    }
    return nullptr;
}

std::unique_ptr<Decoder> make_decoder(CodecId id) {
    switch (id) {
        case CodecId::kPcmu:
            return std::make_unique<G711Decoder>(G711_ULAW);
        case CodecId::kPcma:
            return std::make_unique<G711Decoder>(G711_ALAW);
        case CodecId::kG722:
            return std::make_unique<G722Decoder>();
    }
    return nullptr;
}

}  // namespace parley::media
