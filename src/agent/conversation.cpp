// conversation.cpp — the conversation call handler (see conversation.h and docs/conversation.md).
#include "agent/conversation.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "agent/echo_canceller.h"
#include "agent/speech_gate.h"
#include "agent/text.h"
#include "common/log.h"
#include "media/resampler.h"

namespace parley::agent {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kPreRollMs = 200;                // audio kept before speech onset (the VAD needs a window or two)
constexpr int kSpeechRunResetMs = 160;         // a silence this long ends a run of speech (barge-in counting)
constexpr int kAecWarmupMs = 1000;            // of our own speech before the echo canceller is trusted
constexpr int kEchoTailMs = 400;               // an echo can come back this long after we stopped
constexpr double kRefActiveRms = 100;          // reference level that counts as us talking
constexpr auto kByeAfterLastAudio = std::chrono::milliseconds(250);
constexpr double kUnheardMs = 100;             // less than this of a reply played: the caller did not hear it

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c == '\n' ? ' ' : c);
    }
    return out;
}

// Speech synthesized once for every call (greeting, goodbye, prompts), at the TTS engine's rate.
struct Clip {
    std::string text;
    std::vector<int16_t> pcm;
    int rate = 0;
};

std::shared_ptr<const Clip> synthesize_clip(tts::TextToSpeech& tts, const std::string& text, std::string* error) {
    auto clip = std::make_shared<Clip>();
    clip->text = text;
    if (text.empty()) return clip;
    auto r = tts.synthesize(
        text,
        [&](std::span<const int16_t> pcm, int rate) {
            clip->rate = rate;
            clip->pcm.insert(clip->pcm.end(), pcm.begin(), pcm.end());
            return true;
        },
        CancelToken());
    if (!r.ok || clip->pcm.empty()) {
        if (error) *error = fmt::format("could not synthesize \"{}\": {}", text, r.ok ? "no audio" : r.error);
        return nullptr;
    }
    return clip;
}

// Everything the calls of one configuration share. Immutable; reconfigure() makes a new one.
struct Shared {
    Config config;
    Engines engines;
    TurnObserver* observer = nullptr;
    std::shared_ptr<const Clip> greeting, goodbye, silence_prompt, transferring, transfer_failed, trouble;
    std::map<char, std::string> dtmf_actions;
};

constexpr const char* kTransferring = "Please hold while I transfer your call.";
constexpr const char* kTransferFailed = "I'm sorry, I could not transfer your call.";
constexpr const char* kTrouble = "I'm sorry, I am having trouble answering right now. Please try again.";

// ---- the handler ----------------------------------------------------------------------------------

class ConversationHandler final : public call::CallHandler {
public:
    explicit ConversationHandler(std::shared_ptr<const Shared> shared) : s_(std::move(shared)), a_(s_->config.agent) {}
    ~ConversationHandler() override { stop_threads(); }

    bool init(std::string* error) {
        vad_ = stt::create_vad(s_->config.stt.vad_model, error);
        if (vad_ && a_.echo_canceller) aec_ = EchoCanceller::create(error);
        if (!vad_ || (a_.echo_canceller && !aec_)) {
            init_error_ = *error;
            return false;
        }
        return true;
    }

    void on_start(call::CallControl& control) override {
        control_ = &control;
        call_id_ = control.id();
        if (!init_error_.empty()) {
            PLOG_ERROR("call={} event=conversation_init_failed error=\"{}\"", call_id_, escape(init_error_));
            control.hangup("agent_init_failed");
            return;
        }
        if (aec_) control.playout().enable_reference();
        chat_ = s_->engines.llm->open();
        if (s_->greeting && !s_->greeting->pcm.empty()) {
            history_.push_back({"assistant", s_->greeting->text});
            greeting_speech_ = play_clip(*s_->greeting);
            PLOG_INFO("call={} event=greeting ms={}", call_id_,
                      s_->greeting->pcm.size() * 1000 / static_cast<size_t>(s_->greeting->rate));
        }
        speaker_thread_ = std::thread([this] { speaker_loop(); });
        turn_thread_ = std::thread([this] { turn_loop(); });
        media_ready_.store(true, std::memory_order_release);
    }

    void on_audio(const AudioFrame& frame) override {
        if (!media_ready_.load(std::memory_order_acquire) || bridged_.load()) return;
        AudioFrame near = frame;
        if (aec_) {
            ref_codec_.clear();
            control_->playout().take_reference(ref_codec_);
            const int codec_rate = control_->playout().codec_rate();
            std::span<const int16_t> ref16 = ref_codec_;
            if (codec_rate != kInternalRate) {
                if (!ref_resampler_) ref_resampler_ = std::make_unique<media::Resampler>(codec_rate, kInternalRate);
                ref16_.clear();
                ref_resampler_->process(ref_codec_, ref16_);
                ref16 = ref16_;
            }
            aec_->far_end(ref16);
            aec_->process(near.samples);
            // Warm-up: until the canceller has heard about a second of our speech it has not found the
            // echo path yet (docs/echo-and-vad.md), and our own voice coming back would open utterances
            // or barge in. Meanwhile, speech heard while we talk (or within an echo's delay after) is ignored.
            double e = 0;
            for (auto v : ref16) e += double(v) * v;
            const bool talking = !ref16.empty() && std::sqrt(e / double(ref16.size())) > kRefActiveRms;
            if (talking) {
                ref_active_ms_ += kFrameMs;
                ref_quiet_ms_ = 0;
            } else {
                ref_quiet_ms_ += kFrameMs;
            }
            aec_warming_ = ref_active_ms_ < kAecWarmupMs && ref_quiet_ms_ < kEchoTailMs;
        }
        analyse(near);
    }

    void on_dtmf(char digit) override {
        if (!media_ready_.load(std::memory_order_acquire) || bridged_.load()) return;
        // A key press interrupts whatever Parley is saying, like speech does.
        if (!final_words_.load() && busy()) interrupt("dtmf");
        post({.kind = EventKind::kDtmf, .digit = digit});
    }

    void on_transfer(const call::TransferResult& result) override {
        if (result.outcome == call::TransferOutcome::kBridged) {
            // The caller now talks to the target: nothing of ours may reach the playout any more.
            bridged_.store(true);
            interrupt("bridged");
        }
        post({.kind = EventKind::kTransfer, .transfer = result});
    }

    bool on_time_limit() override {
        interrupt("time_limit");
        post({.kind = EventKind::kTimeLimit});
        return true;
    }

    void on_end() override {
        stop_threads();
        chat_.reset();  // frees the call's LLM sequence now, not when the factory goes
        PLOG_INFO("call={} event=conversation_end turns={} llm_sequences_in_use={}", call_id_, turn_index_,
                  s_->engines.llm->active_sequences());
    }

private:
    enum class EventKind { kPauseShort, kPauseLong, kSpeechStart, kDtmf, kTransfer, kTimeLimit };
    struct Event {
        EventKind kind;
        std::vector<int16_t> pcm{};
        int version = 0;
        Clock::time_point speech_end{}, detected{};
        std::chrono::system_clock::time_point speech_end_wall{};
        char digit = 0;
        call::TransferResult transfer{};
    };

    struct Transcript_ {
        bool ok = false;
        std::string text;
        double compute_ms = 0;
    };
    struct Speculative {
        int version;
        std::string text;
        double compute_ms;
        Clock::time_point done;
    };
    struct TurnStart {
        std::string trigger, user;
        bool early_end = false;
        Clock::time_point speech_end{}, eot{}, stt_final{};
        std::chrono::system_clock::time_point speech_end_wall{};
        double stt_compute_ms = 0;
    };

    // One segment of Parley's speech as pushed to the playout (for "what did the caller hear").
    struct Segment {
        std::string text;
        double start_ms = 0, dur_ms = 0;  // position in the playout's pushed-audio timeline
    };
    struct Speech {
        int id = 0;
        std::vector<Segment> segments;
        bool interrupted = false;
        std::string heard;     // set when interrupted
        double heard_ms = 0;   // set when interrupted: how much of it was played
    };
    struct SpeakItem {
        std::string text;
        CancelToken token;
        std::shared_ptr<Speech> speech;
        std::shared_ptr<const Clip> clip{};  // pre-synthesized; else synthesize text
        bool first_of_reply = false;
    };

    // ---- media thread: echo-cancelled frames → VAD → utterances, barge-in ----------------------------

    void analyse(const AudioFrame& frame) {
        const auto now = Clock::now();
        pre_roll_.insert(pre_roll_.end(), frame.samples.begin(), frame.samples.end());
        if (in_utterance_) utterance_.insert(utterance_.end(), frame.samples.begin(), frame.samples.end());
        const size_t max_pre = kPreRollMs * kInternalRate / 1000;
        if (pre_roll_.size() > max_pre) pre_roll_.erase(pre_roll_.begin(), pre_roll_.end() - static_cast<std::ptrdiff_t>(max_pre));

        float f[kFrameSamples];
        for (int i = 0; i < kFrameSamples; ++i) f[i] = static_cast<float>(frame.samples[static_cast<size_t>(i)]) / 32768.0f;
        probs_.clear();
        vad_->stream(std::span<const float>(f, kFrameSamples), probs_);
        for (float p : probs_) {
            vad_max_ = std::max(vad_max_, p);
            if (++vad_windows_ % 31 == 0) {  // about once a second
                PLOG_DEBUG("call={} event=vad max_prob={:.2f} in_utterance={}", call_id_, vad_max_, in_utterance_.load());
                vad_max_ = 0;
            }
            window(p, now);
        }

        // The turn thread took the utterance at the short pause: close it here.
        if (in_utterance_ && taken_version_.load() == version_.load()) close_utterance();
        if (in_utterance_ && utterance_.size() > static_cast<size_t>(a_.max_utterance_s) * kInternalRate) {
            post_pause(EventKind::kPauseLong, now);
            close_utterance();
        }
    }

    void window(float p, Clock::time_point now) {
        bool speech = gate_.window(p);
        if (aec_warming_) {
            speech = false;
            gate_.force_silence();
        }
        if (speech) {
            silence_ms_ = 0;
            run_ms_ += kVadWindowMs;
            last_speech_ = now;
            last_speech_wall_ = std::chrono::system_clock::now();
            if (!in_utterance_) {
                if (SpeechGate::reached(run_ms_, a_.min_speech_ms)) open_utterance();
            } else if (posted_short_) {
                // The caller goes on after a short pause: the speculative transcript is stale.
                posted_short_ = false;
                version_.fetch_add(1);
                std::lock_guard lk(mu_);
                stt_cancel_.cancel();
            }
            if (a_.barge_in && !barged_this_run_ && SpeechGate::reached(run_ms_, a_.barge_in_min_ms) && !final_words_.load() &&
                busy()) {
                barged_this_run_ = true;
                interrupt("speech");
            }
            return;
        }
        silence_ms_ += kVadWindowMs;
        if (silence_ms_ >= kSpeechRunResetMs) {
            run_ms_ = 0;
            barged_this_run_ = false;
        }
        if (!in_utterance_) return;
        if (!posted_short_ && silence_ms_ >= a_.end_of_turn_short_ms) {
            posted_short_ = true;
            post_pause(EventKind::kPauseShort, now);
        }
        if (silence_ms_ >= a_.end_of_turn_long_ms) {
            post_pause(EventKind::kPauseLong, now);
            close_utterance();
        }
    }

    void open_utterance() {
        in_utterance_ = true;
        posted_short_ = false;
        utterance_.assign(pre_roll_.begin(), pre_roll_.end());
        int v = version_.fetch_add(1) + 1;
        post({.kind = EventKind::kSpeechStart, .version = v});
    }

    void close_utterance() {
        in_utterance_ = false;
        posted_short_ = false;
        utterance_.clear();
        version_.fetch_add(1);  // anything still pending for the old utterance is stale
    }

    void post_pause(EventKind kind, Clock::time_point now) {
        Event e{.kind = kind};
        e.pcm = utterance_;
        e.version = version_.load();
        e.speech_end = last_speech_;
        e.speech_end_wall = last_speech_wall_;
        e.detected = now;
        post(std::move(e));
    }

    // ---- what Parley is saying ------------------------------------------------------------------------

    // Parley is speaking, or about to (a turn is being answered).
    bool busy() const { return reply_active_.load() || control_->playout().queued_ms() > 0; }

    // Barge-in (media thread), DTMF, time limit: stop speaking now. Cancels the turn (LLM, pending TTS),
    // drops the queued audio, and works out what the caller heard of the speech that was playing.
    void interrupt(const char* why) {
        const auto t0 = Clock::now();
        int dropped_ms = 0;
        std::string heard;
        int speech_id = 0;
        {
            std::lock_guard lk(push_mu_);
            turn_token_.cancel();
            const double played = static_cast<double>(control_->playout().played_ms());
            dropped_ms = control_->playout().flush();
            pushed_ms_ = played;
            if (current_speech_) {
                std::string h;
                double heard_ms = 0;
                for (auto& seg : current_speech_->segments) heard_ms += std::clamp(played - seg.start_ms, 0.0, seg.dur_ms);
                current_speech_->heard_ms = heard_ms;
                for (auto& seg : current_speech_->segments) {
                    double frac = seg.dur_ms > 0 ? (played - seg.start_ms) / seg.dur_ms : 0;
                    std::string part = heard_prefix(seg.text, std::clamp(frac, 0.0, 1.0));
                    if (!part.empty()) h += (h.empty() ? "" : " ") + part;
                    if (frac < 1.0) break;
                }
                current_speech_->interrupted = true;
                current_speech_->heard = h;
                heard = h;
                speech_id = current_speech_->id;
                current_speech_.reset();
            }
        }
        {
            std::lock_guard lk(mu_);
            stt_cancel_.cancel();
            cv_.notify_all();
        }
        PLOG_INFO("call={} event=barge_in cause={} speech={} dropped_ms={} stop_us={} heard=\"{}\"", call_id_, why,
                  speech_id, dropped_ms, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count(),
                  escape(heard));
    }

    // Pushes a pre-synthesized clip straight into the playout (greeting: no thread hop).
    std::shared_ptr<Speech> play_clip(const Clip& clip) {
        auto speech = std::make_shared<Speech>();
        std::lock_guard lk(push_mu_);
        speech->id = ++speech_seq_;
        const double dur = static_cast<double>(clip.pcm.size()) * 1000.0 / clip.rate;
        speech->segments.push_back({clip.text, pushed_ms_, dur});
        pushed_ms_ += dur;
        control_->playout().push(clip.pcm, clip.rate);
        current_speech_ = speech;
        return speech;
    }

    // The speech that a barge-in from now on interrupts (even before its first audio).
    std::shared_ptr<Speech> new_speech() {
        auto speech = std::make_shared<Speech>();
        std::lock_guard lk(push_mu_);
        speech->id = ++speech_seq_;
        current_speech_ = speech;
        return speech;
    }

    void say(SpeakItem item) {
        std::lock_guard lk(speak_mu_);
        speak_queue_.push_back(std::move(item));
        speak_pending_.fetch_add(1);
        speak_cv_.notify_one();
    }

    void speaker_loop() {
        for (;;) {
            SpeakItem item;
            {
                std::unique_lock lk(speak_mu_);
                speak_cv_.wait(lk, [&] { return stopping_ || !speak_queue_.empty(); });
                if (stopping_) return;
                item = std::move(speak_queue_.front());
                speak_queue_.pop_front();
            }
            speak(item);
            speak_pending_.fetch_sub(1);
        }
    }

    void speak(const SpeakItem& item) {
        if (item.token.cancelled()) return;
        bool first_audio = true;
        Segment* seg = nullptr;
        const auto t0 = Clock::now();
        auto push = [&](std::span<const int16_t> pcm, int rate) {
            std::lock_guard lk(push_mu_);
            if (item.token.cancelled()) return false;
            if (first_audio) {
                first_audio = false;
                if (item.first_of_reply) {
                    std::lock_guard tl(timing_mu_);
                    tts_first_audio_ = Clock::now();
                    tts_first_compute_ms_ = ms_between(t0, *tts_first_audio_);
                    control_->playout().mark();
                }
                item.speech->segments.push_back({item.text, pushed_ms_, 0});
                seg = &item.speech->segments.back();
                current_speech_ = item.speech;
            }
            const double dur = static_cast<double>(pcm.size()) * 1000.0 / rate;
            seg->dur_ms += dur;
            pushed_ms_ += dur;
            control_->playout().push(pcm, rate);
            return true;
        };
        if (item.clip) {
            if (!item.clip->pcm.empty()) push(item.clip->pcm, item.clip->rate);
            return;
        }
        auto r = s_->engines.tts->synthesize(item.text, push, item.token);
        if (!r.ok && !item.token.cancelled())
            PLOG_WARN("call={} event=tts_failed error=\"{}\" text=\"{}\"", call_id_, escape(r.error), escape(item.text));
    }

    // Waits until everything said so far has been played (or the token is cancelled, or the call stops).
    // Returns false when the call is stopping.
    bool wait_played(const CancelToken& token) {
        for (;;) {
            if (stopping()) return false;
            if (token.cancelled()) return true;
            if (speak_pending_.load() == 0 && control_->playout().queued_ms() == 0) return true;
            if (!first_rtp_ && awaiting_rtp_) first_rtp_ = control_->playout().take_mark_time();
            std::unique_lock lk(mu_);
            cv_.wait_for(lk, 10ms);
        }
    }

    // ---- turn thread ----------------------------------------------------------------------------------

    void post(Event e) {
        std::lock_guard lk(mu_);
        events_.push_back(std::move(e));
        cv_.notify_all();
    }

    bool stopping() {
        std::lock_guard lk(mu_);
        return stop_;
    }

    void turn_loop() {
        constexpr auto kNever = Clock::time_point::max();
        Clock::time_point silence_deadline = kNever, dtmf_deadline = kNever;
        while (true) {
            std::optional<Event> ev;
            {
                std::unique_lock lk(mu_);
                auto deadline = std::min({Clock::now() + 50ms, silence_deadline, dtmf_deadline});
                cv_.wait_until(lk, deadline, [&] { return stop_ || !events_.empty(); });
                if (stop_) return;
                if (!events_.empty()) {
                    ev = std::move(events_.front());
                    events_.pop_front();
                }
            }
            if (bridged_.load() || ended_) {
                if (ev && ev->kind == EventKind::kTransfer) handle_transfer(ev->transfer);
                continue;
            }
            const auto now = Clock::now();
            if (!ev) {
                if (now >= dtmf_deadline) {
                    dtmf_deadline = kNever;
                    flush_digits();
                    continue;
                }
                // Silence prompts: count from the moment Parley has finished speaking and nobody talks.
                const bool quiet = !in_utterance_.load() && !busy() && speak_pending_.load() == 0;
                if (!quiet || a_.silence_prompt_s == 0) {
                    silence_deadline = kNever;
                } else if (silence_deadline == kNever) {
                    silence_deadline = now + std::chrono::seconds(a_.silence_prompt_s);
                } else if (now >= silence_deadline) {
                    silence_deadline = kNever;
                    silence_timeout();
                }
                continue;
            }
            switch (ev->kind) {
                case EventKind::kSpeechStart:
                    silence_prompts_ = 0;
                    silence_deadline = kNever;
                    break;
                case EventKind::kPauseShort: handle_short_pause(*ev); break;
                case EventKind::kPauseLong: handle_long_pause(*ev); break;
                case EventKind::kDtmf:
                    silence_deadline = kNever;
                    if (handle_digit(ev->digit)) dtmf_deadline = kNever;
                    else dtmf_deadline = Clock::now() + std::chrono::milliseconds(a_.dtmf_timeout_ms);
                    break;
                case EventKind::kTransfer: handle_transfer(ev->transfer); break;
                case EventKind::kTimeLimit:
                    PLOG_INFO("call={} event=time_limit", call_id_);
                    goodbye_and_hang_up("max_duration");
                    break;
            }
        }
    }


    Transcript_ transcribe(const std::vector<int16_t>& pcm) {
        std::vector<float> f(pcm.size());
        for (size_t i = 0; i < pcm.size(); ++i) f[i] = static_cast<float>(pcm[i]) / 32768.0f;
        CancelToken token;
        {
            std::lock_guard lk(mu_);
            stt_cancel_ = token;
        }
        auto r = s_->engines.stt->transcribe(f, {}, token);
        PLOG_DEBUG("call={} event=stt ok={} audio_ms={} compute_ms={:.0f} text=\"{}\"", call_id_, r.ok,
                   pcm.size() * 1000 / kInternalRate, r.compute_ms, escape(r.text));
        Transcript_ t;
        t.ok = r.ok;
        t.text = r.ok ? clean_transcript(r.text) : "";  // also drops broken UTF-8
        t.compute_ms = r.compute_ms;
        if (!r.ok && r.error != "cancelled") PLOG_WARN("call={} event=stt_failed error=\"{}\"", call_id_, escape(r.error));
        return t;
    }

    void handle_short_pause(const Event& ev) {
        if (ev.version != version_.load()) return;  // the caller went on (or it was already taken)
        auto t = transcribe(ev.pcm);
        if (!t.ok) return;
        speculative_ = Speculative{ev.version, t.text, t.compute_ms, Clock::now()};
        if (!reads_complete(t.text)) return;
        // Take the turn now, unless the caller has resumed meanwhile.
        if (version_.load() != ev.version) return;
        taken_version_.store(ev.version);
        TurnStart ts;
        ts.trigger = "speech";
        ts.user = t.text;
        ts.early_end = true;
        ts.speech_end = ev.speech_end;
        ts.speech_end_wall = ev.speech_end_wall;
        ts.eot = Clock::now();
        ts.stt_final = ts.eot;
        ts.stt_compute_ms = t.compute_ms;
        run_turn(ts);
    }

    void handle_long_pause(const Event& ev) {
        if (taken_version_.load() == ev.version) return;
        TurnStart ts;
        ts.trigger = "speech";
        ts.speech_end = ev.speech_end;
        ts.speech_end_wall = ev.speech_end_wall;
        ts.eot = ev.detected;
        if (speculative_ && speculative_->version == ev.version) {
            ts.user = speculative_->text;  // nothing new was said since: the speculative text is final
            ts.stt_compute_ms = 0;
            ts.stt_final = std::max(ev.detected, speculative_->done);
        } else {
            auto t = transcribe(ev.pcm);
            if (!t.ok) return;
            ts.user = t.text;
            ts.stt_compute_ms = t.compute_ms;
            ts.stt_final = Clock::now();
        }
        run_turn(ts);
    }

    // Runs one exchange: user text → LLM (streamed into the chunker and the speaker) → tools → record.
    void run_turn(TurnStart ts) {
        if (ts.user.empty() && ts.trigger == "speech") {
            PLOG_INFO("call={} event=utterance_ignored reason=empty_transcript", call_id_);
            return;
        }
        {
            // The caller talked over the greeting: the model should know what they heard of it.
            std::lock_guard lk(push_mu_);
            if (greeting_speech_ && greeting_speech_->interrupted && !history_.empty() &&
                history_.front().content == s_->greeting->text) {
                if (greeting_speech_->heard.empty()) history_.erase(history_.begin());
                else history_.front().content = greeting_speech_->heard;
                greeting_speech_.reset();
            }
        }
        if (!pending_user_.empty()) {  // the previous turn was cut before the caller heard anything
            ts.user = pending_user_ + " " + ts.user;
            pending_user_.clear();
        }
        CancelToken token;
        {
            std::lock_guard lk(push_mu_);
            turn_token_ = token;
        }
        reply_active_.store(true);
        auto speech = new_speech();
        {
            std::lock_guard tl(timing_mu_);
            tts_first_audio_.reset();
            tts_first_compute_ms_ = -1;
        }
        first_rtp_.reset();
        awaiting_rtp_ = true;

        TurnRecord rec;
        rec.call = call_id_;
        rec.index = ++turn_index_;
        rec.trigger = ts.trigger;
        rec.user_text = ts.user;
        rec.early_end = ts.early_end;
        rec.speech_end = ts.speech_end_wall;
        history_.push_back({"user", ts.user});

        const auto llm_start = Clock::now();
        std::optional<Clock::time_point> first_token, first_sentence;
        ClauseChunker chunker;
        bool first_clause = true;
        auto emit = [&](std::string clause) {
            if (first_clause) first_sentence = Clock::now();
            say({.text = std::move(clause), .token = token, .speech = speech, .first_of_reply = first_clause});
            first_clause = false;
        };
        llm::Sampling sampling;
        sampling.temperature = s_->config.llm.temperature;
        sampling.top_p = s_->config.llm.top_p;
        sampling.top_k = s_->config.llm.top_k;
        sampling.max_tokens = s_->config.llm.max_tokens;
        sampling.seed = static_cast<uint32_t>(s_->config.llm.seed);
        auto reply = chat_->reply(
            history_,
            [&](std::string_view piece) {
                if (!first_token) first_token = Clock::now();
                for (auto& c : chunker.push(piece)) emit(std::move(c));
                return !token.cancelled();
            },
            token, &sampling);
        if (!token.cancelled()) {
            if (auto rest = chunker.finish(); !rest.empty()) emit(std::move(rest));
        }
        if (!reply.ok && reply.error != "cancelled") {
            PLOG_WARN("call={} event=llm_failed error=\"{}\"", call_id_, escape(reply.error));
            // Dead air is the worst answer: if nothing of the reply was spoken, apologise.
            if (first_clause && !token.cancelled() && s_->trouble && !s_->trouble->pcm.empty())
                say({.text = s_->trouble->text, .token = token, .speech = speech, .clip = s_->trouble,
                     .first_of_reply = true});
        }
        rec.full_reply = valid_utf8(reply.text);

        // Tools run after the spoken part of the reply.
        std::string end_action;
        std::string transfer_to;
        for (auto& tc : reply.tool_calls) {
            rec.tools.push_back(tc.name + "(" + tc.arguments + ")");
            PLOG_INFO("call={} event=tool_call name={} arguments={}", call_id_, tc.name, tc.arguments);
            if (tc.name == "hang_up") {
                end_action = "hang_up";
            } else if (tc.name == "transfer" && !a_.transfer_target.empty()) {
                end_action = "transfer";
                transfer_to = a_.transfer_target;
                auto args = nlohmann::json::parse(tc.arguments, nullptr, false);
                if (args.is_object() && args.contains("target") && args["target"].is_string()) {
                    std::string t = args["target"].get<std::string>();
                    // Only the configured target (or its user part) is accepted: a caller must not be able
                    // to talk the model into dialling arbitrary numbers.
                    if (!t.empty() && t != a_.transfer_target)
                        PLOG_INFO("call={} event=transfer_target_ignored asked=\"{}\" using={}", call_id_, escape(t),
                                  a_.transfer_target);
                }
            } else if (tc.name == "send_dtmf") {
                auto args = nlohmann::json::parse(tc.arguments, nullptr, false);
                std::string digits;
                if (args.is_object() && args.contains("digits") && args["digits"].is_string())
                    digits = args["digits"].get<std::string>();
                std::string ok;
                for (char c : digits)
                    if (std::string_view("0123456789*#ABCD").find(c) != std::string_view::npos) ok.push_back(c);
                if (!ok.empty()) {
                    wait_played(token);
                    control_->send_dtmf(ok);
                }
            }
        }
        const bool call_going_on = wait_played(token);
        if (!call_going_on) {
            // The caller hung up mid-reply: what they heard is what had been played by now.
            interrupt("hangup");
        }

        // What did the caller hear?
        bool interrupted = token.cancelled();
        std::string heard;
        double heard_ms = -1;  // -1: all of it
        {
            std::lock_guard lk(push_mu_);
            if (speech->interrupted) {
                interrupted = true;
                heard = speech->heard;
                heard_ms = speech->heard_ms;
            } else if (!interrupted) {
                for (auto& seg : speech->segments) heard += (heard.empty() ? "" : " ") + seg.text;
            } else {
                heard = speech->heard;
                heard_ms = speech->heard_ms;
            }
            if (current_speech_ == speech) current_speech_.reset();
        }
        reply_active_.store(false);
        rec.interrupted = interrupted;
        rec.reply_text = heard;
        if (interrupted && heard_ms >= 0 && heard_ms < kUnheardMs) {
            // Nothing of the reply reached the caller: they were still talking. Keep their words for the
            // next turn instead of answering a sentence they had not finished.
            history_.pop_back();
            pending_user_ = ts.user;
        } else {
            // Not interrupted: `heard` is every clause spoken; empty only if the reply had nothing to say.
            history_.push_back({"assistant", heard.empty() ? valid_utf8(reply.text) : heard});
        }

        // Timing.
        if (!first_rtp_) first_rtp_ = control_->playout().take_mark_time();
        awaiting_rtp_ = false;
        auto rel = [&](std::optional<Clock::time_point> t) { return t ? ms_between(ts.speech_end, *t) : -1.0; };
        TurnTiming& tm = rec.timing;
        tm.eot_wait_ms = ms_between(ts.speech_end, ts.eot);
        tm.stt_final_ms = ms_between(ts.speech_end, ts.stt_final);
        tm.stt_compute_ms = ts.stt_compute_ms;
        tm.llm_first_token_ms = rel(first_token);
        tm.first_sentence_ms = rel(first_sentence);
        {
            std::lock_guard tl(timing_mu_);
            tm.tts_first_audio_ms = rel(tts_first_audio_);
            tm.tts_first_compute_ms = tts_first_compute_ms_;
        }
        tm.first_rtp_ms = rel(first_rtp_);
        if (tm.first_rtp_ms >= 0 && tm.first_sentence_ms >= 0 && tm.tts_first_compute_ms >= 0)
            tm.overhead_ms = (tm.first_rtp_ms - tm.stt_final_ms) - ms_between(llm_start, *first_sentence) -
                             tm.tts_first_compute_ms;
        record(rec);
        if (!call_going_on) return;

        if (end_action == "hang_up") {
            if (reply.text.empty() || interrupted) goodbye_and_hang_up("agent_hang_up");
            else {
                ended_ = true;
                linger();
                control_->hangup("agent_hang_up");
            }
        } else if (end_action == "transfer") {
            start_transfer(transfer_to);
        }
    }

    void record(const TurnRecord& rec) {
        const auto& t = rec.timing;
        std::string tools;
        for (auto& x : rec.tools) tools += (tools.empty() ? "" : ";") + x;
        PLOG_INFO("call={} event=turn turn={} trigger={} early_end={} interrupted={} eot_ms={:.0f} stt_final_ms={:.0f} "
                  "stt_compute_ms={:.0f} llm_first_token_ms={:.0f} first_sentence_ms={:.0f} tts_first_audio_ms={:.0f} "
                  "tts_compute_ms={:.1f} first_rtp_ms={:.0f} v2v_ms={:.0f} overhead_ms={:.1f} tools=\"{}\" user=\"{}\" "
                  "reply=\"{}\"",
                  rec.call, rec.index, rec.trigger, rec.early_end ? 1 : 0, rec.interrupted ? 1 : 0, t.eot_wait_ms,
                  t.stt_final_ms, t.stt_compute_ms, t.llm_first_token_ms, t.first_sentence_ms, t.tts_first_audio_ms,
                  t.tts_first_compute_ms, t.first_rtp_ms, t.first_rtp_ms, t.overhead_ms, escape(tools),
                  escape(rec.user_text), escape(rec.reply_text));
        if (s_->observer) s_->observer->on_turn(rec);
    }

    // Plays a clip (or synthesizes text) and waits until it has been heard. false if the call stops.
    bool say_and_wait(const std::shared_ptr<const Clip>& clip, const std::string& text = {}) {
        CancelToken token;
        {
            std::lock_guard lk(push_mu_);
            turn_token_ = token;
        }
        reply_active_.store(true);
        auto speech = new_speech();
        if (clip) say({.text = clip->text, .token = token, .speech = speech, .clip = clip});
        else say({.text = text, .token = token, .speech = speech});
        bool ok = wait_played(token);
        reply_active_.store(false);
        return ok;
    }

    void goodbye_and_hang_up(const std::string& reason) {
        if (ended_) return;
        ended_ = true;
        final_words_.store(true);
        if (s_->goodbye && !s_->goodbye->pcm.empty()) {
            // The goodbye is not interruptible by speech: the decision to end is made.
            if (!say_and_wait(s_->goodbye)) return;
        }
        linger();
        control_->hangup(reason);
    }

    // The last packet of a goodbye has just been sent: give the far end's jitter buffer time to play it
    // before the BYE (a phone drops what it has not played yet).
    void linger() {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, kByeAfterLastAudio, [&] { return stop_; });
    }

    void silence_timeout() {
        if (silence_prompts_ >= a_.silence_prompts_max) {
            PLOG_INFO("call={} event=silence_end prompts={}", call_id_, silence_prompts_);
            goodbye_and_hang_up("caller_silent");
            return;
        }
        ++silence_prompts_;
        PLOG_INFO("call={} event=silence_prompt n={}", call_id_, silence_prompts_);
        if (s_->silence_prompt && !s_->silence_prompt->pcm.empty()) {
            history_.push_back({"assistant", s_->silence_prompt->text});
            say_and_wait(s_->silence_prompt);
        }
    }

    // true when the digit was handled (an action or the end of a digit string).
    bool handle_digit(char digit) {
        PLOG_INFO("call={} event=dtmf digit={}", call_id_, digit);
        if (auto it = s_->dtmf_actions.find(digit); it != s_->dtmf_actions.end()) {
            digits_.clear();
            if (it->second == "hang_up") goodbye_and_hang_up("dtmf_hang_up");
            else if (it->second == "transfer") start_transfer(a_.transfer_target);
            return true;
        }
        if (digit == '#' && !digits_.empty()) {
            flush_digits();
            return true;
        }
        digits_.push_back(digit);
        return false;
    }

    void flush_digits() {
        if (digits_.empty()) return;
        std::string text = "[keypad";
        for (char c : digits_) text += fmt::format(" {}", c);
        text += "]";
        digits_.clear();
        TurnStart ts;
        ts.trigger = "dtmf";
        ts.user = text;
        ts.speech_end = ts.eot = ts.stt_final = Clock::now();
        ts.speech_end_wall = std::chrono::system_clock::now();
        run_turn(ts);
    }

    void start_transfer(const std::string& target) {
        if (target.empty() || transferring_) return;
        transferring_ = true;
        PLOG_INFO("call={} event=transfer_start target={}", call_id_, target);
        if (s_->transferring && !say_and_wait(s_->transferring)) return;
        control_->transfer(target);
    }

    void handle_transfer(const call::TransferResult& r) {
        transferring_ = false;
        PLOG_INFO("call={} event=transfer_done outcome={} status={} detail=\"{}\"", call_id_,
                  call::transfer_outcome_str(r.outcome), r.status, escape(r.detail));
        if (r.outcome == call::TransferOutcome::kFailed && !bridged_.load() && !ended_) {
            history_.push_back({"assistant", kTransferFailed});
            say_and_wait(s_->transfer_failed);
        }
        if (r.outcome == call::TransferOutcome::kTransferred) ended_ = true;
    }

    void stop_threads() {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
            stt_cancel_.cancel();
            cv_.notify_all();
        }
        {
            std::lock_guard lk(push_mu_);
            turn_token_.cancel();
        }
        {
            std::lock_guard lk(speak_mu_);
            stopping_ = true;
            for (auto& it : speak_queue_) it.token.cancel();
            speak_cv_.notify_all();
        }
        if (turn_thread_.joinable()) turn_thread_.join();
        if (speaker_thread_.joinable()) speaker_thread_.join();
    }

    std::shared_ptr<const Shared> s_;
    const AgentConfig& a_;
    call::CallControl* control_ = nullptr;
    call::CallId call_id_ = 0;
    std::unique_ptr<llm::Chat> chat_;
    std::atomic<bool> media_ready_{false}, bridged_{false};
    std::atomic<bool> final_words_{false};  // the goodbye is playing: not interruptible
    std::string init_error_;

    // media thread only
    std::unique_ptr<stt::Vad> vad_;
    std::unique_ptr<EchoCanceller> aec_;
    std::unique_ptr<media::Resampler> ref_resampler_;
    std::vector<int16_t> ref_codec_, ref16_;
    std::vector<float> probs_;
    float vad_max_ = 0;
    uint64_t vad_windows_ = 0;
    std::deque<int16_t> pre_roll_;
    std::vector<int16_t> utterance_;
    SpeechGate gate_{a_.vad_threshold};
    std::atomic<bool> in_utterance_{false};  // written here; the turn thread reads it for silence prompts
    bool posted_short_ = false, barged_this_run_ = false;
    bool aec_warming_ = false;
    int ref_active_ms_ = 0, ref_quiet_ms_ = 1 << 20;
    int silence_ms_ = 0, run_ms_ = 0;
    Clock::time_point last_speech_{};
    std::chrono::system_clock::time_point last_speech_wall_{};

    // shared between the media and turn threads
    std::atomic<int> version_{0}, taken_version_{-1};
    std::atomic<bool> reply_active_{false};

    // push_mu_: what is queued in the playout and whose speech it is
    std::mutex push_mu_;
    CancelToken turn_token_;
    double pushed_ms_ = 0;
    int speech_seq_ = 0;
    std::shared_ptr<Speech> current_speech_, greeting_speech_;

    // event queue (mu_)
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    bool stop_ = false;
    CancelToken stt_cancel_;

    // speaker queue (speak_mu_)
    std::mutex speak_mu_;
    std::condition_variable speak_cv_;
    std::deque<SpeakItem> speak_queue_;
    bool stopping_ = false;
    std::atomic<int> speak_pending_{0};

    // timing of the current reply's first audio (speaker thread writes, turn thread reads)
    std::mutex timing_mu_;
    std::optional<Clock::time_point> tts_first_audio_;
    double tts_first_compute_ms_ = -1;

    // turn thread only
    std::vector<llm::Message> history_;
    std::optional<Speculative> speculative_;
    std::string pending_user_;
    std::string digits_;
    std::optional<Clock::time_point> first_rtp_;
    bool awaiting_rtp_ = false;
    int turn_index_ = 0, silence_prompts_ = 0;
    bool ended_ = false, transferring_ = false;

    std::thread turn_thread_, speaker_thread_;  // last: joined in on_end / the destructor
};

class Factory final : public ConversationFactory {
public:
    Factory(Engines engines, TurnObserver* observer) : engines_(std::move(engines)), observer_(observer) {}

    bool reconfigure(const Config& config, std::string* error, const Engines* engines) override {
        auto s = std::make_shared<Shared>();
        s->config = config;
        {
            std::lock_guard lk(mu_);
            s->engines = engines ? *engines : engines_;
        }
        s->observer = observer_;
        auto& tts = *s->engines.tts;
        if (!(s->greeting = synthesize_clip(tts, config.agent.greeting, error))) return false;
        if (!(s->goodbye = synthesize_clip(tts, config.agent.goodbye, error))) return false;
        if (!(s->silence_prompt = synthesize_clip(tts, config.agent.silence_prompt, error))) return false;
        if (!(s->transferring = synthesize_clip(tts, kTransferring, error))) return false;
        if (!(s->transfer_failed = synthesize_clip(tts, kTransferFailed, error))) return false;
        if (!(s->trouble = synthesize_clip(tts, kTrouble, error))) return false;
        for (auto& act : config.agent.dtmf_actions) s->dtmf_actions[act[0]] = act.substr(2);
        // The VAD model must load before the first call needs it.
        if (!stt::create_vad(config.stt.vad_model, error)) return false;
        if (config.agent.echo_canceller && !EchoCanceller::create(error)) return false;
        std::lock_guard lk(mu_);
        engines_ = s->engines;
        shared_ = std::move(s);
        return true;
    }

    std::unique_ptr<call::CallHandler> create_with_greeting(const std::string& first_message,
                                                            std::string* error) override {
        std::shared_ptr<const Shared> base;
        {
            std::lock_guard lk(mu_);
            base = shared_;
        }
        auto s = std::make_shared<Shared>(*base);
        if (!(s->greeting = synthesize_clip(*s->engines.tts, first_message, error))) return nullptr;
        s->config.agent.greeting = first_message;
        auto h = std::make_unique<ConversationHandler>(std::move(s));
        std::string err;
        h->init(&err);  // on failure the handler hangs up at start, with the error logged
        return h;
    }

    std::unique_ptr<call::CallHandler> create() override {
        std::shared_ptr<const Shared> s;
        {
            std::lock_guard lk(mu_);
            s = shared_;
        }
        auto h = std::make_unique<ConversationHandler>(s);
        std::string err;
        h->init(&err);  // on failure the handler hangs up at start, with the error logged
        return h;
    }

private:
    Engines engines_;
    TurnObserver* observer_;
    std::mutex mu_;
    std::shared_ptr<const Shared> shared_;
};

}  // namespace

std::vector<llm::Tool> tools_for(const AgentConfig& agent) {
    std::vector<llm::Tool> tools;
    for (auto& name : agent.tools) {
        if (name == "hang_up") {
            tools.push_back({"hang_up", "End the call. Say goodbye in your reply first.",
                             R"({"type":"object","properties":{}})"});
        } else if (name == "transfer" && !agent.transfer_target.empty()) {
            tools.push_back({"transfer", "Transfer the caller to a human operator.",
                             R"j({"type":"object","properties":{"target":{"type":"string","description":"who to transfer to (optional)"}}})j"});
        } else if (name == "send_dtmf") {
            tools.push_back({"send_dtmf", "Send touch-tone digits on the line (e.g. to navigate a menu).",
                             R"({"type":"object","properties":{"digits":{"type":"string","description":"0-9, * and #"}},"required":["digits"]})"});
        }
    }
    return tools;
}

std::unique_ptr<ConversationFactory> make_conversation_factory(const Config& config, Engines engines,
                                                               TurnObserver* observer, std::string* error) {
    if (!engines.stt || !engines.llm || !engines.tts) {
        if (error) *error = "the conversation handler needs STT, LLM and TTS engines";
        return nullptr;
    }
    auto f = std::make_unique<Factory>(std::move(engines), observer);
    if (!f->reconfigure(config, error, nullptr)) return nullptr;
    return f;
}

}  // namespace parley::agent
