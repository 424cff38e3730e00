// parley-testmodels — writes tiny random-weight models so the real whisper.cpp and llama.cpp loading and
// inference code runs in tests and in `make run` on a machine without real models. Their output is
// meaningless text; what matters is that ours equals upstream's on the same model.
//
//   parley-testmodels whisper OUT.bin [--vocab third_party/llama.cpp/models/ggml-vocab-gpt-2.gguf] [--seed N]
//                     [--size test|base.en|small.en]
//   parley-testmodels llama OUT.gguf --vocab third_party/llama.cpp/models/ggml-vocab-llama-bpe.gguf [--seed N]
#include <CLI/CLI.hpp>

#include <cstdio>

#include "testmodels/testmodels.h"

int main(int argc, char** argv) {
    CLI::App app{"Write tiny random-weight whisper/llama models for tests"};
    app.require_subcommand(1);
    std::string out, vocab;
    unsigned seed = 42;
    auto* w = app.add_subcommand("whisper", "a whisper.cpp ggml model");
    w->add_option("out", out, "output file")->required();
    w->add_option("--vocab", vocab, "GPT-2 vocab GGUF (default: found relative to the repository)");
    w->add_option("--seed", seed, "random seed");
    std::string size = "test";
    w->add_option("--size", size, "test (tiny), or the real dimensions of base.en or small.en (for make bench)");
    auto* l = app.add_subcommand("llama", "a llama-architecture GGUF with a real vocabulary");
    l->add_option("out", out, "output file")->required();
    l->add_option("--vocab", vocab, "a vocab-only GGUF from llama.cpp's models/")->required();
    l->add_option("--seed", seed, "random seed");
    CLI11_PARSE(app, argc, argv);
    std::string err;
    bool ok = *w ? parley::testmodels::write_whisper_model(out, vocab, seed, &err, size)
                 : parley::testmodels::write_llama_model(out, vocab, seed, &err);
    if (!ok) {
        std::fprintf(stderr, "parley-testmodels: %s\n", err.c_str());
        return 1;
    }
    std::printf("%s\n", out.c_str());
    return 0;
}
