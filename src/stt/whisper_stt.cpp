// whisper_stt.cpp — the embedded SpeechToText: whisper.cpp, one model, a pool of whisper_states.
//
// The weights are loaded once (whisper_init_from_file_with_params_no_state) and shared; each worker is a
// whisper_state (KV caches, compute buffers, results) so `workers` decodes run at once without locking the
// model. whisper.cpp aborts the process (GGML_ASSERT, std::bad_alloc from absurd hparams) on many
// malformed files, so the file is checked here first: validate_ggml_model() walks the whole legacy ggml
// layout (header, mel filters, vocabulary, every tensor header and the size of its data) without
// allocating more than one tensor name.
// ggml-backend.h (via whisper.h) trips -Wshadow, and the engines' headers are not SYSTEM includes.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <whisper.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "stt/engines.h"

namespace parley::stt {

namespace detail {

namespace {

constexpr uint32_t kGgmlMagic = 0x67676d6c;  // "ggml" as whisper.cpp writes it (little-endian u32)

class Reader {
public:
    Reader(std::ifstream& in, uint64_t size) : in_(in), size_(size) {}
    bool i32(int32_t* v) { return bytes(v, sizeof *v); }
    bool bytes(void* p, uint64_t n) {
        if (pos_ + n > size_) return false;
        in_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
        pos_ += n;
        return static_cast<bool>(in_);
    }
    bool skip(uint64_t n) {
        if (pos_ + n > size_) return false;
        pos_ += n;
        in_.seekg(static_cast<std::streamoff>(pos_));
        return static_cast<bool>(in_);
    }
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }

private:
    std::ifstream& in_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

// The tensor section shared by whisper and VAD files: (n_dims, name_len, ttype, ne[n_dims], name, data)
// until EOF (n_dims 0 is a scalar: Silero's final bias). Checks each header and that the data is there; returns the number of tensors.
bool walk_tensors(Reader& r, int* n_tensors, std::string* what) {
    *n_tensors = 0;
    while (r.left() > 0) {
        int32_t n_dims = 0, name_len = 0, ttype = 0;
        if (!r.i32(&n_dims) || !r.i32(&name_len) || !r.i32(&ttype)) {
            *what = "truncated tensor header at byte " + std::to_string(r.pos());
            return false;
        }
        if (n_dims < 0 || n_dims > 4 || name_len < 1 || name_len > 256 || ttype < 0 || ttype >= GGML_TYPE_COUNT ||
            ggml_type_size(static_cast<ggml_type>(ttype)) == 0 || ggml_blck_size(static_cast<ggml_type>(ttype)) == 0) {
            *what = "bad tensor header at byte " + std::to_string(r.pos() - 12);
            return false;
        }
        uint64_t n = 1;
        for (int i = 0; i < n_dims; ++i) {
            int32_t ne = 0;
            if (!r.i32(&ne) || ne < 1 || ne > (1 << 28)) {
                *what = "bad tensor dimensions at byte " + std::to_string(r.pos());
                return false;
            }
            n *= static_cast<uint64_t>(ne);
        }
        std::string name(static_cast<size_t>(name_len), '\0');
        if (!r.bytes(name.data(), name.size())) {
            *what = "truncated tensor name at byte " + std::to_string(r.pos());
            return false;
        }
        const auto type = static_cast<ggml_type>(ttype);
        const uint64_t blck = static_cast<uint64_t>(ggml_blck_size(type));
        if (n % blck != 0) {
            *what = "tensor '" + name + "' size is not a multiple of its block size";
            return false;
        }
        const uint64_t data = n / blck * ggml_type_size(type);
        if (!r.skip(data)) {
            *what = "truncated: tensor '" + name + "' needs " + std::to_string(data) + " bytes, " +
                    std::to_string(r.left()) + " left";
            return false;
        }
        ++*n_tensors;
    }
    return true;
}

bool check_whisper(Reader& r, std::string* what) {
    int32_t hp[11];
    for (auto& v : hp) {
        if (!r.i32(&v)) {
            *what = "truncated hyperparameters";
            return false;
        }
    }
    const int32_t n_vocab = hp[0], n_audio_ctx = hp[1], n_audio_state = hp[2], n_audio_head = hp[3],
                  n_audio_layer = hp[4], n_text_ctx = hp[5], n_text_state = hp[6], n_text_head = hp[7],
                  n_text_layer = hp[8], n_mels = hp[9], ftype = hp[10] % 1000;  // GGML_QNT_VERSION_FACTOR
    auto in = [](int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; };
    if (!in(n_vocab, 51864, 52000) || !in(n_audio_ctx, 1, 1500) || !in(n_audio_state, 1, 8192) ||
        !in(n_audio_head, 1, 256) || !in(n_audio_layer, 1, 128) || !in(n_text_ctx, 1, 4096) ||
        n_text_state != n_audio_state || !in(n_text_head, 1, 256) || !in(n_text_layer, 1, 128) ||
        (n_mels != 80 && n_mels != 128) || n_audio_state % n_audio_head != 0 || n_text_state % n_text_head != 0) {
        *what = "implausible whisper hyperparameters (n_vocab " + std::to_string(n_vocab) + ", n_audio_state " +
                std::to_string(n_audio_state) + ", n_mels " + std::to_string(n_mels) + ")";
        return false;
    }
    if (hp[10] < 0 || ggml_ftype_to_ggml_type(static_cast<ggml_ftype>(ftype)) == GGML_TYPE_COUNT) {
        *what = "unknown ftype " + std::to_string(hp[10]);
        return false;
    }
    int32_t n_mel = 0, n_fft = 0;
    if (!r.i32(&n_mel) || !r.i32(&n_fft) || n_mel != n_mels || !in(n_fft, 1, 4096) ||
        !r.skip(static_cast<uint64_t>(n_mel) * static_cast<uint64_t>(n_fft) * sizeof(float))) {
        *what = "truncated or bad mel filters";
        return false;
    }
    int32_t n_tokens = 0;
    if (!r.i32(&n_tokens) || !in(n_tokens, 0, n_vocab)) {
        *what = "bad vocabulary size";
        return false;
    }
    for (int32_t i = 0; i < n_tokens; ++i) {
        int32_t len = 0;
        if (!r.i32(&len) || !in(len, 0, 1024) || !r.skip(static_cast<uint64_t>(len))) {
            *what = "truncated vocabulary at token " + std::to_string(i);
            return false;
        }
    }
    int n_tensors = 0;
    if (!walk_tensors(r, &n_tensors, what)) return false;
    // encoder 7 + 15 per layer; decoder 4 + 24 per layer (15 self + 9 cross); see whisper_model_load().
    const int expected = 11 + 15 * n_audio_layer + 24 * n_text_layer;
    if (n_tensors != expected) {
        *what = "has " + std::to_string(n_tensors) + " tensors, expected " + std::to_string(expected);
        return false;
    }
    return true;
}

bool check_vad(Reader& r, std::string* what) {
    int32_t type_len = 0;
    if (!r.i32(&type_len) || type_len < 1 || type_len > 64 || !r.skip(static_cast<uint64_t>(type_len))) {
        *what = "bad VAD model type";
        return false;
    }
    int32_t v[5];  // version major, minor, patch, n_window, n_context
    for (auto& x : v) {
        if (!r.i32(&x)) {
            *what = "truncated VAD header";
            return false;
        }
    }
    int32_t n_layers = 0;
    // whisper_vad_init_with_params() indexes encoder layers 0..3 whatever the file says.
    if (!r.i32(&n_layers) || n_layers != 4) {
        *what = "expected 4 VAD encoder layers";
        return false;
    }
    for (int i = 0; i < n_layers * 3 + 4; ++i) {  // (in, out, kernel) per layer; lstm in/hidden, final in/out
        int32_t x = 0;
        if (!r.i32(&x) || x < 1 || x > 65536) {
            *what = "bad VAD hyperparameters";
            return false;
        }
    }
    int n_tensors = 0;
    if (!walk_tensors(r, &n_tensors, what)) return false;
    if (n_tensors != n_layers * 2 + 4 + 2 + 1) {
        *what = "has " + std::to_string(n_tensors) + " tensors, expected " + std::to_string(n_layers * 2 + 7);
        return false;
    }
    return true;
}

}  // namespace

// Used by vad.cpp too (declared there): `kind` is "whisper" or "vad". On failure *error names the file.
bool validate_ggml_model(const std::string& path, const char* kind, std::string* error) {
    auto fail = [&](const std::string& what) {
        if (error) *error = path + ": " + what;
        return false;
    };
    if (path.empty()) return fail(std::string("no ") + kind + " model file configured");
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return fail("no such file");
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) return fail("cannot stat: " + ec.message());
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail("cannot open for reading");
    if (size < 4) return fail("too short to be a ggml model (" + std::to_string(size) + " bytes)");
    Reader r(in, size);
    uint32_t magic = 0;
    r.bytes(&magic, sizeof magic);
    if (magic != kGgmlMagic) {
        if (magic == 0x46554747) return fail("is a GGUF file; whisper.cpp needs its own ggml format");  // "GGUF"
        return fail("not a whisper.cpp ggml model (bad magic)");
    }
    std::string what;
    bool ok = std::string(kind) == "vad" ? check_vad(r, &what) : check_whisper(r, &what);
    if (!ok) return fail(std::string("not a valid whisper.cpp ") + kind + " model: " + what);
    return true;
}

// whisper.cpp and ggml log to stderr by default; route them to our logger at debug level, once.
void route_whisper_logs() {
    static std::once_flag once;
    std::call_once(once, [] {
        whisper_log_set(
            [](ggml_log_level, const char* text, void*) {
                std::string s(text ? text : "");
                while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
                if (!s.empty()) PLOG_DEBUG("event=whisper_log msg=\"{}\"", s);
            },
            nullptr);
    });
}

VadFiltered vad_filter(std::span<const float> pcm, const std::vector<SpeechSpan>& spans) {
    // whisper.cpp's whisper_vad() (src/whisper.cpp) step for step, so that our output equals whisper-cli
    // --vad: each segment (plus 0.1 s overlap but the last), 0.1 s of silence between segments, and a
    // processed -> original time map in centiseconds.
    constexpr int kRate = 16000;
    const int n = static_cast<int>(pcm.size());
    const int overlap = static_cast<int>(0.1f * kRate);  // whisper_vad_default_params().samples_overlap
    const int silence = static_cast<int>(0.1 * kRate);
    auto cs_to_samples = [](int64_t cs) { return static_cast<int>((cs / 100.0) * kRate + 0.5); };
    auto samples_to_cs = [](int samples) { return static_cast<int64_t>((samples / static_cast<double>(kRate)) * 100.0 + 0.5); };
    VadFiltered out;
    const int count = static_cast<int>(spans.size());
    size_t total = 0;
    for (int i = 0; i < count; ++i) {
        int start = cs_to_samples(spans[i].start_ms / 10), end = cs_to_samples(spans[i].end_ms / 10);
        if (i < count - 1) end += overlap;
        end = std::min(end, n - 1);
        total += static_cast<size_t>(std::max(0, end - start));
    }
    out.samples.reserve(total + static_cast<size_t>(std::max(0, count - 1)) * silence);
    int offset = 0;
    for (int i = 0; i < count; ++i) {
        const int64_t orig_start = spans[i].start_ms / 10, orig_end = spans[i].end_ms / 10;
        int start = std::min(cs_to_samples(orig_start), n - 1);
        int end = std::min(cs_to_samples(orig_end), n - 1);
        const int original_length = end - start;
        if (i < count - 1) end = std::min(end + overlap, n - 1);
        const int length = end - start;
        if (length <= 0) continue;
        out.map.push_back({samples_to_cs(offset), orig_start});
        out.map.push_back({samples_to_cs(offset + original_length), orig_end});
        out.samples.insert(out.samples.end(), pcm.begin() + start, pcm.begin() + end);
        offset += length;
        if (i < count - 1) {
            out.map.push_back({samples_to_cs(offset), orig_end});
            out.map.push_back({samples_to_cs(offset + silence), spans[i + 1].start_ms / 10});
            out.samples.insert(out.samples.end(), static_cast<size_t>(silence), 0.0f);
            offset += silence;
        }
    }
    std::stable_sort(out.map.begin(), out.map.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    out.map.erase(std::unique(out.map.begin(), out.map.end(),
                              [](const auto& a, const auto& b) { return a.first == b.first; }),
                  out.map.end());
    return out;
}

int64_t vad_original_time(int64_t t, const std::vector<std::pair<int64_t, int64_t>>& map) {
    // whisper.cpp's map_processed_to_original_time().
    if (map.empty()) return t;
    if (t <= map.front().first) return map.front().second;
    if (t >= map.back().first) return map.back().second;
    auto upper = std::lower_bound(map.begin(), map.end(), t, [](const auto& e, int64_t v) { return e.first < v; });
    if (upper->first == t) return upper->second;
    auto lower = upper - 1;
    const int64_t pd = upper->first - lower->first, od = upper->second - lower->second;
    if (pd == 0) return lower->second;
    return lower->second + ((t - lower->first) * od) / pd;
}

}  // namespace detail

namespace {

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    auto b = s.find_first_not_of(ws);
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

bool is_cancelled(void* user) { return static_cast<const CancelToken*>(user)->cancelled(); }

class WhisperStt final : public SpeechToText {
public:
    WhisperStt(const SttConfig& config, whisper_context* ctx, std::vector<whisper_state*> states,
               std::vector<std::unique_ptr<Vad>> vads)
        : config_(config), ctx_(ctx), states_(std::move(states)), free_(states_), vads_(std::move(vads)) {
        for (auto& v : vads_) free_vads_.push_back(v.get());
    }

    ~WhisperStt() override {
        // Callers must not be inside transcribe() when the engine is destroyed (the owner joins them).
        for (auto* s : states_) whisper_free_state(s);
        whisper_free(ctx_);
    }
    WhisperStt(const WhisperStt&) = delete;
    WhisperStt& operator=(const WhisperStt&) = delete;

    Transcript transcribe(std::span<const float> pcm, const Options& options, const CancelToken& cancel) override {
        Transcript t;
        whisper_state* state = acquire(cancel);
        if (!state) {
            t.error = "cancelled";
            return t;
        }
        const auto start = std::chrono::steady_clock::now();
        t = run(state, pcm, options, cancel);
        t.compute_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        release(state);
        return t;
    }

    std::string describe() const override {
        return "whisper.cpp " + std::filesystem::path(config_.model).filename().string() + ", " +
               std::to_string(states_.size()) + " workers";
    }

private:
    // A free state, or nullptr once `cancel` fires. The token has no wake-up hook, so the wait polls it.
    whisper_state* acquire(const CancelToken& cancel) {
        std::unique_lock lock(mutex_);
        while (free_.empty()) {
            if (cancel.cancelled()) return nullptr;
            cv_.wait_for(lock, std::chrono::milliseconds(10));
        }
        if (cancel.cancelled()) return nullptr;
        whisper_state* s = free_.back();
        free_.pop_back();
        return s;
    }

    // One Vad per worker (a Vad is not thread-safe); a state holder always finds one free.
    std::vector<SpeechSpan> speech(std::span<const float> pcm) {
        Vad* vad;
        {
            std::lock_guard lock(mutex_);
            vad = free_vads_.back();
            free_vads_.pop_back();
        }
        auto spans = vad->segments(pcm);
        std::lock_guard lock(mutex_);
        free_vads_.push_back(vad);
        return spans;
    }

    void release(whisper_state* s) {
        {
            std::lock_guard lock(mutex_);
            free_.push_back(s);
        }
        cv_.notify_one();
    }

    Transcript run(whisper_state* state, std::span<const float> pcm, const Options& options,
                   const CancelToken& cancel) {
        Transcript t;
        const std::string language = options.language.empty() ? config_.language : options.language;
        std::string prompt = config_.prompt;
        if (!options.prompt.empty()) prompt += (prompt.empty() ? "" : " ") + options.prompt;

        // Greedy, no temperature fallback: the same settings as `whisper-cli -bs 1 -bo 1 -nf` (the
        // equivalence test runs both). Fallback would re-decode a window up to 5 times on a bad turn.
        whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
        p.n_threads = std::max(1, config_.threads);
        p.language = language.c_str();
        p.detect_language = false;
        p.initial_prompt = prompt.empty() ? nullptr : prompt.c_str();
        p.no_timestamps = false;
        p.single_segment = false;
        p.print_special = p.print_progress = p.print_realtime = p.print_timestamps = false;
        p.greedy.best_of = 1;
        p.temperature = 0.0f;
        p.temperature_inc = 0.0f;
        // Checked by ggml between graph nodes (every encoder/decoder step) and before each 30 s window.
        auto* token = const_cast<CancelToken*>(&cancel);
        p.abort_callback = is_cancelled;
        p.abort_callback_user_data = token;
        // Timing of the first window's encoder: from its start to the first token's logits (encoder plus the
        // first decoder pass), for Transcript::encode_ms.
        struct Timing {
            CancelToken* token;
            std::chrono::steady_clock::time_point encode_start{}, first_logits{};
        } timing{token};
        p.encoder_begin_callback = [](whisper_context*, whisper_state*, void* user) {
            auto* tm = static_cast<Timing*>(user);
            if (tm->encode_start == std::chrono::steady_clock::time_point{})
                tm->encode_start = std::chrono::steady_clock::now();
            return !is_cancelled(tm->token);
        };
        p.encoder_begin_callback_user_data = &timing;
        p.logits_filter_callback = [](whisper_context*, whisper_state*, const whisper_token_data*, int, float*,
                                      void* user) {
            auto* tm = static_cast<Timing*>(user);
            if (tm->first_logits == std::chrono::steady_clock::time_point{})
                tm->first_logits = std::chrono::steady_clock::now();
        };
        p.logits_filter_callback_user_data = &timing;

        if (cancel.cancelled()) {
            t.error = "cancelled";
            return t;
        }
        if (pcm.empty()) {  // nothing said; whisper.cpp would compute a mel of zero frames
            t.ok = true;
            return t;
        }
        // Silence never reaches the decoder: Silero runs over the audio first and only the speech segments
        // are decoded, timestamps mapped back to the original audio (detail::vad_filter: what whisper_full()
        // does with params.vad, which whisper_full_with_state(), our per-worker path, ignores).
        detail::VadFiltered filtered;
        if (!vads_.empty()) {
            const auto spans = speech(pcm);
            if (spans.empty()) {  // whisper.cpp decodes the whole input when its VAD finds nothing; we do not.
                t.ok = true;
                return t;
            }
            filtered = detail::vad_filter(pcm, spans);
            pcm = filtered.samples;
        }
        // The encoder costs the same for 1 s as for 30 s unless told the audio is short (`whisper-cli -ac`).
        if (config_.fit_window) p.audio_ctx = fitted_audio_ctx(pcm.size());
        const int rc = whisper_full_with_state(ctx_, state, p, pcm.data(), static_cast<int>(pcm.size()));
        if (cancel.cancelled()) {
            t.error = "cancelled";
            return t;
        }
        if (rc != 0) {
            t.error = "whisper_full failed (code " + std::to_string(rc) + ")";
            PLOG_WARN("event=stt_failed engine=whisper code={} samples={}", rc, pcm.size());
            return t;
        }
        if (timing.first_logits > timing.encode_start && timing.encode_start != std::chrono::steady_clock::time_point{})
            t.encode_ms = std::chrono::duration<double, std::milli>(timing.first_logits - timing.encode_start).count();
        const int n = whisper_full_n_segments_from_state(state);
        std::string joined;
        for (int i = 0; i < n; ++i) {
            Segment s;
            // whisper's times are in 10 ms units.
            int64_t t0 = whisper_full_get_segment_t0_from_state(state, i);
            int64_t t1 = whisper_full_get_segment_t1_from_state(state, i);
            if (!filtered.map.empty()) {  // as whisper_full_get_segment_t{0,1}_from_state do after VAD
                t0 = detail::vad_original_time(t0, filtered.map);
                t1 = std::max(detail::vad_original_time(t1, filtered.map), t0 + 10);
            }
            s.t0_ms = t0 * 10;
            s.t1_ms = t1 * 10;
            const char* text = whisper_full_get_segment_text_from_state(state, i);
            s.text = text ? text : "";
            joined += s.text;
            t.segments.push_back(std::move(s));
        }
        t.text = trim(joined);
        t.ok = true;
        return t;
    }

    SttConfig config_;
    whisper_context* ctx_;
    std::vector<whisper_state*> states_;  // all of them, for the destructor
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<whisper_state*> free_;
    std::vector<std::unique_ptr<Vad>> vads_;  // stt.vad_model set: one per worker
    std::vector<Vad*> free_vads_;
};

}  // namespace

int fitted_audio_ctx(size_t samples) {
    constexpr size_t kFull = 1500, kSamplesPerPosition = 320, kMargin = 32, kStep = 16;
    size_t n = (samples + kSamplesPerPosition - 1) / kSamplesPerPosition + kMargin;
    n = (n + kStep - 1) / kStep * kStep;
    return n >= kFull ? 0 : static_cast<int>(n);
}

std::unique_ptr<SpeechToText> make_whisper_stt(const SttConfig& config, std::string* error) {
    detail::route_whisper_logs();
    if (!detail::validate_ggml_model(config.model, "whisper", error)) {
        PLOG_ERROR("event=stt_load_failed engine=whisper error=\"{}\"", error ? *error : "");
        return nullptr;
    }
    if (!config.vad_model.empty() && !detail::validate_ggml_model(config.vad_model, "vad", error)) {
        PLOG_ERROR("event=stt_bad_model kind=vad model={}", config.vad_model);
        return nullptr;
    }
    if (config.workers < 1 || config.threads < 1) {
        if (error) *error = "stt: workers and threads must be at least 1";
        return nullptr;
    }
    whisper_context_params cp = whisper_context_default_params();
    cp.use_gpu = true;  // a no-op unless ggml was built with a GPU backend (PARLEY_CUDA)
    whisper_context* ctx = whisper_init_from_file_with_params_no_state(config.model.c_str(), cp);
    if (!ctx) {
        if (error) *error = config.model + ": whisper.cpp could not load the model";
        PLOG_ERROR("event=stt_load_failed engine=whisper model={}", config.model);
        return nullptr;
    }
    std::vector<whisper_state*> states;
    for (int i = 0; i < config.workers; ++i) {
        whisper_state* s = whisper_init_state(ctx);
        if (!s) {
            for (auto* st : states) whisper_free_state(st);
            whisper_free(ctx);
            if (error) *error = config.model + ": cannot allocate whisper state " + std::to_string(i);
            return nullptr;
        }
        states.push_back(s);
    }
    std::vector<std::unique_ptr<Vad>> vads;
    for (int i = 0; !config.vad_model.empty() && i < config.workers; ++i) {
        auto v = create_vad(config.vad_model, error);
        if (!v) {
            for (auto* st : states) whisper_free_state(st);
            whisper_free(ctx);
            return nullptr;
        }
        vads.push_back(std::move(v));
    }
    PLOG_INFO("event=stt_loaded engine=whisper model={} workers={} threads={} vad={}", config.model, config.workers,
              config.threads, config.vad_model.empty() ? "-" : config.vad_model);
    return std::make_unique<WhisperStt>(config, ctx, std::move(states), std::move(vads));
}

}  // namespace parley::stt
