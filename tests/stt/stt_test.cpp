// stt_test.cpp — the embedded SpeechToText and Vad against upstream whisper.cpp.
//
// The whisper model is tiny and random (parley-testmodels, seed 1): its text is nonsense but deterministic,
// so ours must equal whisper-cli's byte for byte on the same model, input and greedy settings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <whisper.h>
#pragma GCC diagnostic pop

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "media/wav.h"
#include "stt/engines.h"
#include "stt/stt.h"

namespace parley::stt {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary);
    out << data;
}

// 16-bit mono WAV -> floats scaled by 1/32768, the same conversion whisper-cli's miniaudio decoder does.
std::vector<float> read_wav(const std::string& path) {
    auto wav = media::wav_read(path, nullptr);
    return wav ? media::to_float(wav->samples) : std::vector<float>();
}

const std::vector<float>& jfk() {
    static const std::vector<float> pcm = read_wav(PARLEY_JFK_WAV);
    return pcm;
}

SttConfig test_config(int workers = 1, int threads = 2) {
    SttConfig c;
    c.model = PARLEY_STT_TEST_MODEL;
    c.language = "en";
    c.workers = workers;
    c.threads = threads;
    return c;
}

std::string tmp_path(const std::string& name) { return std::string(PARLEY_STT_TMP_DIR) + "/" + name; }

// ---- 1. equivalence with whisper-cli ----------------------------------------------------------------

// A 16 kHz mono 16-bit WAV of `pcm` (whose values are all k/32768, so the file round-trips exactly).
void write_wav(const std::string& path, std::span<const float> pcm) {
    std::string d = "RIFF____WAVEfmt ";
    auto u32 = [&d](uint32_t v) { d.append(reinterpret_cast<const char*>(&v), 4); };
    auto u16 = [&d](uint16_t v) { d.append(reinterpret_cast<const char*>(&v), 2); };
    u32(16), u16(1), u16(1), u32(16000), u32(32000), u16(2), u16(16);
    d += "data";
    u32(static_cast<uint32_t>(pcm.size() * 2));
    for (float x : pcm) u16(static_cast<uint16_t>(static_cast<int16_t>(std::lround(x * 32768.0f))));
    uint32_t riff = static_cast<uint32_t>(d.size() - 8);
    std::memcpy(d.data() + 4, &riff, 4);
    write_file(path, d);
}

// Ours on `pcm` vs whisper-cli on `wav` (the same samples).
// With `vad`, both sides run Silero first and decode only the speech (stt.vad_model / whisper-cli --vad).
// With `fit` (stt.fit_window, the default), whisper-cli gets the same encoder size with -ac.
void expect_same_as_cli(const std::string& name, std::span<const float> pcm, const std::string& wav,
                        bool vad = false, bool fit = true) {
    std::string err;
    SttConfig config = test_config();
    if (vad) config.vad_model = PARLEY_VAD_MODEL;
    config.fit_window = fit;
    // With VAD the encoder is fitted to the speech that is decoded (whisper-cli -ac N applies to it too).
    size_t decoded = pcm.size();
    if (vad) {
        auto v = create_vad(PARLEY_VAD_MODEL, &err);
        ASSERT_NE(v, nullptr) << err;
        decoded = detail::vad_filter(pcm, v->segments(pcm)).samples.size();
    }
    const int audio_ctx = fit ? fitted_audio_ctx(decoded) : 0;
    auto stt = create(config, &err);
    ASSERT_NE(stt, nullptr) << err;
    auto r = stt->transcribe(pcm, {}, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;

    // Greedy, one candidate, no temperature fallback, timestamps on (no -nt: it would set no_timestamps),
    // flash attention on (both defaults): exactly the settings of whisper_stt.cpp.
    const std::string prefix = tmp_path("cli-" + name);
    std::filesystem::remove(prefix + ".txt");
    const std::string cmd = std::string(PARLEY_WHISPER_CLI) + " -m " + PARLEY_STT_TEST_MODEL + " -f " + wav +
                            " -l en -t 2 -bs 1 -bo 1 -nf -np -otxt -of " + prefix +
                            (audio_ctx > 0 ? " -ac " + std::to_string(audio_ctx) : std::string()) +
                            (vad ? std::string(" --vad -vm ") + PARLEY_VAD_MODEL : std::string()) + " > " + prefix +
                            ".log 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_file(prefix + ".log");
    const std::string cli_txt = read_file(prefix + ".txt");

    // whisper-cli's -otxt writes each segment's text followed by "\n".
    std::string ours_txt, cli_joined;
    for (const auto& s : r.segments) ours_txt += s.text + "\n";
    std::istringstream lines(cli_txt);
    for (std::string line; std::getline(lines, line);) cli_joined += line;
    auto trim = [](const std::string& s) {
        auto b = s.find_first_not_of(" \t\r\n");
        return b == std::string::npos ? std::string() : s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
    };
    std::printf("%s ours:        [%s] (%zu segments, %.0f ms)\n%s whisper-cli: [%s]\n", name.c_str(),
                r.text.c_str(), r.segments.size(), r.compute_ms, name.c_str(), trim(cli_joined).c_str());
    EXPECT_FALSE(r.text.empty());
    EXPECT_EQ(ours_txt, cli_txt);
    EXPECT_EQ(r.text, trim(cli_joined));
}

TEST(WhisperStt, MatchesWhisperCliOnJfk) {
    ASSERT_EQ(jfk().size(), 176000u);
    expect_same_as_cli("jfk", jfk(), PARLEY_JFK_WAV);
}

TEST(WhisperStt, MatchesWhisperCliOnJfkFirst3s) {
    const std::span<const float> slice(jfk().data(), 3 * 16000);
    const std::string wav = tmp_path("jfk-3s.wav");
    write_wav(wav, slice);
    ASSERT_EQ(read_wav(wav), std::vector<float>(slice.begin(), slice.end()));
    expect_same_as_cli("jfk-3s", slice, wav);
}

TEST(WhisperStt, MatchesWhisperCliOnJfkFirst3sWithTheFullWindow) {
    const std::span<const float> slice(jfk().data(), 3 * 16000);
    const std::string wav = tmp_path("jfk-3s-full.wav");
    write_wav(wav, slice);
    expect_same_as_cli("jfk-3s-full", slice, wav, /*vad=*/false, /*fit=*/false);
}

// The encoder is sized to the utterance: 3 s -> 150 positions + 32 margin -> 192; 11 s -> 592; a full
// window (or more) -> 0, whisper's own 1500.
TEST(WhisperStt, FittedAudioCtx) {
    EXPECT_EQ(fitted_audio_ctx(3 * 16000), 192);
    EXPECT_EQ(fitted_audio_ctx(176000), 592);
    EXPECT_EQ(fitted_audio_ctx(1), 48);
    EXPECT_EQ(fitted_audio_ctx(0), 32);
    EXPECT_EQ(fitted_audio_ctx(29 * 16000), 1488);
    EXPECT_EQ(fitted_audio_ctx(30 * 16000), 0);
    EXPECT_EQ(fitted_audio_ctx(60 * 16000), 0);
    for (size_t n = 0; n < 30 * 16000; n += 1231) {
        const int ctx = fitted_audio_ctx(n);
        if (ctx == 0) continue;
        EXPECT_GE(static_cast<size_t>(ctx) * 320, n + 32 * 320) << n;  // every sample plus the margin is encoded
        EXPECT_EQ(ctx % 16, 0) << n;
    }
}

// 3 s of speech, 6 s of silence, 3 s of speech: whisper-cli --vad decodes only the two speech segments
// joined by 0.1 s of silence. (Before our path did the same cut itself, whisper_full_with_state ignored
// params.vad and decoded the silence too; jfk.wav alone, nearly all speech, could not show it.)
TEST(WhisperStt, MatchesWhisperCliWithVadAcrossSilence) {
    std::vector<float> pcm(jfk().begin(), jfk().begin() + 3 * 16000);
    pcm.insert(pcm.end(), 6 * 16000, 0.0f);
    pcm.insert(pcm.end(), jfk().begin() + 5 * 16000, jfk().begin() + 8 * 16000);
    const std::string wav = tmp_path("jfk-gap.wav");
    write_wav(wav, pcm);
    std::string err;
    auto v = create_vad(PARLEY_VAD_MODEL, &err);
    ASSERT_NE(v, nullptr) << err;
    const auto spans = v->segments(pcm);
    ASSERT_GE(spans.size(), 2u);
    const auto cut = detail::vad_filter(pcm, spans);
    EXPECT_LT(cut.samples.size(), pcm.size() - 5 * 16000u) << "the 6 s of silence must not be decoded";
    // Times in the cut audio map back to the original: the second segment starts after the silence.
    EXPECT_EQ(detail::vad_original_time(0, cut.map), spans[0].start_ms / 10);
    EXPECT_GE(detail::vad_original_time(static_cast<int64_t>(cut.samples.size() / 160), cut.map), 800);
    expect_same_as_cli("jfk-gap-vad", pcm, wav, /*vad=*/true);
    expect_same_as_cli("jfk-gap-vad-full", pcm, wav, /*vad=*/true, /*fit=*/false);
}

TEST(WhisperStt, MatchesWhisperCliWithVadOnJfk) {
    expect_same_as_cli("jfk-vad", jfk(), PARLEY_JFK_WAV, /*vad=*/true);
}

TEST(WhisperStt, WithVadSilenceNeverReachesTheDecoder) {
    std::string err;
    SttConfig config = test_config();
    config.vad_model = PARLEY_VAD_MODEL;
    auto stt = create(config, &err);
    ASSERT_NE(stt, nullptr) << err;
    std::vector<float> silence(5 * 16000, 0.0f);
    auto r = stt->transcribe(silence, {}, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_TRUE(r.text.empty()) << "decoded from silence: " << r.text;
    EXPECT_TRUE(r.segments.empty());
}

// ---- 2. VAD -------------------------------------------------------------------------------------------

TEST(Vad, MatchesWhisperVadOnJfk) {
    std::string err;
    auto vad = create_vad(PARLEY_VAD_MODEL, &err);
    ASSERT_NE(vad, nullptr) << err;
    auto ours = vad->segments(jfk());

    // whisper.cpp's API called directly with its default parameters.
    whisper_vad_context* ctx = whisper_vad_init_from_file_with_params(PARLEY_VAD_MODEL,
                                                                      whisper_vad_default_context_params());
    ASSERT_NE(ctx, nullptr);
    whisper_vad_segments* segs = whisper_vad_segments_from_samples(ctx, whisper_vad_default_params(), jfk().data(),
                                                                   static_cast<int>(jfk().size()));
    ASSERT_NE(segs, nullptr);
    std::vector<SpeechSpan> theirs;
    for (int i = 0; i < whisper_vad_segments_n_segments(segs); ++i) {
        theirs.push_back({std::llround(whisper_vad_segments_get_segment_t0(segs, i) * 10.0),
                          std::llround(whisper_vad_segments_get_segment_t1(segs, i) * 10.0)});
    }
    whisper_vad_free_segments(segs);
    whisper_vad_free(ctx);

    // The reference numbers (docs/engines-build.md), in ms.
    const std::vector<SpeechSpan> reference = {{320, 2270}, {3270, 4410}, {5380, 7680}, {8160, 10620}};
    ASSERT_EQ(ours.size(), reference.size());
    ASSERT_EQ(theirs.size(), reference.size());
    for (size_t i = 0; i < ours.size(); ++i) {
        std::printf("segment %zu: ours %lld-%lld ms, whisper %lld-%lld ms\n", i, (long long)ours[i].start_ms,
                    (long long)ours[i].end_ms, (long long)theirs[i].start_ms, (long long)theirs[i].end_ms);
        EXPECT_EQ(ours[i].start_ms, theirs[i].start_ms);
        EXPECT_EQ(ours[i].end_ms, theirs[i].end_ms);
        EXPECT_NEAR(ours[i].start_ms, reference[i].start_ms, 20);
        EXPECT_NEAR(ours[i].end_ms, reference[i].end_ms, 20);
    }

    auto probs = vad->probabilities(jfk());
    EXPECT_EQ(probs.size(), (jfk().size() + 511) / 512);
    for (float p : probs) {
        EXPECT_GE(p, 0.0f);
        EXPECT_LE(p, 1.0f);
    }
}

TEST(Vad, MatchesWhisperCliVadSegments) {
    // whisper-cli --vad logs "VAD segment i: start = S, end = E" (seconds, 2 decimals) at info level.
    std::string err;
    auto vad = create_vad(PARLEY_VAD_MODEL, &err);
    ASSERT_NE(vad, nullptr) << err;
    auto ours = vad->segments(jfk());
    const std::string log = tmp_path("cli-vad.log");
    const std::string cmd = std::string(PARLEY_WHISPER_CLI) + " -m " + PARLEY_STT_TEST_MODEL + " -f " +
                            PARLEY_JFK_WAV + " -l en -t 2 -bs 1 -bo 1 -nf --vad -vm " + PARLEY_VAD_MODEL +
                            " > " + log + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(log);
    std::vector<SpeechSpan> cli;
    std::istringstream in(read_file(log));
    for (std::string line; std::getline(in, line);) {
        auto at = line.find("VAD segment ");
        if (at == std::string::npos) continue;
        int i = 0;
        double s = 0, e = 0;
        if (std::sscanf(line.c_str() + at, "VAD segment %d: start = %lf, end = %lf", &i, &s, &e) == 3)
            cli.push_back({std::llround(s * 1000), std::llround(e * 1000)});
    }
    ASSERT_EQ(cli.size(), ours.size()) << read_file(log);
    for (size_t i = 0; i < ours.size(); ++i) {
        EXPECT_EQ(ours[i].start_ms, cli[i].start_ms);
        EXPECT_EQ(ours[i].end_ms, cli[i].end_ms);
    }
}

// ---- 3. concurrency ------------------------------------------------------------------------------------

TEST(WhisperStt, EightConcurrentCallsOnTwoWorkers) {
    std::string err;
    auto stt = create(test_config(2, 1), &err);
    ASSERT_NE(stt, nullptr) << err;
    EXPECT_EQ(stt->describe(), "whisper.cpp whisper-tiny-random.bin, 2 workers");
    const std::span<const float> slice(jfk().data(), 3 * 16000);
    auto t0 = Clock::now();
    auto alone = stt->transcribe(slice, {}, CancelToken{});
    const double alone_ms = ms_since(t0);
    ASSERT_TRUE(alone.ok) << alone.error;

    std::vector<Transcript> results(8);
    std::vector<std::thread> threads;
    t0 = Clock::now();
    for (auto& r : results)
        threads.emplace_back([&stt, &r, slice] { r = stt->transcribe(slice, {}, CancelToken{}); });
    for (auto& t : threads) t.join();
    const double all_ms = ms_since(t0);
    std::printf("alone %.0f ms, 8 at once on 2 workers %.0f ms, text [%s]\n", alone_ms, all_ms, alone.text.c_str());
    for (const auto& r : results) {
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_EQ(r.text, alone.text);
        ASSERT_EQ(r.segments.size(), alone.segments.size());
        for (size_t i = 0; i < r.segments.size(); ++i) {
            EXPECT_EQ(r.segments[i].t0_ms, alone.segments[i].t0_ms);
            EXPECT_EQ(r.segments[i].t1_ms, alone.segments[i].t1_ms);
        }
    }
}

// ---- 4. cancellation ---------------------------------------------------------------------------------

TEST(WhisperStt, CancelMidDecodeReturnsQuickly) {
    std::string err;
    auto stt = create(test_config(1, 2), &err);
    ASSERT_NE(stt, nullptr) << err;
    // ~5 minutes of speech: ten 30 s windows, each an encode and up to 220 decoder steps. Even idle this
    // takes seconds, so a cancel 200 ms in always lands mid-decode; no timing of a full run is needed
    // (it made the test flaky on a loaded machine).
    std::vector<float> longer;
    for (int i = 0; i < 27; ++i) longer.insert(longer.end(), jfk().begin(), jfk().end());

    CancelToken token;
    Transcript r;
    std::atomic<bool> done{false};
    auto t0 = Clock::now();
    std::thread worker([&] {
        r = stt->transcribe(longer, {}, token);
        done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const bool finished_early = done.load();
    auto tc = Clock::now();
    token.cancel();
    worker.join();
    const double after_cancel_ms = ms_since(tc), total_ms = ms_since(t0);
    std::printf("cancelled 200 ms into a 5 min transcription; returned %.1f ms after the cancel (%.0f ms total)\n",
                after_cancel_ms, total_ms);
    EXPECT_FALSE(finished_early) << "a 5 minute transcription finished in 200 ms?";
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "cancelled");
    EXPECT_LT(after_cancel_ms, 1000.0);  // one decoder step or encoder pass, even under ASan and load

    // The worker is free again and the engine still works.
    auto again = stt->transcribe(std::span<const float>(jfk().data(), 32000), {}, CancelToken{});
    EXPECT_TRUE(again.ok) << again.error;
}

TEST(WhisperStt, CancelWhileWaitingForAWorker) {
    std::string err;
    auto stt = create(test_config(1, 1), &err);
    ASSERT_NE(stt, nullptr) << err;
    std::thread busy([&] { stt->transcribe(jfk(), {}, CancelToken{}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CancelToken token;
    token.cancel();
    auto t0 = Clock::now();
    auto r = stt->transcribe(jfk(), {}, token);
    EXPECT_LT(ms_since(t0), 50.0);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "cancelled");
    busy.join();
}

// ---- 5. bad model files ------------------------------------------------------------------------------

struct BadFile {
    const char* name;
    std::string path;
};

std::vector<BadFile> bad_files() {
    const std::string dir = tmp_path("bad-models");
    std::filesystem::create_directories(dir);
    const std::string model = read_file(PARLEY_STT_TEST_MODEL);
    write_file(dir + "/empty.bin", "");
    write_file(dir + "/truncated-100.bin", model.substr(0, 100));
    write_file(dir + "/truncated-end.bin", model.substr(0, model.size() - 1000));
    write_file(dir + "/text.bin", "this is not a model\nat all\n");
    std::string bad_hparams = model.substr(0, 4096);
    int32_t huge = 1 << 30;
    std::memcpy(bad_hparams.data() + 4, &huge, 4);  // n_vocab
    write_file(dir + "/bad-hparams.bin", bad_hparams);
    return {{"missing", dir + "/does-not-exist.bin"},
            {"empty", dir + "/empty.bin"},
            {"truncated (100 bytes)", dir + "/truncated-100.bin"},
            {"truncated (end)", dir + "/truncated-end.bin"},
            {"text", dir + "/text.bin"},
            {"bad hparams", dir + "/bad-hparams.bin"},
            {"gguf", PARLEY_GGUF_FILE}};
}

TEST(WhisperStt, BadModelFilesAreRejectedWithoutAborting) {
    auto files = bad_files();
    files.push_back({"a VAD model", PARLEY_VAD_MODEL});
    for (const auto& f : files) {
        SttConfig c = test_config();
        c.model = f.path;
        std::string err;
        auto stt = create(c, &err);
        EXPECT_EQ(stt, nullptr) << f.name;
        EXPECT_NE(err.find(f.path), std::string::npos) << f.name << ": " << err;
        std::printf("%-22s %s\n", f.name, err.c_str());
    }
}

TEST(Vad, BadModelFilesAreRejectedWithoutAborting) {
    auto files = bad_files();
    files.push_back({"a whisper model", PARLEY_STT_TEST_MODEL});
    for (const auto& f : files) {
        std::string err;
        auto vad = create_vad(f.path, &err);
        EXPECT_EQ(vad, nullptr) << f.name;
        EXPECT_NE(err.find(f.path), std::string::npos) << f.name << ": " << err;
        std::printf("%-22s %s\n", f.name, err.c_str());
    }
}

TEST(WhisperStt, ValidModelLoadsAndEmptyAudioIsHandled) {
    std::string err;
    auto stt = create(test_config(), &err);
    ASSERT_NE(stt, nullptr) << err;
    auto r = stt->transcribe({}, {}, CancelToken{});
    EXPECT_TRUE(r.ok) << r.error;  // nothing said
    EXPECT_TRUE(r.text.empty());
}

}  // namespace
}  // namespace parley::stt
