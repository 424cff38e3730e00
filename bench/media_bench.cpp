// media_bench.cpp — per-20 ms-frame cost of the media primitives on the call path.
//
// Receive path: rtp_parse -> jitter buffer put/get -> decode -> resample to 16 kHz (the ASR rate).
// Send path: TTS audio at 16 or 24 kHz -> resample to the codec rate -> encode -> rtp_serialize.
// One iteration is one 20 ms frame, so ns/iteration is the per-frame cost per call and direction.
#include <benchmark/benchmark.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "media/codec.h"
#include "media/jitter_buffer.h"
#include "media/resampler.h"
#include "media/rtp.h"

namespace {

using namespace parley::media;

std::vector<int16_t> speechlike(int rate, size_t n) {
    // Two tones plus a slow amplitude swing: enough spectral content that the codecs do real work.
    std::vector<int16_t> v(n);
    for (size_t i = 0; i < n; ++i) {
        const double t = static_cast<double>(i) / rate;
        const double env = 0.6 + 0.4 * std::sin(2.0 * std::numbers::pi * 3.0 * t);
        v[i] = static_cast<int16_t>(env * (6000.0 * std::sin(2.0 * std::numbers::pi * 220.0 * t) +
                                           3000.0 * std::sin(2.0 * std::numbers::pi * 1730.0 * t)));
    }
    return v;
}

// Pre-encodes one second of audio into RTP datagrams so the loop measures only the receive path.
std::vector<std::vector<uint8_t>> make_datagrams(CodecId id) {
    const CodecInfo& info = codec_info(id);
    const size_t frame = static_cast<size_t>(info.sample_rate / 50);
    const auto pcm = speechlike(info.sample_rate, frame * 50);
    auto enc = make_encoder(id);
    std::vector<std::vector<uint8_t>> out;
    RtpHeader h;
    h.payload_type = static_cast<uint8_t>(info.static_payload_type);
    h.ssrc = 0x12345678;
    for (size_t f = 0; f < 50; ++f) {
        std::vector<uint8_t> payload(frame);
        payload.resize(enc->encode(std::span<const int16_t>(pcm.data() + f * frame, frame), payload));
        std::vector<uint8_t> dgram(kRtpMaxPacket);
        dgram.resize(rtp_serialize(h, payload, dgram));
        out.push_back(std::move(dgram));
        ++h.sequence;
        h.timestamp += static_cast<uint32_t>(info.rtp_clock_rate / 50);
    }
    return out;
}

void receive_path(benchmark::State& state, CodecId id) {
    const CodecInfo& info = codec_info(id);
    const auto datagrams = make_datagrams(id);
    auto dec = make_decoder(id);
    Resampler to_asr(info.sample_rate, 16000);
    JitterBuffer jb;
    std::vector<uint8_t> payload;
    payload.reserve(kRtpMaxPacket);
    std::vector<int16_t> pcm(static_cast<size_t>(info.sample_rate / 50));
    std::vector<int16_t> asr;
    asr.reserve(1024);
    uint16_t seq = 0;
    uint32_t ts = 0;
    size_t k = 0;
    for (auto _ : state) {
        RtpPacketView v;
        if (rtp_parse(datagrams[k], v) != RtpParseError::kOk) state.SkipWithError("parse failed");
        // Rewrite the sequence so the jitter buffer sees one endless stream.
        jb.put(seq++, ts, v.payload);
        ts += static_cast<uint32_t>(info.rtp_clock_rate / 50);
        if (jb.get(payload) == JitterBuffer::Result::kPacket) {
            dec->decode(payload, pcm);
        } else {
            dec->conceal(pcm);
        }
        asr.clear();
        to_asr.process(pcm, asr);
        benchmark::DoNotOptimize(asr.data());
        k = (k + 1) % datagrams.size();
    }
    state.SetItemsProcessed(state.iterations());
}

void send_path(benchmark::State& state, CodecId id, int tts_rate) {
    const CodecInfo& info = codec_info(id);
    const size_t tts_frame = static_cast<size_t>(tts_rate / 50);
    const auto tts = speechlike(tts_rate, tts_frame * 50);
    Resampler to_codec(tts_rate, info.sample_rate);
    auto enc = make_encoder(id);
    std::vector<int16_t> pcm;
    pcm.reserve(1024);
    std::vector<uint8_t> payload(400);
    std::vector<uint8_t> dgram(kRtpMaxPacket);
    RtpHeader h;
    h.payload_type = static_cast<uint8_t>(info.static_payload_type);
    size_t f = 0;
    for (auto _ : state) {
        pcm.clear();
        to_codec.process(std::span<const int16_t>(tts.data() + f * tts_frame, tts_frame), pcm);
        const size_t n = enc->encode(pcm, payload);
        const size_t len = rtp_serialize(h, std::span<const uint8_t>(payload.data(), n), dgram);
        benchmark::DoNotOptimize(len);
        benchmark::DoNotOptimize(dgram.data());
        ++h.sequence;
        h.timestamp += static_cast<uint32_t>(info.rtp_clock_rate / 50);
        f = (f + 1) % 50;
    }
    state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK_CAPTURE(receive_path, pcmu, CodecId::kPcmu);
BENCHMARK_CAPTURE(receive_path, g722, CodecId::kG722);
BENCHMARK_CAPTURE(send_path, pcmu_from_16k, CodecId::kPcmu, 16000);
BENCHMARK_CAPTURE(send_path, pcmu_from_24k, CodecId::kPcmu, 24000);
BENCHMARK_CAPTURE(send_path, g722_from_16k, CodecId::kG722, 16000);
BENCHMARK_CAPTURE(send_path, g722_from_24k, CodecId::kG722, 24000);

BENCHMARK_MAIN();
