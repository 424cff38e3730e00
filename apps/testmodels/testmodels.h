// testmodels.h — writers of tiny random-weight models (see main.cpp).
#pragma once
#include <cstdint>
#include <string>
namespace parley::testmodels {
// whisper_model.cpp: a valid whisper.cpp ggml model with random weights and a real token vocabulary
// (GPT-2's, from llama.cpp's models/ggml-vocab-gpt-2.gguf; empty = found relative to the repository).
// `size`: "test" (tiny, for the tests), or the real dimensions (and F16 weights, as released) of "base.en" or
// "small.en": random weights that cost exactly the compute of the real model (make bench).
bool write_whisper_model(const std::string& out, const std::string& vocab_gguf, uint32_t seed, std::string* error,
                         const std::string& size = "test");
// llama_model.cpp: a llama-architecture GGUF with random weights, the vocabulary (and tokenizer
// metadata) copied from `vocab_gguf`, and a chat template.
bool write_llama_model(const std::string& out, const std::string& vocab_gguf, uint32_t seed, std::string* error);
}  // namespace parley::testmodels
