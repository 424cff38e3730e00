// llama_model.cpp — a tiny llama-architecture GGUF with random weights and a real vocabulary.
//
// Written with the public gguf API only (test-llama-archs.cpp uses llama.cpp's internal model saver):
// the tokenizer KVs are copied from a vocab-only GGUF of llama.cpp's models/, the llama hyperparameters
// and tensors are ours. Shapes follow src/models/llama.cpp (load_arch_tensors); ggml's ne[0] is the
// input dimension of a weight. The same seed gives byte-identical files (own PRNG, no std distributions,
// whose output differs between standard libraries).
#include <ggml.h>
#include <gguf.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "testmodels/testmodels.h"

namespace parley::testmodels {
namespace {

constexpr uint32_t kEmbd = 64;
constexpr uint32_t kLayers = 2;
constexpr uint32_t kFf = 128;
constexpr uint32_t kHeads = 4;
constexpr uint32_t kHeadsKv = 2;  // grouped-query attention, like real llama models
constexpr uint32_t kHeadDim = kEmbd / kHeads;
constexpr uint32_t kTrainCtx = 8192;

// A ChatML template (llama_chat_apply_template recognises it by "<|im_start|>"), used only when the
// vocabulary brings none.
constexpr const char* kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
    "endif %}";

// splitmix64 + Box-Muller: deterministic on every platform.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return (double(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
    float normal(float stdev) {
        const double u1 = uniform(), u2 = uniform();
        return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) * stdev);
    }

private:
    uint64_t state_;
};

struct GgufFree {
    void operator()(gguf_context* c) const { gguf_free(c); }
};
struct GgmlFree {
    void operator()(ggml_context* c) const { ggml_free(c); }
};

}  // namespace

bool write_llama_model(const std::string& out, const std::string& vocab_gguf, uint32_t seed,
                       std::string* error) {
    auto fail = [&](const std::string& msg) {
        if (error) *error = msg;
        return false;
    };
    gguf_init_params vp{/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> vocab(gguf_init_from_file(vocab_gguf.c_str(), vp));
    if (!vocab) return fail("cannot read vocab GGUF " + vocab_gguf);
    const int64_t tokens_key = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
    if (tokens_key < 0) return fail(vocab_gguf + ": no tokenizer.ggml.tokens");
    const auto n_vocab = uint32_t(gguf_get_arr_n(vocab.get(), tokens_key));

    std::unique_ptr<gguf_context, GgufFree> g(gguf_init_empty());
    gguf_set_kv(g.get(), vocab.get());
    // Keep only the tokenizer: the vocab file's general.* / <arch>.* keys describe another model.
    std::vector<std::string> drop;
    for (int64_t i = 0; i < gguf_get_n_kv(g.get()); ++i) {
        std::string key = gguf_get_key(g.get(), i);
        if (key.rfind("tokenizer.", 0) != 0) drop.push_back(key);
    }
    for (const auto& key : drop) gguf_remove_key(g.get(), key.c_str());
    if (gguf_find_key(g.get(), "tokenizer.chat_template") < 0) {
        gguf_set_val_str(g.get(), "tokenizer.chat_template", kChatMl);
    }

    gguf_set_val_str(g.get(), "general.architecture", "llama");
    gguf_set_val_str(g.get(), "general.name", "parley-tiny-random");
    gguf_set_val_u32(g.get(), "general.alignment", 32);
    gguf_set_val_u32(g.get(), "llama.vocab_size", n_vocab);
    gguf_set_val_u32(g.get(), "llama.context_length", kTrainCtx);
    gguf_set_val_u32(g.get(), "llama.embedding_length", kEmbd);
    gguf_set_val_u32(g.get(), "llama.block_count", kLayers);
    gguf_set_val_u32(g.get(), "llama.feed_forward_length", kFf);
    gguf_set_val_u32(g.get(), "llama.attention.head_count", kHeads);
    gguf_set_val_u32(g.get(), "llama.attention.head_count_kv", kHeadsKv);
    gguf_set_val_u32(g.get(), "llama.rope.dimension_count", kHeadDim);
    gguf_set_val_f32(g.get(), "llama.rope.freq_base", 10000.0f);
    gguf_set_val_f32(g.get(), "llama.attention.layer_norm_rms_epsilon", 1e-5f);

    struct Spec {
        std::string name;
        int64_t ne0, ne1;  // ne1 = 0: a vector
        ggml_type type;
        float stdev;  // 0: all ones (norm weights)
    };
    // The two vocab-sized matrices are most of the file. The output projection is Q4_0, like real models'
    // weights, so that ggml's CPU backend repacks it and multiplies a batch of tokens as one GEMM (an f16
    // one is a dot product per row and token: batching would gain nothing and the tests could not see it
    // work). Its large spread gives greedy decoding clear winners: equal text across batch shapes needs
    // logit gaps far above rounding differences.
    std::vector<Spec> specs = {
        {"token_embd.weight", kEmbd, n_vocab, GGML_TYPE_F16, 1.0f},
        {"output_norm.weight", kEmbd, 0, GGML_TYPE_F32, 0.0f},
        {"output.weight", kEmbd, n_vocab, GGML_TYPE_Q4_0, 0.5f},
    };
    for (uint32_t l = 0; l < kLayers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        specs.push_back({p + "attn_norm.weight", kEmbd, 0, GGML_TYPE_F32, 0.0f});
        specs.push_back({p + "attn_q.weight", kEmbd, kEmbd, GGML_TYPE_F32, 0.2f});
        specs.push_back({p + "attn_k.weight", kEmbd, kHeadDim * kHeadsKv, GGML_TYPE_F32, 0.2f});
        specs.push_back({p + "attn_v.weight", kEmbd, kHeadDim * kHeadsKv, GGML_TYPE_F32, 0.2f});
        specs.push_back({p + "attn_output.weight", kEmbd, kEmbd, GGML_TYPE_F32, 0.1f});
        specs.push_back({p + "ffn_norm.weight", kEmbd, 0, GGML_TYPE_F32, 0.0f});
        specs.push_back({p + "ffn_gate.weight", kEmbd, kFf, GGML_TYPE_F32, 0.1f});
        specs.push_back({p + "ffn_down.weight", kFf, kEmbd, GGML_TYPE_F32, 0.1f});
        specs.push_back({p + "ffn_up.weight", kEmbd, kFf, GGML_TYPE_F32, 0.1f});
    }

    size_t bytes = 0;
    for (const auto& s : specs) {
        bytes += ggml_row_size(s.type, s.ne0) * size_t(s.ne1 ? s.ne1 : 1) + 256;
    }
    ggml_init_params ip{bytes + specs.size() * ggml_tensor_overhead() + 4096, nullptr, /*no_alloc=*/false};
    std::unique_ptr<ggml_context, GgmlFree> ctx(ggml_init(ip));
    if (!ctx) return fail("out of memory for the model tensors");

    Rng rng(0x5041524C4559ull ^ (uint64_t(seed) * 0x9E3779B97F4A7C15ull));
    for (const auto& s : specs) {
        ggml_tensor* t = s.ne1 ? ggml_new_tensor_2d(ctx.get(), s.type, s.ne0, s.ne1)
                               : ggml_new_tensor_1d(ctx.get(), s.type, s.ne0);
        ggml_set_name(t, s.name.c_str());
        const int64_t n = ggml_nelements(t);
        if (s.type == GGML_TYPE_F32) {
            auto* d = static_cast<float*>(t->data);
            for (int64_t i = 0; i < n; ++i) d[i] = s.stdev == 0.0f ? 1.0f : rng.normal(s.stdev);
        } else if (s.type == GGML_TYPE_Q4_0) {
            std::vector<float> f(static_cast<size_t>(n));
            for (auto& v : f) v = rng.normal(s.stdev);
            ggml_quantize_chunk(s.type, f.data(), t->data, 0, s.ne1, s.ne0, nullptr);
        } else {
            auto* d = static_cast<ggml_fp16_t*>(t->data);
            for (int64_t i = 0; i < n; ++i)
                d[i] = ggml_fp32_to_fp16(s.stdev == 0.0f ? 1.0f : rng.normal(s.stdev));
        }
        gguf_add_tensor(g.get(), t);
    }
    if (!gguf_write_to_file(g.get(), out.c_str(), /*only_meta=*/false)) return fail("cannot write " + out);
    return true;
}

}  // namespace parley::testmodels
