// whisper_model.cpp — a tiny whisper.cpp model (legacy ggml format) with random weights and GPT-2's vocabulary.
//
// The layout is exactly what whisper_model_load() in third_party/whisper.cpp/src/whisper.cpp reads:
//   u32 magic 0x67676d6c | i32 hparams x11 | mel filters (i32 n_mel, i32 n_fft, f32 data) |
//   i32 n_vocab, then per token (u32 len, bytes) | tensors until EOF:
//   (i32 n_dims, i32 name_len, i32 ttype, i32 ne[n_dims], name, data), no alignment padding.
// English-only (hparams n_vocab 51864): whisper derives eot 50256, sot 50257, ..., beg 50363 and the 1500
// timestamp tokens from n_vocab and names the ids past the file's vocabulary itself, exactly as it does for
// the real ggml-*.en.bin files, whose vocabulary is GPT-2's. The token strings come from llama.cpp's
// ggml-vocab-gpt-2.gguf, decoded from GPT-2's byte-to-unicode alphabet to raw bytes (as whisper's
// convert-pt-to-ggml.py does). The random numbers come from mt19937 + our own Box-Muller, so a seed gives
// the same bytes with any standard library.
#include <ggml.h>
#include <gguf.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "testmodels/testmodels.h"

namespace parley::testmodels {

namespace {

constexpr uint32_t kMagic = 0x67676d6c;  // "ggml" as whisper.cpp writes it (little-endian u32)

// Small but shaped like the real thing. n_audio_ctx is fixed by the 30 s window (3000 mel frames, conv
// stride 2); n_text_ctx 448 as in every released model; 80 mels as in all but large-v3.
struct Hparams {
    int32_t n_vocab = 51864;  // English-only
    int32_t n_audio_ctx = 1500;
    int32_t n_audio_state = 64;
    int32_t n_audio_head = 2;
    int32_t n_audio_layer = 2;
    int32_t n_text_ctx = 448;
    int32_t n_text_state = 64;
    int32_t n_text_head = 2;
    int32_t n_text_layer = 1;  // not 2: whisper treats 2 text layers as distil-whisper (forces no_timestamps)
    int32_t n_mels = 80;
    int32_t ftype = 1;  // mostly f16
};

constexpr int kFftBins = 201;  // n_fft/2 + 1 with whisper's 400-point FFT

// Where the GPT-2 vocabulary lives: $PARLEY_WHISPER_VOCAB, else the first ancestor of this executable (build
// trees live inside the repository) or of the working directory that holds third_party/llama.cpp.
std::string vocab_path() {
    if (const char* env = std::getenv("PARLEY_WHISPER_VOCAB"); env && *env) return env;
    const std::filesystem::path rel = "third_party/llama.cpp/models/ggml-vocab-gpt-2.gguf";
    std::error_code ec;
    for (auto start : {std::filesystem::read_symlink("/proc/self/exe", ec), std::filesystem::current_path(ec)}) {
        for (auto dir = start; !dir.empty(); dir = dir.parent_path()) {
            if (std::filesystem::exists(dir / rel, ec)) return (dir / rel).string();
            if (dir == dir.parent_path()) break;
        }
    }
    return rel.string();
}

// GPT-2's bytes_to_unicode(), inverted: code point -> byte.
std::map<uint32_t, uint8_t> byte_decoder() {
    std::map<uint32_t, uint8_t> dec;
    std::vector<bool> direct(256, false);
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
        if (direct[b]) dec[static_cast<uint32_t>(b)] = static_cast<uint8_t>(b);
        else dec[256 + n++] = static_cast<uint8_t>(b);
    }
    return dec;
}

std::string decode_token(const std::string& s, const std::map<uint32_t, uint8_t>& dec) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        uint32_t cp = c;
        size_t len = 1;
        if (c >= 0xF0) { cp = c & 0x07; len = 4; }
        else if (c >= 0xE0) { cp = c & 0x0F; len = 3; }
        else if (c >= 0xC0) { cp = c & 0x1F; len = 2; }
        if (i + len > s.size()) len = 1;
        for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        auto it = dec.find(cp);
        if (it != dec.end()) out.push_back(static_cast<char>(it->second));
        else out.append(s, i, len);  // not in the byte alphabet (special tokens): keep as written
        i += len;
    }
    return out;
}

bool read_vocab(const std::string& path, std::vector<std::string>* tokens, std::string* error) {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* ctx = gguf_init_from_file(path.c_str(), params);
    if (!ctx) {
        *error = path + ": cannot read the GPT-2 vocabulary (set PARLEY_WHISPER_VOCAB to ggml-vocab-gpt-2.gguf)";
        return false;
    }
    int64_t key = gguf_find_key(ctx, "tokenizer.ggml.tokens");
    if (key < 0 || gguf_get_kv_type(ctx, key) != GGUF_TYPE_ARRAY || gguf_get_arr_type(ctx, key) != GGUF_TYPE_STRING) {
        gguf_free(ctx);
        *error = path + ": no tokenizer.ggml.tokens string array";
        return false;
    }
    auto dec = byte_decoder();
    size_t n = gguf_get_arr_n(ctx, key);
    tokens->reserve(n);
    for (size_t i = 0; i < n; ++i) tokens->push_back(decode_token(gguf_get_arr_str(ctx, key, i), dec));
    gguf_free(ctx);
    return true;
}

class Writer {
public:
    Writer(FILE* f, uint32_t seed) : f_(f), rng_(seed) {}

    void i32(int32_t v) { std::fwrite(&v, sizeof v, 1, f_); }
    void u32(uint32_t v) { std::fwrite(&v, sizeof v, 1, f_); }
    void bytes(const void* p, size_t n) { std::fwrite(p, 1, n, f_); }
    void f32s(const std::vector<float>& v) { bytes(v.data(), v.size() * sizeof(float)); }

    // N(mean, stddev) from mt19937's raw 32-bit output, so the bytes do not depend on the standard
    // library's distribution implementation.
    float normal(float mean, float stddev) {
        double u1 = (static_cast<double>(rng_()) + 1.0) / 4294967297.0;
        double u2 = static_cast<double>(rng_()) / 4294967296.0;
        double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
        return static_cast<float>(mean + stddev * z);
    }

    // One tensor; ne in ggml order (ne[0] is the contiguous dimension). `mean` 1 for layer-norm gains.
    void tensor(const std::string& name, std::vector<int32_t> ne, ggml_type type, float mean = 0.0f,
                float stddev = 0.02f) {
        i32(static_cast<int32_t>(ne.size()));
        i32(static_cast<int32_t>(name.size()));
        i32(static_cast<int32_t>(type));
        size_t n = 1;
        for (int32_t d : ne) {
            i32(d);
            n *= static_cast<size_t>(d);
        }
        bytes(name.data(), name.size());
        if (type == GGML_TYPE_F32) {
            std::vector<float> v(n);
            for (auto& x : v) x = normal(mean, stddev);
            f32s(v);
        } else {
            std::vector<ggml_fp16_t> v(n);
            for (auto& x : v) x = ggml_fp32_to_fp16(normal(mean, stddev));
            bytes(v.data(), v.size() * sizeof(ggml_fp16_t));
        }
    }

    bool ok() const { return std::ferror(f_) == 0; }

private:
    FILE* f_;
    std::mt19937 rng_;
};

// Triangular filters on the mel scale between 0 and 8 kHz: the right size and a plausible shape.
std::vector<float> mel_filters(int n_mel) {
    auto hz_to_mel = [](double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); };
    auto mel_to_hz = [](double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); };
    std::vector<double> edges(n_mel + 2);
    for (int i = 0; i < n_mel + 2; ++i) edges[i] = mel_to_hz(hz_to_mel(8000.0) * i / (n_mel + 1));
    std::vector<float> f(static_cast<size_t>(n_mel) * kFftBins, 0.0f);
    for (int m = 0; m < n_mel; ++m) {
        for (int k = 0; k < kFftBins; ++k) {
            double hz = 8000.0 * k / (kFftBins - 1);
            double up = (hz - edges[m]) / (edges[m + 1] - edges[m]);
            double down = (edges[m + 2] - hz) / (edges[m + 2] - edges[m + 1]);
            double w = std::max(0.0, std::min(up, down));
            f[static_cast<size_t>(m) * kFftBins + k] = static_cast<float>(2.0 * w / (edges[m + 2] - edges[m]));
        }
    }
    return f;
}

void write_block(Writer& w, const std::string& p, int n, ggml_type wtype) {
    const float s = 1.0f / std::sqrt(static_cast<float>(n));  // keeps activations near unit variance
    w.tensor(p + "mlp_ln.weight", {n}, GGML_TYPE_F32, 1.0f);
    w.tensor(p + "mlp_ln.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "mlp.0.weight", {n, 4 * n}, wtype, 0.0f, s);
    w.tensor(p + "mlp.0.bias", {4 * n}, GGML_TYPE_F32);
    w.tensor(p + "mlp.2.weight", {4 * n, n}, wtype, 0.0f, s);
    w.tensor(p + "mlp.2.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "attn_ln.weight", {n}, GGML_TYPE_F32, 1.0f);
    w.tensor(p + "attn_ln.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "attn.query.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "attn.query.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "attn.key.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "attn.value.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "attn.value.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "attn.out.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "attn.out.bias", {n}, GGML_TYPE_F32);
}

void write_cross(Writer& w, const std::string& p, int n, ggml_type wtype) {
    const float s = 1.0f / std::sqrt(static_cast<float>(n));  // keeps activations near unit variance
    w.tensor(p + "cross_attn_ln.weight", {n}, GGML_TYPE_F32, 1.0f);
    w.tensor(p + "cross_attn_ln.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "cross_attn.query.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "cross_attn.query.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "cross_attn.key.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "cross_attn.value.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "cross_attn.value.bias", {n}, GGML_TYPE_F32);
    w.tensor(p + "cross_attn.out.weight", {n, n}, wtype, 0.0f, s);
    w.tensor(p + "cross_attn.out.bias", {n}, GGML_TYPE_F32);
}

}  // namespace

bool write_whisper_model(const std::string& out, const std::string& vocab_gguf, uint32_t seed, std::string* error,
                         const std::string& size) {
    std::string err_local;
    if (!error) error = &err_local;
    Hparams hp;
    if (size == "base.en") {  // ggml-base.en.bin: 512 wide, 8 heads, 6 + 6 layers
        hp.n_audio_state = hp.n_text_state = 512;
        hp.n_audio_head = hp.n_text_head = 8;
        hp.n_audio_layer = hp.n_text_layer = 6;
    } else if (size == "small.en") {  // ggml-small.en.bin: 768 wide, 12 heads, 12 + 12 layers
        hp.n_audio_state = hp.n_text_state = 768;
        hp.n_audio_head = hp.n_text_head = 12;
        hp.n_audio_layer = hp.n_text_layer = 12;
    } else if (size != "test") {
        *error = "whisper size: expected test, base.en or small.en, got \"" + size + "\"";
        return false;
    }
    std::vector<std::string> tokens;
    const std::string vpath = vocab_gguf.empty() ? vocab_path() : vocab_gguf;
    if (!read_vocab(vpath, &tokens, error)) return false;
    // Whisper's English vocabulary is GPT-2's 50257 tokens with <|endoftext|> (50256) as eot; the loader
    // names 50257..n_vocab-1 itself (sot, translate, ..., timestamps).
    if (tokens.size() != 50257) {
        *error = vpath + ": expected GPT-2's 50257 tokens, got " + std::to_string(tokens.size());
        return false;
    }

    FILE* f = std::fopen(out.c_str(), "wb");
    if (!f) {
        *error = out + ": cannot open for writing";
        return false;
    }
    Writer w(f, seed);
    w.u32(kMagic);
    for (int32_t v : {hp.n_vocab, hp.n_audio_ctx, hp.n_audio_state, hp.n_audio_head, hp.n_audio_layer,
                      hp.n_text_ctx, hp.n_text_state, hp.n_text_head, hp.n_text_layer, hp.n_mels, hp.ftype})
        w.i32(v);

    w.i32(hp.n_mels);
    w.i32(kFftBins);
    w.f32s(mel_filters(hp.n_mels));

    w.i32(static_cast<int32_t>(tokens.size()));
    for (const auto& t : tokens) {
        w.u32(static_cast<uint32_t>(t.size()));
        w.bytes(t.data(), t.size());
    }

    // Tensors: the types whisper_model_load() expects for ftype 1 (wtype = vtype = f16; norms, biases
    // and positional embeddings f32).
    const ggml_type wt = GGML_TYPE_F16;
    const int na = hp.n_audio_state, nt = hp.n_text_state;
    w.tensor("encoder.positional_embedding", {na, hp.n_audio_ctx}, GGML_TYPE_F32);
    w.tensor("encoder.conv1.weight", {3, hp.n_mels, na}, wt, 0.0f, 0.3f);
    w.tensor("encoder.conv1.bias", {1, na}, GGML_TYPE_F32);
    w.tensor("encoder.conv2.weight", {3, na, na}, wt, 0.0f, 0.3f);
    w.tensor("encoder.conv2.bias", {1, na}, GGML_TYPE_F32);
    w.tensor("encoder.ln_post.weight", {na}, GGML_TYPE_F32, 1.0f);
    w.tensor("encoder.ln_post.bias", {na}, GGML_TYPE_F32);
    for (int i = 0; i < hp.n_audio_layer; ++i)
        write_block(w, "encoder.blocks." + std::to_string(i) + ".", na, wt);

    w.tensor("decoder.positional_embedding", {nt, hp.n_text_ctx}, GGML_TYPE_F32);
    // Larger than the rest so the logits (embedding · hidden state) are not all alike.
    w.tensor("decoder.token_embedding.weight", {nt, hp.n_vocab}, wt, 0.0f, 0.3f);
    w.tensor("decoder.ln.weight", {nt}, GGML_TYPE_F32, 1.0f);
    w.tensor("decoder.ln.bias", {nt}, GGML_TYPE_F32);
    for (int i = 0; i < hp.n_text_layer; ++i) {
        const std::string p = "decoder.blocks." + std::to_string(i) + ".";
        write_block(w, p, nt, wt);
        write_cross(w, p, nt, wt);
    }

    bool ok = w.ok();
    if (std::fclose(f) != 0) ok = false;
    if (!ok) {
        *error = out + ": write failed";
        std::remove(out.c_str());
        return false;
    }
    return true;
}

}  // namespace parley::testmodels
