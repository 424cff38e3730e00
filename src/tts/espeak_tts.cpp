// espeak_tts.cpp — espeak-ng on one engine thread.
//
// espeak-ng keeps its state (voice, parameters, the synthesis callback) in process globals and is not
// reentrant, so every espeak call in the process goes through one Engine: a single thread that runs
// queued jobs one after the other. The Engine is shared by all EspeakTts instances (a weak_ptr singleton)
// and its thread is joined when the last instance goes away. espeak_Initialize runs once per process and
// espeak_Terminate never (re-initialising after terminate is not reliable); what espeak allocated stays
// reachable from its globals.
//
// Audio streams: espeak runs in AUDIO_OUTPUT_SYNCHRONOUS mode with a short buffer, so its synth callback
// fires every ~kBufferMs of audio while espeak_Synth runs; each call is forwarded to the caller's callback
// right there (on the engine thread). Returning 1 from the synth callback aborts the synthesis: that is
// how cancellation works between chunks.
#include <espeak-ng/speak_lib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <strings.h>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "tts/engines.h"

namespace parley::tts {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBufferMs = 60;  // audio per synth callback: small, so the first chunk comes quickly

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// One queued request: a synthesis, or (text empty, probe) just selecting a voice to validate it.
struct Job {
    std::string voice;
    int rate_wpm = 0;
    std::string text;
    bool probe = false;
    const AudioCallback* on_audio = nullptr;
    const CancelToken* cancel = nullptr;
    // Written by the engine thread, read by the caller after `done` (both under Engine::mutex_).
    bool done = false;
    bool abandoned = false;  // cancelled while still queued: the engine skips it
    Result result;
    Clock::time_point start;
};

class Engine {
public:
    static std::shared_ptr<Engine> get() {
        static std::mutex m;
        static std::weak_ptr<Engine> instance;
        std::lock_guard lock(m);
        auto e = instance.lock();
        if (!e) {
            e = std::make_shared<Engine>();
            instance = e;
        }
        return e;
    }

    Engine() : thread_([this] { run(); }) {}
    ~Engine() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Runs `job` on the engine thread; blocks until it is done. Cancelling while queued returns at once.
    void run_job(const std::shared_ptr<Job>& job) {
        std::unique_lock lock(mutex_);
        queue_.push_back(job);
        cv_.notify_all();
        while (!job->done) {
            // The wait polls the token: a job cancelled before it started never runs.
            done_cv_.wait_for(lock, std::chrono::milliseconds(10));
            if (!job->done && job->cancel && job->cancel->cancelled()) {
                auto it = std::find(queue_.begin(), queue_.end(), job);
                if (it != queue_.end()) {
                    queue_.erase(it);
                    job->abandoned = true;
                    job->result.ok = false;
                    job->result.error = "cancelled";
                    return;
                }
                // Already running: its synth callback sees the token within one chunk.
            }
        }
    }

    int sample_rate() {
        std::unique_lock lock(mutex_);
        done_cv_.wait(lock, [this] { return init_done_; });
        return sample_rate_;
    }
    std::string init_error() {
        std::unique_lock lock(mutex_);
        done_cv_.wait(lock, [this] { return init_done_; });
        return init_error_;
    }

private:
    void run() {
        // espeak_Initialize only once per process, whichever Engine instance gets there first.
        struct Init {
            int rate = 0;
            std::string error;
        };
        static const Init init = [] {
            Init i;
            i.rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, kBufferMs, nullptr, espeakINITIALIZE_DONT_EXIT);
            if (i.rate <= 0) {
                i.error = "espeak-ng initialisation failed (espeak-ng-data not found?)";
            } else {
                espeak_SetSynthCallback(&Engine::synth_callback);
            }
            return i;
        }();
        const int process_rate = init.rate;
        const std::string& process_error = init.error;
        {
            std::lock_guard lock(mutex_);
            sample_rate_ = process_rate;
            init_error_ = process_error;
            init_done_ = true;
        }
        done_cv_.notify_all();

        while (true) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stop_ and nothing left
                job = queue_.front();
                queue_.pop_front();
            }
            execute(*job);
            {
                std::lock_guard lock(mutex_);
                job->done = true;
            }
            done_cv_.notify_all();
        }
    }

    struct SynthContext {
        Job* job;
        int sample_rate;
        bool aborted = false;
        bool first = true;
    };

    static int synth_callback(short* wav, int count, espeak_EVENT* events) {
        if (events == nullptr) return 0;
        auto* ctx = static_cast<SynthContext*>(events[0].user_data);
        if (ctx == nullptr) return 0;
        Job& job = *ctx->job;
        if (job.cancel->cancelled()) {
            ctx->aborted = true;
            return 1;
        }
        if (wav == nullptr || count <= 0) return 0;
        if (ctx->first) {
            ctx->first = false;
            job.result.first_audio_ms = ms_since(job.start);
        }
        job.result.samples += count;
        if (!(*job.on_audio)(std::span<const int16_t>(reinterpret_cast<const int16_t*>(wav), static_cast<size_t>(count)),
                             ctx->sample_rate)) {
            ctx->aborted = true;
            return 1;
        }
        return 0;
    }

    // The identifier of the preferred voice that lists `language` exactly (case-insensitive), or "".
    static std::string voice_for_language(const std::string& language) {
        espeak_VOICE spec{};
        spec.languages = language.c_str();
        const espeak_VOICE** voices = espeak_ListVoices(&spec);
        if (voices == nullptr || voices[0] == nullptr || voices[0]->languages == nullptr) return {};
        // `languages` is a list of (priority byte, NUL-terminated name), ended by a zero priority byte.
        for (const char* p = voices[0]->languages; *p != 0; p += std::strlen(p + 1) + 2) {
            if (strcasecmp(p + 1, language.c_str()) == 0) return voices[0]->identifier;
        }
        return {};
    }

    void execute(Job& job) {
        job.start = Clock::now();
        job.result.sample_rate = sample_rate_;
        if (!init_error_.empty()) {
            job.result.error = init_error_;
            return;
        }
        if (job.voice != current_voice_) {
            espeak_ERROR err = espeak_SetVoiceByName(job.voice.c_str());
            if (err != EE_OK) {
                // "en-gb" is a language of the voice "gmw/en", not a voice name. Selecting by properties
                // would accept anything (it falls back on a prefix match: "nosuch" -> Norwegian), so
                // take the best voice only when it lists exactly that language.
                const std::string id = voice_for_language(job.voice);
                if (!id.empty()) err = espeak_SetVoiceByName(id.c_str());
            }
            if (err != EE_OK) {
                current_voice_.clear();
                job.result.error = "espeak-ng has no voice \"" + job.voice + "\" (see `espeak-ng --voices`)";
                return;
            }
            current_voice_ = job.voice;
            current_rate_ = -1;  // a new voice resets the parameters
        }
        if (job.rate_wpm != current_rate_) {
            espeak_SetParameter(espeakRATE, job.rate_wpm, 0);
            current_rate_ = job.rate_wpm;
        }
        if (job.probe) {
            job.result.ok = true;
            return;
        }
        SynthContext ctx{&job, sample_rate_};
        const espeak_ERROR err = espeak_Synth(job.text.c_str(), job.text.size() + 1, 0, POS_CHARACTER, 0,
                                              espeakCHARS_UTF8, nullptr, &ctx);
        job.result.total_ms = ms_since(job.start);
        if (ctx.aborted) {
            job.result.error = "cancelled";
        } else if (err != EE_OK) {
            job.result.error = "espeak_Synth failed (error " + std::to_string(static_cast<int>(err)) + ")";
        } else {
            job.result.ok = true;
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;       // work for the engine thread
    std::condition_variable done_cv_;  // a job finished / initialisation finished
    std::deque<std::shared_ptr<Job>> queue_;
    bool stop_ = false;
    bool init_done_ = false;
    int sample_rate_ = 0;
    std::string init_error_;
    // Engine thread only.
    std::string current_voice_;
    int current_rate_ = -1;
    std::thread thread_;  // last: starts after everything above is constructed
};

class EspeakTts final : public TextToSpeech {
public:
    EspeakTts(std::shared_ptr<Engine> engine, const TtsConfig& config, int rate)
        : engine_(std::move(engine)), voice_(config.voice), rate_wpm_(config.rate_wpm), sample_rate_(rate) {}

    Result synthesize(const std::string& text, const AudioCallback& on_audio, const CancelToken& cancel) override {
        auto job = std::make_shared<Job>();
        job->voice = voice_;
        job->rate_wpm = rate_wpm_;
        job->text = text;
        job->on_audio = &on_audio;
        job->cancel = &cancel;
        const auto t0 = Clock::now();
        engine_->run_job(job);
        Result r = job->result;
        r.sample_rate = sample_rate_;
        if (r.total_ms == 0) r.total_ms = ms_since(t0);
        if (!r.ok && r.error != "cancelled") {
            PLOG_WARN("event=tts_failed engine=espeak voice={} error=\"{}\"", voice_, r.error);
        }
        return r;
    }

    int sample_rate() const override { return sample_rate_; }
    std::string describe() const override {
        return "espeak-ng voice " + voice_ + ", " + std::to_string(rate_wpm_) + " wpm, " +
               std::to_string(sample_rate_) + " Hz";
    }

private:
    std::shared_ptr<Engine> engine_;
    std::string voice_;
    int rate_wpm_;
    int sample_rate_;
};

}  // namespace

std::unique_ptr<TextToSpeech> make_espeak_tts(const TtsConfig& config, std::string* error) {
    auto engine = Engine::get();
    const std::string init_error = engine->init_error();
    if (!init_error.empty()) {
        if (error) *error = init_error;
        return nullptr;
    }
    // Select the voice once now, so a misspelt voice fails at startup rather than on the first call.
    CancelToken never;
    auto probe = std::make_shared<Job>();
    probe->voice = config.voice;
    probe->rate_wpm = config.rate_wpm;
    probe->probe = true;
    probe->cancel = &never;
    engine->run_job(probe);
    if (!probe->result.ok) {
        if (error) *error = "tts.voice: " + probe->result.error;
        return nullptr;
    }
    const int rate = engine->sample_rate();
    PLOG_INFO("event=tts_ready engine=espeak voice={} rate_wpm={} sample_rate={}", config.voice, config.rate_wpm, rate);
    return std::make_unique<EspeakTts>(std::move(engine), config, rate);
}

}  // namespace parley::tts
