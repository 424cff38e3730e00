// llm_bench — the embedded LanguageModel against upstream llama-bench on the same GGUF, and its batched
// throughput with 1, 4 and 8 calls at once. Prints a Markdown table.
//
//   llm_bench [--model M.gguf] [--llama-bench PATH] [--threads N] [--prompt 256] [--gen 64]
//
// Ours: prompt t/s = prompt tokens / time to first token (template, tokenize and decode of the prompt,
// no system prompt so nothing is cached); generation t/s = (tokens - 1) / (total - first token).
// Upstream: llama-bench -p PROMPT -n GEN -fa 0 (pp and tg measured separately, averaged over 3 runs;
// without flash attention, as our engine runs).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "llm/llm.h"
#include "tests/support/run_capture.h"

using parley::CancelToken;
using namespace parley::llm;

namespace {

using parley::testsupport::run_capture;

std::vector<std::string> split_csv(const std::string& line) {
    std::vector<std::string> f;
    std::string cur;
    bool quoted = false;
    for (char c : line) {
        if (c == '"')
            quoted = !quoted;
        else if (c == ',' && !quoted)
            f.push_back(cur), cur.clear();
        else
            cur += c;
    }
    f.push_back(cur);
    return f;
}

// llama-bench -o csv: one row per test; n_prompt/n_gen say which, avg_ts is tokens/s.
void upstream(const std::string& bench, const std::string& model, int threads, int pp, int tg, double* pp_ts,
              double* tg_ts) {
    const std::string cmd =
        bench + " -m '" + model + "' -p " + std::to_string(pp) + " -n " + std::to_string(tg) + " -t " +
        std::to_string(threads) +
        " -r 3 -fa 0 -o csv 2>/dev/null";  // -fa 0: like our engine (see llama_engine.cpp)
    std::istringstream in(run_capture(cmd));
    std::string line;
    std::vector<std::string> head;
    while (std::getline(in, line)) {
        auto f = split_csv(line);
        if (head.empty()) {
            head = f;
            continue;
        }
        auto col = [&](const char* name) -> std::string {
            for (size_t i = 0; i < head.size() && i < f.size(); ++i) {
                if (head[i] == name) return f[i];
            }
            return "";
        };
        const double ts = std::atof(col("avg_ts").c_str());
        if (std::atoi(col("n_prompt").c_str()) > 0) *pp_ts = ts;
        if (std::atoi(col("n_gen").c_str()) > 0) *tg_ts = ts;
    }
}

Sampling greedy(int n) {
    Sampling s;
    s.temperature = 0;
    s.max_tokens = n;
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model = PARLEY_LLM_BENCH_MODEL, bench = PARLEY_LLAMA_BENCH;
    int threads = 2, pp = 256, tg = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--model")
            model = v;
        else if (a == "--llama-bench")
            bench = v;
        else if (a == "--threads")
            threads = std::atoi(v.c_str());
        else if (a == "--prompt")
            pp = std::atoi(v.c_str());
        else if (a == "--gen")
            tg = std::atoi(v.c_str());
        else {
            std::fprintf(
                stderr,
                "usage: llm_bench [--model M] [--llama-bench P] [--threads N] [--prompt N] [--gen N]\n");
            return 2;
        }
    }
    parley::LlmConfig c;
    c.model = model;
    c.system_prompt = "";
    c.context = 4096;
    c.max_sequences = 8;
    c.threads = threads;
    std::string err;
    auto llm = create(c, &err);
    if (!llm) {
        std::fprintf(stderr, "llm_bench: %s\n", err.c_str());
        return 1;
    }

    // A user message of about `pp` tokens (the template adds a few).
    const char* vocab[] = {" the", " cat", " sat", " on", " a", " mat", " and", " then"};  // one token each
    std::string words;
    for (int i = 0; i < pp; ++i) words += vocab[i % 8];
    double our_pp = 0, our_tg = 0;
    const int reps = 3;
    for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (first-decode allocations), like llama-bench's
        auto chat = llm->open();
        Sampling s = greedy(tg);
        Reply rep = chat->reply({{"user", words}}, nullptr, CancelToken{}, &s);
        if (!rep.ok) {
            std::fprintf(stderr, "llm_bench: %s\n", rep.error.c_str());
            return 1;
        }
        if (r < 0) continue;
        our_pp += rep.prompt_tokens / (rep.first_token_ms / 1000.0) / reps;
        our_tg += (rep.generated_tokens - 1) / ((rep.total_ms - rep.first_token_ms) / 1000.0) / reps;
    }
    double up_pp = 0, up_tg = 0;
    upstream(bench, model, threads, pp, tg, &up_pp, &up_tg);

    std::printf("\n%s\n\n", llm->describe().c_str());
    std::printf("| test | parley t/s | llama-bench t/s | ratio |\n|---|---:|---:|---:|\n");
    std::printf("| prompt (pp%d) | %.0f | %.0f | %.2f |\n", pp, our_pp, up_pp,
                up_pp > 0 ? our_pp / up_pp : 0.0);
    std::printf("| generation (tg%d) | %.0f | %.0f | %.2f |\n", tg, our_tg, up_tg,
                up_tg > 0 ? our_tg / up_tg : 0.0);

    std::printf(
        "\n| concurrent calls | tokens | wall ms | total t/s | per call t/s |\n|---:|---:|---:|---:|---:|\n");
    for (int calls : {1, 4, 8}) {
        std::vector<Reply> replies(static_cast<size_t>(calls));
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> ts;
        for (int i = 0; i < calls; ++i) {
            ts.emplace_back([&, i] {
                auto chat = llm->open();
                Sampling s = greedy(tg);
                replies[size_t(i)] = chat->reply({{"user", "Call " + std::to_string(i) + " says hello."}},
                                                 nullptr, CancelToken{}, &s);
            });
        }
        for (auto& t : ts) t.join();
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        int tokens = 0;
        for (const auto& r : replies) tokens += r.generated_tokens;
        std::printf("| %d | %d | %.0f | %.0f | %.0f |\n", calls, tokens, ms, tokens / (ms / 1000.0),
                    tokens / (ms / 1000.0) / calls);
    }
    return 0;
}
