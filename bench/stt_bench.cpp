// stt_bench — real-time factor of the embedded SpeechToText on jfk.wav, next to upstream whisper-cli on the
// same model, input and settings (greedy, no fallback, same threads). Prints a Markdown table.
//
//   stt_bench [--model M.bin] [--wav jfk.wav] [--seconds 3] [--threads 2] [--runs 3] [--cli build/bin/whisper-cli]
//
// "encoder ms": ours is Transcript::encode_ms (encoder start to the first token's logits: the encoder plus one
// decoder pass), whisper-cli's its "encode time". "compute ms" includes decoding every token: a random-weight
// model never writes end-of-text and decodes ~220 tokens where a real one writes ~10 for a 3 s turn, so at
// real size with random weights only the encoder column means what a real model would cost.
// Each engine runs twice: with whisper's full 30 s encoder window and with the window fitted to the audio
// (stt.fit_window, the default; whisper-cli gets the same size with -ac).
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

#include <unistd.h>

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

// whisper-cli's compute time (total - load) in ms, or a negative value when it could not run; its encoder
// time in *encode_ms.
double run_cli(double* encode_ms, const std::string& cli, const std::string& model, const std::string& wav, int threads,
               int audio_ctx) {
    const std::string cmd = cli + " -m " + model + " -f " + wav + " -l en -t " + std::to_string(threads) +
                            " -bs 1 -bo 1 -nf" + (audio_ctx > 0 ? " -ac " + std::to_string(audio_ctx) : "") +
                            " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    double total = -1, load = 0;
    *encode_ms = 0;
    std::array<char, 4096> line{};
    while (std::fgets(line.data(), line.size(), p)) {
        const char* s = line.data();
        if (const char* at = std::strstr(s, "total time ="); at) total = std::atof(at + 12);
        if (const char* at = std::strstr(s, "load time ="); at) load = std::atof(at + 11);
        if (const char* at = std::strstr(s, "encode time ="); at) *encode_ms = std::atof(at + 13);
    }
    if (pclose(p) != 0 || total < 0) return -1;
    return total - load;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model = PARLEY_STT_BENCH_MODEL, wav = PARLEY_STT_BENCH_WAV, cli = PARLEY_STT_BENCH_CLI;
    int threads = 2, runs = 3;
    double seconds = 0;  // 0: the whole file; else its first N seconds (a turn-sized utterance)
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--model") model = argv[i + 1];
        else if (a == "--wav") wav = argv[i + 1];
        else if (a == "--cli") cli = argv[i + 1];
        else if (a == "--threads") threads = std::atoi(argv[i + 1]);
        else if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
        else {
            std::fprintf(stderr,
                         "usage: stt_bench [--model M] [--wav W] [--seconds S] [--cli C] [--threads N] [--runs N]\n");
            return 2;
        }
    }
    auto pcm = read_wav(wav);
    if (pcm.empty()) {
        std::fprintf(stderr, "stt_bench: %s: not a 16-bit PCM WAV\n", wav.c_str());
        return 1;
    }
    if (seconds > 0 && static_cast<size_t>(seconds * 16000) < pcm.size()) {
        // whisper-cli gets the same samples in a file of their own.
        auto full = parley::media::wav_read(wav, nullptr);
        pcm.resize(static_cast<size_t>(seconds * 16000));
        std::vector<int16_t> cut(full->samples.begin(), full->samples.begin() + static_cast<long>(pcm.size()));
        wav = "/tmp/stt_bench-" + std::to_string(getpid()) + ".wav";
        if (!parley::media::wav_write(wav, cut, 16000)) {
            std::fprintf(stderr, "stt_bench: cannot write %s\n", wav.c_str());
            return 1;
        }
    }
    const double audio_s = static_cast<double>(pcm.size()) / 16000.0;
    const int ac = parley::stt::fitted_audio_ctx(pcm.size());

    std::printf("model `%s`, %.1f s of audio, %d threads, median of %d runs\n\n", model.c_str(), audio_s, threads,
                runs);
    std::printf("| engine | encoder window | encoder ms | compute ms (all tokens) | real-time factor |\n"
                "|---|---|---:|---:|---:|\n");
    std::string text;
    for (bool fit : {false, true}) {
        parley::SttConfig c;
        c.model = model;
        c.workers = 1;
        c.threads = threads;
        c.fit_window = fit;
        std::string err;
        auto stt = parley::stt::create(c, &err);
        if (!stt) {
            std::fprintf(stderr, "stt_bench: %s\n", err.c_str());
            return 1;
        }
        std::vector<double> ours, theirs, ours_enc, theirs_enc;
        for (int i = 0; i < runs; ++i) {
            auto r = stt->transcribe(pcm, {}, parley::CancelToken{});
            if (!r.ok) {
                std::fprintf(stderr, "stt_bench: %s\n", r.error.c_str());
                return 1;
            }
            ours.push_back(r.compute_ms);
            ours_enc.push_back(r.encode_ms);
            text = r.text;
            double enc = 0;
            double t = run_cli(&enc, cli, model, wav, threads, fit ? ac : 0);
            if (t >= 0) {
                theirs.push_back(t);
                theirs_enc.push_back(enc);
            }
        }
        const double o = median(ours), t = median(theirs);
        const std::string window = fit && ac > 0 ? "fitted, audio_ctx " + std::to_string(ac) : "full 30 s (1500)";
        const double oe = median(ours_enc), te = median(theirs_enc);
        std::printf("| parley embedded (stt.fit_window = %s) | %s | %.1f | %.1f | %.4f |\n", fit ? "true" : "false",
                    window.c_str(), oe, o, o / 1000.0 / audio_s);
        if (!theirs.empty())
            std::printf("| whisper-cli%s | %s | %.1f | %.1f | %.4f |\n",
                        fit && ac > 0 ? (" -ac " + std::to_string(ac)).c_str() : "", window.c_str(), te, t,
                        t / 1000.0 / audio_s);
        else
            std::printf("| whisper-cli | n/a (could not run %s) | | | |\n", cli.c_str());
        if (!theirs.empty()) std::printf("| ratio parley / whisper-cli | | %.2f | %.2f | |\n", oe / te, o / t);
    }
    std::printf("\ntext: %.120s\n", text.c_str());
    if (wav.rfind("/tmp/stt_bench-", 0) == 0) std::remove(wav.c_str());
    return 0;
}
