// stt_bench — real-time factor of the embedded SpeechToText on jfk.wav, next to upstream whisper-cli on the
// same model, input and settings (greedy, no fallback, same threads). Prints a Markdown table.
//
//   stt_bench [--model M.bin] [--wav jfk.wav] [--threads 2] [--runs 3] [--cli build/bin/whisper-cli]
//
// Our time is transcribe()'s compute_ms (mel + encode + decode, model already loaded); whisper-cli's is its
// "total time" minus its "load time" from whisper_print_timings, the median of --runs runs each.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "media/wav.h"
#include "stt/stt.h"

namespace {

std::vector<float> read_wav(const std::string& path) {
    auto wav = parley::media::wav_read(path, nullptr);
    return wav ? parley::media::to_float(wav->samples) : std::vector<float>();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// whisper-cli's compute time (total - load) in ms, or a negative value when it could not run.
double run_cli(const std::string& cli, const std::string& model, const std::string& wav, int threads) {
    const std::string cmd = cli + " -m " + model + " -f " + wav + " -l en -t " + std::to_string(threads) +
                            " -bs 1 -bo 1 -nf 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    double total = -1, load = 0;
    std::array<char, 4096> line{};
    while (std::fgets(line.data(), line.size(), p)) {
        const char* s = line.data();
        if (const char* at = std::strstr(s, "total time ="); at) total = std::atof(at + 12);
        if (const char* at = std::strstr(s, "load time ="); at) load = std::atof(at + 11);
    }
    if (pclose(p) != 0 || total < 0) return -1;
    return total - load;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model = PARLEY_STT_BENCH_MODEL, wav = PARLEY_STT_BENCH_WAV, cli = PARLEY_STT_BENCH_CLI;
    int threads = 2, runs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--model") model = argv[i + 1];
        else if (a == "--wav") wav = argv[i + 1];
        else if (a == "--cli") cli = argv[i + 1];
        else if (a == "--threads") threads = std::atoi(argv[i + 1]);
        else if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "usage: stt_bench [--model M] [--wav W] [--cli C] [--threads N] [--runs N]\n");
            return 2;
        }
    }
    auto pcm = read_wav(wav);
    if (pcm.empty()) {
        std::fprintf(stderr, "stt_bench: %s: not a 16-bit PCM WAV\n", wav.c_str());
        return 1;
    }
    const double audio_s = static_cast<double>(pcm.size()) / 16000.0;

    parley::SttConfig c;
    c.model = model;
    c.workers = 1;
    c.threads = threads;
    std::string err;
    auto stt = parley::stt::create(c, &err);
    if (!stt) {
        std::fprintf(stderr, "stt_bench: %s\n", err.c_str());
        return 1;
    }
    std::vector<double> ours, theirs;
    std::string text;
    for (int i = 0; i < runs; ++i) {
        auto r = stt->transcribe(pcm, {}, parley::CancelToken{});
        if (!r.ok) {
            std::fprintf(stderr, "stt_bench: %s\n", r.error.c_str());
            return 1;
        }
        ours.push_back(r.compute_ms);
        text = r.text;
        double t = run_cli(cli, model, wav, threads);
        if (t >= 0) theirs.push_back(t);
    }
    const double o = median(ours), t = median(theirs);
    std::printf("model `%s`, %.1f s of audio, %d threads, median of %d runs\n\n", model.c_str(), audio_s, threads,
                runs);
    std::printf("| engine | compute ms | real-time factor |\n|---|---:|---:|\n");
    std::printf("| parley embedded (whisper_full_with_state) | %.1f | %.4f |\n", o, o / 1000.0 / audio_s);
    if (!theirs.empty()) {
        std::printf("| whisper-cli (total - load) | %.1f | %.4f |\n", t, t / 1000.0 / audio_s);
        std::printf("\nratio parley / whisper-cli: %.2f\n", o / t);
    } else {
        std::printf("| whisper-cli | n/a (could not run %s) | |\n", cli.c_str());
    }
    std::printf("text: %.120s\n", text.c_str());
    return 0;
}
