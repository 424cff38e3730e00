#include "media/wav.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>

namespace parley::media {
namespace {

uint32_t le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace

std::optional<WavAudio> wav_read(const std::string& path, std::string* error) {
    auto fail = [&](const std::string& why) -> std::optional<WavAudio> {
        if (error) *error = path + ": " + why;
        return std::nullopt;
    };
    std::ifstream f(path, std::ios::binary);
    if (!f) return fail("cannot open");
    std::vector<uint8_t> data;
    try {
        data.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    } catch (const std::exception&) {  // libstdc++'s filebuf throws on read errors (EISDIR, EIO)
        return fail("cannot read");
    }
    if (data.size() < 12 || std::memcmp(data.data(), "RIFF", 4) != 0 || std::memcmp(data.data() + 8, "WAVE", 4) != 0)
        return fail("not a RIFF/WAVE file");
    size_t pos = 12;
    int channels = 0, rate = 0, bits = 0;
    bool have_fmt = false;
    while (pos + 8 <= data.size()) {
        const uint8_t* c = data.data() + pos;
        uint32_t len = le32(c + 4);
        size_t body = pos + 8;
        if (len > data.size() - body) len = static_cast<uint32_t>(data.size() - body);  // tolerate bad sizes
        if (std::memcmp(c, "fmt ", 4) == 0) {
            if (len < 16) return fail("fmt chunk too short");
            uint16_t format = le16(data.data() + body);
            channels = le16(data.data() + body + 2);
            rate = static_cast<int>(le32(data.data() + body + 4));
            bits = le16(data.data() + body + 14);
            if (format == 0xFFFE && len >= 26) format = le16(data.data() + body + 24);  // EXTENSIBLE
            if (format != 1) return fail("not PCM (format " + std::to_string(format) + ")");
            have_fmt = true;
        } else if (std::memcmp(c, "data", 4) == 0) {
            if (!have_fmt) return fail("data chunk before fmt chunk");
            if (bits != 16) return fail("expected 16-bit samples, got " + std::to_string(bits));
            if (channels < 1 || channels > 2) return fail("expected mono or stereo");
            if (rate < 8000 || rate > 192000) return fail("unsupported sample rate " + std::to_string(rate));
            WavAudio out;
            out.sample_rate = rate;
            size_t frames = len / (2u * static_cast<size_t>(channels));
            out.samples.resize(frames);
            for (size_t i = 0; i < frames; ++i) {
                const uint8_t* s = data.data() + body + i * 2u * static_cast<size_t>(channels);
                int v = static_cast<int16_t>(le16(s));
                if (channels == 2) v = (v + static_cast<int16_t>(le16(s + 2))) / 2;
                out.samples[i] = static_cast<int16_t>(v);
            }
            return out;
        }
        pos = body + len + (len & 1);
    }
    return fail("no data chunk");
}

bool wav_write(const std::string& path, std::span<const int16_t> samples, int sample_rate, int channels) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    auto w32 = [&](uint32_t v) {
        uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
        std::fwrite(b, 1, 4, f);
    };
    auto w16 = [&](uint16_t v) {
        uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
        std::fwrite(b, 1, 2, f);
    };
    auto bytes = static_cast<uint32_t>(samples.size() * 2);
    std::fwrite("RIFF", 1, 4, f);
    w32(36 + bytes);
    std::fwrite("WAVEfmt ", 1, 8, f);
    w32(16);
    w16(1);
    w16(static_cast<uint16_t>(channels));
    w32(static_cast<uint32_t>(sample_rate));
    w32(static_cast<uint32_t>(sample_rate * channels * 2));
    w16(static_cast<uint16_t>(channels * 2));
    w16(16);
    std::fwrite("data", 1, 4, f);
    w32(bytes);
    for (int16_t s : samples) w16(static_cast<uint16_t>(s));
    return std::fclose(f) == 0;
}

std::vector<float> to_float(std::span<const int16_t> pcm) {
    std::vector<float> out(pcm.size());
    for (size_t i = 0; i < pcm.size(); ++i) out[i] = static_cast<float>(pcm[i]) / 32768.0f;
    return out;
}

}  // namespace parley::media
