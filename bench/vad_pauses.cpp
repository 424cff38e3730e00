// vad_pauses — the pause statistics behind the conversation handler's turn-taking constants
// (agent.end_of_turn_short_ms, end_of_turn_long_ms, min_speech_ms, barge_in_min_ms; docs/conversation.md).
//
//   build-h-bench/bin/vad_pauses --vad third_party/models/silero-v6.2.0-ggml.bin [--json out.json]
//                                [--wav a.wav --wav b.wav ...]     # also measure real recordings
//
// It runs the same streaming Silero VAD the call path runs (20 ms frames of 16 kHz, one probability per
// 32 ms window, threshold 0.5 with 0.15 hysteresis) over speech made like a caller's: espeak-ng (the
// embedded TTS engine) at 22.05 kHz → 8 kHz → G.711 µ-law → 16 kHz. The corpus is synthetic: sentences with
// commas, multi-sentence turns, "um"/"and" hesitations with explicit silence spliced in (300–1200 ms),
// short words (backchannels, one-word answers), and non-speech bursts (noise, tone). It prints, per kind:
//   * the silence gaps *inside* an utterance as the VAD sees them (what a short / long pause threshold
//     would fire on mid-turn),
//   * what each choice of threshold costs: speculative transcriptions per utterance (short pause) and
//     turns cut mid-utterance (long pause),
//   * speech-run lengths of short words and of non-speech (min_speech_ms, barge_in_min_ms),
//   * how far the VAD's last speech window lies from the true end of the audio energy.
// Synthetic speech is a proxy: espeak's pauses are regular and it never hesitates by itself.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/cancel.h"
#include "common/config.h"
#include "common/log.h"
#include "agent/speech_gate.h"
#include "media/codec.h"
#include "media/resampler.h"
#include "media/wav.h"
#include "stt/stt.h"
#include "tts/tts.h"

using namespace parley;

namespace {

constexpr int kRate = 16000;
constexpr int kWindowMs = agent::kVadWindowMs, kFrame = 320;
// The handler's own rule at its default threshold (src/agent/speech_gate.h), not a copy of it.
const double kThreshold = AgentConfig{}.vad_threshold;

// One item of the corpus: text pieces with explicit silences between them.
struct Piece {
    std::string text;  // spoken (empty: silence)
    int gap_ms = 0;
};
struct Item {
    std::string kind;
    std::vector<Piece> pieces;
    std::string label;
};

// Any-rate PCM → 8 kHz µ-law → 16 kHz, as a caller's audio reaches Parley's VAD.
std::vector<int16_t> phone_line(const std::vector<int16_t>& pcm, int rate) {
    std::vector<int16_t> n8, out;
    media::Resampler down(rate, 8000), up(8000, kRate);
    down.process(pcm, n8);
    // G.711 µ-law encode + decode: the phone line's quantisation, with the codec calls use.
    auto enc = media::make_encoder(media::CodecId::kPcmu);
    auto dec = media::make_decoder(media::CodecId::kPcmu);
    std::vector<uint8_t> ulaw(n8.size());
    ulaw.resize(enc->encode(n8, ulaw));
    n8.resize(dec->decode(ulaw, n8));
    up.process(n8, out);
    return out;
}

struct Runs {
    std::vector<int> speech_ms;  // lengths of speech runs
    std::vector<int> gaps_ms;    // silences between two speech runs
    int first_ms = -1, last_end_ms = -1;  // first speech window start, last speech window end
};

Runs vad_runs(stt::Vad& vad, const std::vector<int16_t>& pcm, bool hysteresis) {
    vad.reset_stream();
    std::vector<float> probs, f(kFrame);
    for (size_t i = 0; i + kFrame <= pcm.size(); i += kFrame) {
        for (int k = 0; k < kFrame; ++k) f[static_cast<size_t>(k)] = static_cast<float>(pcm[i + static_cast<size_t>(k)]) / 32768.0f;
        vad.stream(f, probs);
    }
    Runs r;
    agent::SpeechGate gate(kThreshold, hysteresis);
    bool was = false;
    int run = 0, gap = 0;
    for (size_t w = 0; w < probs.size(); ++w) {
        float p = probs[w];
        bool speech = gate.window(p);
        if (speech) {
            if (r.first_ms < 0) r.first_ms = static_cast<int>(w) * kWindowMs;
            if (!was && run == 0 && r.last_end_ms >= 0) r.gaps_ms.push_back(gap);
            run += kWindowMs;
            gap = 0;
            r.last_end_ms = static_cast<int>(w + 1) * kWindowMs;
        } else {
            if (was) r.speech_ms.push_back(run);
            run = 0;
            gap += kWindowMs;
        }
        was = speech;
    }
    if (run > 0) r.speech_ms.push_back(run);
    return r;
}

// True end of the energy (ms): last 10 ms frame above -45 dBFS.
int energy_end_ms(const std::vector<int16_t>& pcm) {
    const size_t n = kRate / 100;
    int end = -1;
    for (size_t i = 0; i + n <= pcm.size(); i += n) {
        double e = 0;
        for (size_t k = 0; k < n; ++k) e += static_cast<double>(pcm[i + k]) * pcm[i + k];
        double dbfs = 10 * std::log10(e / n / (32768.0 * 32768.0) + 1e-12);
        if (dbfs > -45) end = static_cast<int>((i + n) * 1000 / kRate);
    }
    return end;
}

double pct(std::vector<int> v, double q) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(std::min<double>(v.size() - 1, std::floor(q * (v.size() - 1) + 0.5)));
    return v[i];
}

std::vector<Item> corpus() {
    std::vector<Item> items;
    // Sentences with commas / clause pauses (one utterance each).
    for (const char* s : {
             "Well, I was thinking, maybe tomorrow, around noon, if that works for you.",
             "My name is Anna, that is A, N, N, A, and my number is five five five, one two three four.",
             "Yes, I ordered it last week, on Monday, and it still has not arrived.",
             "So, the problem is, when I turn it on, the screen stays black.",
             "I need a table for four, at seven, on Friday, near the window if possible.",
             "First, I want to check my balance; second, I would like to change my address.",
             "Hi, I am calling about the invoice, the one from March, which looks wrong to me.",
             "Okay, so, let me see, I think the reference is, uh, B as in Bravo, seven, two.",
             "If it rains tomorrow, can we move the appointment to Thursday, or maybe Friday?",
             "The parcel, which was supposed to come yesterday, is still not here.",
             "Sure, that is fine, thank you, I will wait for the email.",
             "Honestly, I do not know, but my wife said, call them, so here I am.",
         })
        items.push_back({"commas", {{s, 0}}, s});
    // Two or three sentences in one turn: the sentence-end pause is inside the turn.
    for (const char* s : {
             "Hi there. I would like to book a table for tonight.",
             "I got your letter. It says I owe money. I already paid.",
             "That is not right. I never ordered this. Please cancel it.",
             "Thanks. Can you also tell me the opening hours?",
             "Good morning. I have a question about my bill.",
             "No. The other one. The blue one, not the red one.",
             "It is broken. It was broken when it arrived. I want a refund.",
             "Hello? Can you hear me? The line is bad.",
             "I see. And how long will that take?",
             "Great. One more thing. Do you deliver on Sundays?",
         })
        items.push_back({"sentences", {{s, 0}}, s});
    // Plain sentences with no punctuation inside (gaps only at stops and word boundaries).
    for (const char* s : {
             "I would like to speak to someone about my account please",
             "can you tell me when the next bus to the airport leaves",
             "my internet has been down since yesterday afternoon",
             "I want to change the delivery address for my order",
             "what time does the pharmacy on the main street close today",
             "please send me a copy of the contract by email",
             "the heating in our apartment stopped working last night",
             "could you check if my prescription is ready for pickup",
         })
        items.push_back({"plain", {{s, 0}}, s});
    // Hesitations: a piece that trails off ("um", "and", "to"), an explicit silence, the rest.
    const std::vector<std::pair<std::string, std::string>> hes = {
        {"I would like to, um", "change my booking"},
        {"my account number is", "four four seven nine"},
        {"I need a taxi to", "the central station"},
        {"we are three adults and", "two children"},
        {"the problem started on, uh", "Tuesday I think"},
        {"can you put me through to", "the billing department"},
        {"I am looking for, hmm", "a blue jacket in medium"},
        {"it costs about", "forty dollars"},
    };
    for (int gap : {300, 500, 700, 900, 1200})
        for (auto& [a, b] : hes) items.push_back({fmt::format("hesitation_{}ms", gap), {{a, 0}, {"", gap}, {b, 0}}, a + " … " + b});
    // Short words: backchannels and one-word answers (min_speech_ms, barge_in_min_ms).
    for (const char* s : {"yes", "no", "ok", "yeah", "uh-huh", "mm-hmm", "right", "sure", "hi", "stop", "wait", "what?",
                          "sorry?", "two", "eight"})
        items.push_back({"short_word", {{s, 0}}, s});
    return items;
}

}  // namespace

int main(int argc, char** argv) {
    std::string vad_model = "third_party/models/silero-v6.2.0-ggml.bin", json_path;
    std::vector<std::string> wavs;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--vad" && i + 1 < argc) vad_model = argv[++i];
        else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (a == "--wav" && i + 1 < argc) wavs.push_back(argv[++i]);
        else {
            fmt::print(stderr, "usage: vad_pauses [--vad silero.bin] [--json out.json] [--wav file.wav ...]\n");
            return 2;
        }
    }
    log_init("warn");
    std::string err;
    auto vad = stt::create_vad(vad_model, &err);
    if (!vad) {
        fmt::print(stderr, "vad: {}\n", err);
        return 1;
    }

    // Utterances: (kind, label, 16 kHz pcm with 300 ms of silence before and 1.5 s after).
    struct Utt {
        std::string kind, label, voice;
        std::vector<int16_t> pcm;
    };
    std::vector<Utt> utts;
    const std::vector<std::pair<std::string, int>> voices = {{"en-us", 150}, {"en-us", 185}, {"en", 165}};
    for (auto& [voice, wpm] : voices) {
        TtsConfig tc;
        tc.voice = voice;
        tc.rate_wpm = wpm;
        auto tts = tts::create(tc, &err);
        if (!tts) {
            fmt::print(stderr, "tts: {}\n", err);
            return 1;
        }
        for (auto& item : corpus()) {
            std::vector<int16_t> src;
            int rate = tts->sample_rate();
            for (auto& p : item.pieces) {
                if (p.text.empty()) {
                    src.insert(src.end(), static_cast<size_t>(p.gap_ms) * static_cast<size_t>(rate) / 1000, 0);
                    continue;
                }
                std::vector<int16_t> pcm;
                auto r = tts->synthesize(
                    p.text,
                    [&](std::span<const int16_t> s, int rr) {
                        rate = rr;
                        pcm.insert(pcm.end(), s.begin(), s.end());
                        return true;
                    },
                    CancelToken());
                if (!r.ok) {
                    fmt::print(stderr, "tts \"{}\": {}\n", p.text, r.error);
                    return 1;
                }
                // espeak pads each synthesis with silence; trim it so spliced gaps are exactly what we say.
                auto loud = [](int16_t s) { return std::abs(static_cast<int>(s)) > 200; };
                auto b = std::find_if(pcm.begin(), pcm.end(), loud);
                auto e = std::find_if(pcm.rbegin(), pcm.rend(), loud).base();
                if (b < e) src.insert(src.end(), b, e);
            }
            std::vector<int16_t> full(static_cast<size_t>(rate) * 3 / 10, 0);
            full.insert(full.end(), src.begin(), src.end());
            full.insert(full.end(), static_cast<size_t>(rate) * 3 / 2, 0);
            utts.push_back({item.kind, item.label, fmt::format("{}@{}", voice, wpm), phone_line(full, rate)});
        }
    }
    // Non-speech: white noise bursts and a tone, at a loud -20 dBFS, on the same line.
    std::mt19937 rng(1);
    for (int ms : {40, 80, 120, 200, 400}) {
        std::normal_distribution<double> nd(0, 3277);
        std::vector<int16_t> pcm(8000 * 3 / 10, 0);
        for (int i = 0; i < 8 * ms; ++i) pcm.push_back(static_cast<int16_t>(std::clamp(nd(rng), -32000.0, 32000.0)));
        pcm.insert(pcm.end(), 8000, 0);
        utts.push_back({"noise", fmt::format("white noise {} ms", ms), "-", phone_line(pcm, 8000)});
        std::vector<int16_t> tone(8000 * 3 / 10, 0);
        for (int i = 0; i < 8 * ms; ++i) tone.push_back(static_cast<int16_t>(3277 * std::sin(2 * M_PI * 1000 * i / 8000.0)));
        tone.insert(tone.end(), 8000, 0);
        utts.push_back({"tone", fmt::format("1 kHz tone {} ms", ms), "-", phone_line(tone, 8000)});
    }
    for (auto& path : wavs) {
        auto w = media::wav_read(path, &err);
        if (!w) {
            fmt::print(stderr, "{}: {}\n", path, err);
            return 1;
        }
        utts.push_back({"wav", path, "-", phone_line(w->samples, w->sample_rate)});
    }

    // Measure.
    std::map<std::string, std::vector<int>> gaps, gaps_nohyst, runs, first_run, end_offset;
    std::map<std::string, int> n_utts;
    std::map<std::string, std::vector<std::vector<int>>> gaps_per_utt;
    std::vector<std::string> kinds;
    for (auto& u : utts) {
        Runs r = vad_runs(*vad, u.pcm, true);
        Runs r0 = vad_runs(*vad, u.pcm, false);
        if (!n_utts.count(u.kind)) kinds.push_back(u.kind);
        ++n_utts[u.kind];
        gaps[u.kind].insert(gaps[u.kind].end(), r.gaps_ms.begin(), r.gaps_ms.end());
        gaps_nohyst[u.kind].insert(gaps_nohyst[u.kind].end(), r0.gaps_ms.begin(), r0.gaps_ms.end());
        gaps_per_utt[u.kind].push_back(r.gaps_ms);
        int total = 0;
        for (int s : r.speech_ms) total += s;
        runs[u.kind].push_back(r.speech_ms.empty() ? 0 : *std::max_element(r.speech_ms.begin(), r.speech_ms.end()));
        first_run[u.kind].push_back(r.speech_ms.empty() ? 0 : r.speech_ms.front());
        if (r.last_end_ms >= 0) end_offset[u.kind].push_back(r.last_end_ms - energy_end_ms(u.pcm));
    }

    fmt::print("## Silence gaps inside one utterance, as the streaming VAD sees them (32 ms windows)\n\n");
    fmt::print("| kind | utterances | gaps | p50 | p90 | max | ≥ 250 ms | ≥ 900 ms | gaps without hysteresis |\n|---|---|---|---|---|---|---|---|---|\n");
    for (auto& k : kinds) {
        if (k == "noise" || k == "tone" || k == "short_word") continue;
        auto& g = gaps[k];
        int ge250 = static_cast<int>(std::count_if(g.begin(), g.end(), [](int x) { return x >= 250; }));
        int ge900 = static_cast<int>(std::count_if(g.begin(), g.end(), [](int x) { return x >= 900; }));
        fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", k, n_utts[k], g.size(), pct(g, 0.5), pct(g, 0.9),
                   g.empty() ? 0 : *std::max_element(g.begin(), g.end()), ge250, ge900, gaps_nohyst[k].size());
    }

    fmt::print("\n## What a threshold costs (speech utterances above): per utterance, how often a pause of at least T\n"
               "## occurs mid-utterance (short pause: one wasted speculative STT each; long pause: the turn is cut)\n\n");
    // Config values; the handler counts silence in whole windows, so T fires on a gap of ceil(T / 32) windows.
    std::vector<int> ths = {100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900, 1000, 1200};
    fmt::print("| T (ms): fires on a gap of |");
    for (auto& k : kinds)
        if (k != "noise" && k != "tone" && k != "short_word") fmt::print(" {} |", k);
    fmt::print("\n|---|");
    for (auto& k : kinds)
        if (k != "noise" && k != "tone" && k != "short_word") fmt::print("---|");
    fmt::print("\n");
    for (int th : ths) {
        const int fire = (th + kWindowMs - 1) / kWindowMs * kWindowMs;
        fmt::print("| {}: ≥ {} |", th, fire);
        for (auto& k : kinds) {
            if (k == "noise" || k == "tone" || k == "short_word") continue;
            int pauses = 0, cut = 0;
            for (auto& v : gaps_per_utt[k]) {
                int c = static_cast<int>(std::count_if(v.begin(), v.end(), [&](int x) { return x >= fire; }));
                pauses += c;
                cut += c > 0;
            }
            fmt::print(" {:.2f} / {:.0f}% |", static_cast<double>(pauses) / n_utts[k], 100.0 * cut / n_utts[k]);
        }
        fmt::print("\n");
    }
    fmt::print("\n(each cell: pauses that fire T per utterance / share of utterances with at least one; silence is\n"
               " counted in whole 32 ms windows: end_of_turn_short_ms = 250 fires after 256 ms, 900 after 928 ms)\n");

    fmt::print("\n## Speech runs: short words and non-speech (min_speech_ms = 120, barge_in_min_ms = 200)\n\n");
    fmt::print("| kind | items | longest run p10 | p50 | min | max | opens an utterance (≥ 128 ms) | would barge in (≥ 200 ms) |\n|---|---|---|---|---|---|---|---|\n");
    for (auto& k : kinds) {
        auto& v = runs[k];
        int open = static_cast<int>(std::count_if(v.begin(), v.end(), [](int x) { return x >= 128; }));
        int barge = static_cast<int>(std::count_if(v.begin(), v.end(), [](int x) { return x >= 200; }));
        fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} |\n", k, v.size(), pct(v, 0.1), pct(v, 0.5),
                   v.empty() ? 0 : *std::min_element(v.begin(), v.end()), v.empty() ? 0 : *std::max_element(v.begin(), v.end()),
                   open, barge);
    }
    fmt::print("\nPer item (short words, noise, tone): longest speech run in ms\n\n");
    for (auto& u : utts) {
        if (u.kind != "short_word" && u.kind != "noise" && u.kind != "tone") continue;
        Runs r = vad_runs(*vad, u.pcm, true);
        int longest = r.speech_ms.empty() ? 0 : *std::max_element(r.speech_ms.begin(), r.speech_ms.end());
        fmt::print("  {:<10} {:<22} {:>4} ms\n", u.voice, u.label, longest);
    }

    fmt::print("\n## VAD speech end minus true energy end (last 10 ms above -45 dBFS), ms\n\n");
    fmt::print("| kind | n | p10 | p50 | p90 |\n|---|---|---|---|---|\n");
    std::vector<int> all_off;
    for (auto& k : kinds) {
        if (k == "noise" || k == "tone") continue;
        auto& v = end_offset[k];
        all_off.insert(all_off.end(), v.begin(), v.end());
        fmt::print("| {} | {} | {} | {} | {} |\n", k, v.size(), pct(v, 0.1), pct(v, 0.5), pct(v, 0.9));
    }
    fmt::print("| all speech | {} | {} | {} | {} |\n", all_off.size(), pct(all_off, 0.1), pct(all_off, 0.5), pct(all_off, 0.9));

    if (!json_path.empty()) {
        std::FILE* f = std::fopen(json_path.c_str(), "w");
        if (f) {
            fmt::print(f, "{{\"gaps_ms\":{{");
            bool first = true;
            for (auto& k : kinds) {
                fmt::print(f, "{}\"{}\":[{}]", first ? "" : ",", k, fmt::join(gaps[k], ","));
                first = false;
            }
            fmt::print(f, "}},\"longest_run_ms\":{{");
            first = true;
            for (auto& k : kinds) {
                fmt::print(f, "{}\"{}\":[{}]", first ? "" : ",", k, fmt::join(runs[k], ","));
                first = false;
            }
            fmt::print(f, "}},\"vad_end_minus_energy_end_ms\":[{}]}}\n", fmt::join(all_off, ","));
            std::fclose(f);
        }
    }
    return 0;
}
