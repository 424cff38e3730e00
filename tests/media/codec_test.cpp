// codec_test.cpp — G.711 against the ITU-T G.711 tables, G.722 quality and a regression vector, PLC.
#include "media/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

namespace parley::media {
namespace {

std::vector<int16_t> sine(double freq, int rate, size_t n, double amplitude, double phase = 0.0) {
    std::vector<int16_t> v(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = static_cast<int16_t>(std::lround(
            amplitude * std::sin(2.0 * std::numbers::pi * freq * static_cast<double>(i) / rate + phase)));
    }
    return v;
}

double rms(std::span<const int16_t> v) {
    if (v.empty()) return 0.0;
    double acc = 0.0;
    for (int16_t s : v) acc += static_cast<double>(s) * s;
    return std::sqrt(acc / static_cast<double>(v.size()));
}

int16_t encode_decode_one(CodecId id, uint8_t code) {
    auto dec = make_decoder(id);
    const uint8_t in[1] = {code};
    int16_t out[1] = {0};
    EXPECT_EQ(dec->decode(in, out), 1u);
    return out[0];
}

uint8_t encode_one(CodecId id, int16_t sample) {
    auto enc = make_encoder(id);
    const int16_t in[1] = {sample};
    uint8_t out[1] = {0};
    EXPECT_EQ(enc->encode(in, out), 1u);
    return out[0];
}

// ITU-T G.711 Table 2 (µ-law): the transmitted octet is the complement of (sign, 3-bit segment e, 4-bit
// step m); sign bit 1 = positive. Decoder output in 14-bit units is (2m + 33) * 2^e - 33, which we scale by
// 4 into 16-bit PCM (so the largest magnitude is 8031 * 4 = 32124).
int16_t itu_ulaw_decode(uint8_t code) {
    const uint8_t c = static_cast<uint8_t>(~code);
    const int e = (c >> 4) & 0x07;
    const int m = c & 0x0F;
    const int magnitude = ((2 * m + 33) * (1 << e) - 33) * 4;
    return static_cast<int16_t>((c & 0x80) ? -magnitude : magnitude);
}

// ITU-T G.711 Table 1 (A-law): even bits inverted (XOR 0x55); sign bit 1 = positive. Decoder output in
// 13-bit units: 2m + 1 in segment 0, (2m + 33) * 2^(e - 1) in segments 1..7 — scaled by 8 into 16-bit PCM
// (largest magnitude 4032 * 8 = 32256).
int16_t itu_alaw_decode(uint8_t code) {
    const uint8_t c = code ^ 0x55;
    const int e = (c >> 4) & 0x07;
    const int m = c & 0x0F;
    const int magnitude = (e == 0 ? (2 * m + 1) : (2 * m + 33) * (1 << (e - 1))) * 8;
    return static_cast<int16_t>((c & 0x80) ? magnitude : -magnitude);
}

TEST(CodecInfo, TableAndLookup) {
    EXPECT_EQ(codec_info(CodecId::kPcmu).name, "PCMU");
    EXPECT_EQ(codec_info(CodecId::kPcmu).static_payload_type, 0);
    EXPECT_EQ(codec_info(CodecId::kPcma).static_payload_type, 8);
    EXPECT_EQ(codec_info(CodecId::kG722).static_payload_type, 9);
    // RFC 3551 4.5.2: G.722 is sampled at 16 kHz but its RTP clock is 8000.
    EXPECT_EQ(codec_info(CodecId::kG722).rtp_clock_rate, 8000);
    EXPECT_EQ(codec_info(CodecId::kG722).sample_rate, 16000);
    EXPECT_EQ(codec_info(CodecId::kPcma).sample_rate, 8000);
    EXPECT_EQ(codec_from_name("pcmu"), CodecId::kPcmu);
    EXPECT_EQ(codec_from_name("PcMa"), CodecId::kPcma);
    EXPECT_EQ(codec_from_name("G722"), CodecId::kG722);
    EXPECT_FALSE(codec_from_name("G729").has_value());
    EXPECT_FALSE(codec_from_name("PCM").has_value());
    EXPECT_FALSE(codec_from_name("").has_value());
}

TEST(CodecG711, WellKnownValues) {
    // µ-law: 0 -> 0xFF (positive zero), full scale -> 0x80 / 0x00, decode of the extremes is ±32124.
    EXPECT_EQ(encode_one(CodecId::kPcmu, 0), 0xFF);
    EXPECT_EQ(encode_one(CodecId::kPcmu, -1), 0x7F);  // negative zero
    EXPECT_EQ(encode_one(CodecId::kPcmu, 32767), 0x80);
    EXPECT_EQ(encode_one(CodecId::kPcmu, -32768), 0x00);
    EXPECT_EQ(encode_decode_one(CodecId::kPcmu, 0x00), -32124);
    EXPECT_EQ(encode_decode_one(CodecId::kPcmu, 0x80), 32124);
    EXPECT_EQ(encode_decode_one(CodecId::kPcmu, 0xFF), 0);
    EXPECT_EQ(encode_decode_one(CodecId::kPcmu, 0x7F), 0);
    EXPECT_EQ(encode_decode_one(CodecId::kPcmu, 0xDF), 396);  // e=2 m=0: (33*4 - 33) * 4
    // A-law: 0 -> 0xD5, -1 -> 0x55, decode of 0x55 is -8 and of 0xD5 is +8, full scale 0xAA / 0x2A.
    EXPECT_EQ(encode_one(CodecId::kPcma, 0), 0xD5);
    EXPECT_EQ(encode_one(CodecId::kPcma, -1), 0x55);
    EXPECT_EQ(encode_one(CodecId::kPcma, 32767), 0xAA);
    EXPECT_EQ(encode_one(CodecId::kPcma, -32768), 0x2A);
    EXPECT_EQ(encode_decode_one(CodecId::kPcma, 0x55), -8);
    EXPECT_EQ(encode_decode_one(CodecId::kPcma, 0xD5), 8);
    EXPECT_EQ(encode_decode_one(CodecId::kPcma, 0xAA), 32256);
    EXPECT_EQ(encode_decode_one(CodecId::kPcma, 0x2A), -32256);
}

TEST(CodecG711, DecoderMatchesItuTablesForAllCodes) {
    std::vector<uint8_t> codes(256);
    for (int i = 0; i < 256; ++i) codes[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
    for (CodecId id : {CodecId::kPcmu, CodecId::kPcma}) {
        auto dec = make_decoder(id);
        std::vector<int16_t> pcm(256);
        ASSERT_EQ(dec->decode(codes, pcm), 256u);
        for (int i = 0; i < 256; ++i) {
            const auto code = static_cast<uint8_t>(i);
            const int16_t expect = id == CodecId::kPcmu ? itu_ulaw_decode(code) : itu_alaw_decode(code);
            ASSERT_EQ(pcm[static_cast<size_t>(i)], expect) << codec_info(id).name << " code " << i;
        }
    }
}

// Quantization step, in 16-bit units, of the segment a code belongs to (G.711 Tables 1 and 2).
int itu_step(CodecId id, uint8_t code) {
    if (id == CodecId::kPcmu) return 8 << ((static_cast<uint8_t>(~code) >> 4) & 0x07);  // 2^(e+1) * 4
    const int e = ((code ^ 0x55) >> 4) & 0x07;
    return e == 0 ? 16 : 8 << e;  // 2 (segments 0 and 1), 2^e above; times 8
}

TEST(CodecG711, EncoderPicksTheNearestLevel) {
    // Every 16-bit input is encoded to the code whose ITU reconstruction level is within half a step of it
    // (the reconstruction levels are the midpoints of the decision intervals), except above the largest
    // level where the encoder saturates to the extreme code.
    std::vector<int16_t> all(65536);
    for (int i = 0; i < 65536; ++i) all[static_cast<size_t>(i)] = static_cast<int16_t>(i - 32768);
    for (CodecId id : {CodecId::kPcmu, CodecId::kPcma}) {
        std::vector<uint8_t> enc(all.size());
        ASSERT_EQ(make_encoder(id)->encode(all, enc), all.size());
        const int top = id == CodecId::kPcmu ? 32124 : 32256;
        for (size_t i = 0; i < all.size(); ++i) {
            const int x = all[i];
            const int y = id == CodecId::kPcmu ? itu_ulaw_decode(enc[i]) : itu_alaw_decode(enc[i]);
            const int half_step = itu_step(id, enc[i]) / 2;
            if (std::abs(x) > top + half_step) {
                ASSERT_EQ(y, x > 0 ? top : -top) << codec_info(id).name << " x=" << x;
            } else {
                // +1: A-law's sign-magnitude folding maps -x to the level of x - 1.
                ASSERT_LE(std::abs(y - x), half_step + 1)
                    << codec_info(id).name << " x=" << x << " code=" << int{enc[i]};
            }
        }
    }
}

TEST(CodecG711, RoundTripOfEveryCode) {
    for (CodecId id : {CodecId::kPcmu, CodecId::kPcma}) {
        for (int c = 0; c < 256; ++c) {
            const auto code = static_cast<uint8_t>(c);
            if (id == CodecId::kPcmu && code == 0x7F) continue;  // -0 decodes to 0, which encodes as +0
            const int16_t v = encode_decode_one(id, code);
            EXPECT_EQ(encode_one(id, v), code) << codec_info(id).name << " code " << c;
        }
    }
}

TEST(CodecG711, BufferSizes) {
    auto enc = make_encoder(CodecId::kPcmu);
    const std::vector<int16_t> pcm(160, 1000);
    std::vector<uint8_t> small(159);
    EXPECT_EQ(enc->encode(pcm, small), 0u);
    std::vector<uint8_t> out(160);
    EXPECT_EQ(enc->encode(pcm, out), 160u);
    auto dec = make_decoder(CodecId::kPcmu);
    std::vector<int16_t> half(80);
    EXPECT_EQ(dec->decode(out, half), 80u);  // truncated to the output
}

// Returns the SNR in dB of `out` against `in` at the lag (0..max_lag) that maximizes it.
double best_snr(const std::vector<int16_t>& in, const std::vector<int16_t>& out, size_t skip, int max_lag,
                int* best_lag) {
    double best = -1e9;
    for (int lag = 0; lag <= max_lag; ++lag) {
        double sig = 0.0;
        double err = 0.0;
        for (size_t i = skip; i + static_cast<size_t>(lag) < out.size() && i < in.size(); ++i) {
            const double x = in[i];
            const double y = out[i + static_cast<size_t>(lag)];
            sig += x * x;
            err += (y - x) * (y - x);
        }
        const double snr = 10.0 * std::log10(sig / std::max(err, 1e-9));
        if (snr > best) {
            best = snr;
            *best_lag = lag;
        }
    }
    return best;
}

TEST(CodecG722, SineRoundTripSnr) {
    const auto in = sine(1000.0, 16000, 16000, 10000.0);
    auto enc = make_encoder(CodecId::kG722);
    auto dec = make_decoder(CodecId::kG722);
    std::vector<int16_t> out;
    for (size_t off = 0; off < in.size(); off += 320) {  // 20 ms frames
        const std::span<const int16_t> frame(in.data() + off, 320);
        uint8_t payload[160];
        ASSERT_EQ(enc->encode(frame, payload), 160u);  // payload size = samples / 2
        int16_t pcm[320];
        ASSERT_EQ(dec->decode(payload, pcm), 320u);
        out.insert(out.end(), pcm, pcm + 320);
    }
    int lag = -1;
    const double snr = best_snr(in, out, 1600, 64, &lag);
    std::printf("[ G722     ] 1 kHz sine: SNR %.1f dB at codec delay %d samples\n", snr, lag);
    EXPECT_GT(snr, 20.0);
    EXPECT_GT(lag, 0);  // the QMF pair has a real delay; lag 0 would mean the test is not measuring
}

TEST(CodecG722, DelayFromChirp) {
    // A pure 1 kHz sine only pins the delay modulo its 16-sample period; a chirp pins it exactly.
    std::vector<int16_t> in(8000);
    for (size_t i = 0; i < in.size(); ++i) {
        const double t = static_cast<double>(i) / 16000.0;
        const double phase = 2.0 * std::numbers::pi * (200.0 * t + 0.5 * 5000.0 * t * t);  // 200 -> 2700 Hz
        in[i] = static_cast<int16_t>(std::lround(8000.0 * std::sin(phase)));
    }
    std::vector<uint8_t> payload(in.size() / 2);
    ASSERT_EQ(make_encoder(CodecId::kG722)->encode(in, payload), payload.size());
    std::vector<int16_t> out(in.size());
    ASSERT_EQ(make_decoder(CodecId::kG722)->decode(payload, out), out.size());
    int lag = -1;
    const double snr = best_snr(in, out, 800, 64, &lag);
    std::printf("[ G722     ] chirp: SNR %.1f dB, codec delay %d samples (%.2f ms)\n", snr, lag, lag / 16.0);
    EXPECT_GT(snr, 20.0);
    EXPECT_EQ(lag, 22);  // the 24-tap QMF analysis + synthesis pair, as measured with spandsp 0.0.6
}

TEST(CodecG722, OddChunksEncodeLikeOneShot) {
    const auto in = sine(440.0, 16000, 960, 8000.0);
    std::vector<uint8_t> one(480);
    ASSERT_EQ(make_encoder(CodecId::kG722)->encode(in, one), 480u);

    auto enc = make_encoder(CodecId::kG722);
    std::vector<uint8_t> chunked;
    size_t off = 0;
    for (size_t chunk : {1u, 7u, 160u, 3u, 320u, 469u}) {
        uint8_t buf[512];
        const size_t n = enc->encode(std::span<const int16_t>(in.data() + off, chunk), buf);
        chunked.insert(chunked.end(), buf, buf + n);
        off += chunk;
    }
    ASSERT_EQ(off, in.size());
    EXPECT_EQ(chunked, one);
}

TEST(CodecG722, OutputTooSmall) {
    auto enc = make_encoder(CodecId::kG722);
    const std::vector<int16_t> pcm(320, 0);
    std::vector<uint8_t> small(159);
    EXPECT_EQ(enc->encode(pcm, small), 0u);
    auto dec = make_decoder(CodecId::kG722);
    const std::vector<uint8_t> payload(160, 0xFA);
    std::vector<int16_t> out(100);
    EXPECT_EQ(dec->decode(payload, out), 100u);
}

TEST(CodecG722, GoldenBitstream) {
    // Regression vector, not an ITU conformance vector: the bytes spandsp 0.0.6 produced (64 kbit/s, 16 kHz
    // input) when this test was written, for 40 samples of a 1 kHz sine (amplitude 8000) followed by 40 of a
    // 3 kHz one (amplitude 4000). Any change means the encoder or how we drive it changed.
    auto in = sine(1000.0, 16000, 40, 8000.0);
    const auto hi = sine(3000.0, 16000, 40, 4000.0);
    in.insert(in.end(), hi.begin(), hi.end());
    std::vector<uint8_t> out(40);
    ASSERT_EQ(make_encoder(CodecId::kG722)->encode(in, out), 40u);
    const std::vector<uint8_t> golden = {
        0xFA, 0x94, 0x25, 0x88, 0x21, 0x91, 0xA0, 0xA0, 0x60, 0xAF, 0xC8, 0xC6, 0xD1, 0xDE,
        0xF0, 0xEB, 0xEE, 0x7B, 0xD4, 0xD0, 0x93, 0x9F, 0x30, 0xAC, 0x30, 0xBC, 0x32, 0x99,
        0x38, 0xB3, 0x54, 0x32, 0x9F, 0x19, 0xF0, 0x96, 0x3B, 0xB4, 0xD4, 0x33,
    };
    EXPECT_EQ(out, golden);
}

void check_plc(CodecId id) {
    const int rate = codec_info(id).sample_rate;
    const size_t frame = static_cast<size_t>(rate / 50);
    auto enc = make_encoder(id);
    auto dec = make_decoder(id);
    const auto voiced = sine(200.0, rate, frame * 10, 8000.0);  // 200 Hz: a pitch inside the PLC's range
    std::vector<int16_t> pcm(frame);
    for (size_t f = 0; f < 10; ++f) {
        std::vector<uint8_t> payload(frame);
        const size_t n = enc->encode(std::span<const int16_t>(voiced.data() + f * frame, frame), payload);
        ASSERT_EQ(dec->decode(std::span<const uint8_t>(payload.data(), n), pcm), frame);
    }
    const double voiced_rms = rms(pcm);
    // Three lost packets in a row.
    std::vector<double> concealed_rms;
    for (int lost = 0; lost < 3; ++lost) {
        std::vector<int16_t> c(frame, 12345);  // sentinel: conceal must overwrite every sample
        dec->conceal(c);
        concealed_rms.push_back(rms(c));
        EXPECT_EQ(std::count(c.begin(), c.end(), int16_t{12345}), 0);
    }
    std::printf("[ PLC      ] %s: voiced RMS %.0f, concealed frames RMS %.0f %.0f %.0f\n",
                std::string(codec_info(id).name).c_str(), voiced_rms, concealed_rms[0], concealed_rms[1],
                concealed_rms[2]);
    EXPECT_GT(concealed_rms[0], 0.3 * voiced_rms);  // audible continuation, not silence
    EXPECT_LT(concealed_rms[0], 1.2 * voiced_rms);  // and not louder than the speech
    EXPECT_LT(concealed_rms[1], concealed_rms[0]);  // decays
    EXPECT_LE(concealed_rms[2], concealed_rms[1]);
    EXPECT_LT(concealed_rms[2], 0.5 * concealed_rms[0]);
}

TEST(CodecPlc, PcmuConcealsAndDecays) {
    check_plc(CodecId::kPcmu);
}
TEST(CodecPlc, PcmaConcealsAndDecays) {
    check_plc(CodecId::kPcma);
}
TEST(CodecPlc, G722ConcealsAndDecays) {
    check_plc(CodecId::kG722);
}

TEST(CodecPlc, ConcealWithoutHistoryIsSilence) {
    auto dec = make_decoder(CodecId::kPcmu);
    std::vector<int16_t> c(160, 777);
    dec->conceal(c);
    EXPECT_EQ(rms(c), 0.0);
}

}  // namespace
}  // namespace parley::media
