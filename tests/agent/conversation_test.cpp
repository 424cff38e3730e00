// The conversation handler in-process, with the real engines on the generated test models: a fake call
// whose "media thread" (the test) pops the playout every 20 ms like the RTP sender does and feeds the
// handler 16 kHz frames: silence, espeak-ng speech (the caller), or Parley's own audio (an echo).
// What users see end to end over SIP is in tests/integration/test_conversation*.py; these pin down the
// turn-taking logic deterministically and run under ASan/UBSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "agent/conversation.h"
#include "media/resampler.h"

using namespace parley;
using namespace std::chrono_literals;

namespace {

struct Turns final : agent::TurnObserver {
    void on_turn(const agent::TurnRecord& t) override {
        std::lock_guard lk(mu);
        turns.push_back(t);
        cv.notify_all();
    }
    bool wait(size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, timeout, [&] { return turns.size() >= n; });
    }
    std::vector<agent::TurnRecord> get() {
        std::lock_guard lk(mu);
        return turns;
    }
    std::mutex mu;
    std::condition_variable cv;
    std::vector<agent::TurnRecord> turns;
};

struct FakeCall final : call::CallControl {
    call::CallId id() const override { return 7; }
    void hangup(const std::string& reason) override {
        std::lock_guard lk(mu);
        hangups.push_back(reason);
    }
    void send_dtmf(const std::string& d) override {
        std::lock_guard lk(mu);
        dtmf += d;
    }
    void transfer(const std::string& t) override {
        std::lock_guard lk(mu);
        transfers.push_back(t);
    }
    media::Playout& playout() override { return out; }
    std::vector<std::string> hangup_reasons() {
        std::lock_guard lk(mu);
        return hangups;
    }
    media::Playout out{8000};
    std::mutex mu;
    std::vector<std::string> hangups, transfers;
    std::string dtmf;
};

struct Env {
    Config config;
    agent::Engines engines;
};

Env& env() {
    static Env* e = [] {
        auto* x = new Env;
        x->config.stt.model = PARLEY_STT_TEST_MODEL;
        x->config.stt.vad_model = PARLEY_VAD_MODEL;
        x->config.stt.workers = 1;
        x->config.llm.model = PARLEY_LLM_TEST_MODEL;
        x->config.llm.temperature = 0;
        x->config.llm.max_tokens = 6;  // the random model babbles; espeak spells it out slowly
        x->config.llm.max_sequences = 2;
        x->config.llm.context = 2048;
        std::string err;
        x->engines.stt = stt::create(x->config.stt, &err);
        x->engines.llm = llm::create(x->config.llm, &err, agent::tools_for(x->config.agent));
        x->engines.tts = tts::create(x->config.tts, &err);
        if (!x->engines.stt || !x->engines.llm || !x->engines.tts) {
            ADD_FAILURE() << "engines: " << err;
        }
        return x;
    }();
    return *e;
}

// 16 kHz speech from espeak-ng (the caller's voice: a different voice than Parley's en-us default).
std::vector<int16_t> caller_speech(const std::string& text) {
    TtsConfig c;
    c.voice = "en-gb";
    c.rate_wpm = 160;
    std::string err;
    auto tts = tts::create(c, &err);
    std::vector<int16_t> raw;
    int rate = 0;
    tts->synthesize(text, [&](std::span<const int16_t> pcm, int r) {
        rate = r;
        raw.insert(raw.end(), pcm.begin(), pcm.end());
        return true;
    }, CancelToken());
    std::vector<int16_t> out;
    media::Resampler rs(rate, kInternalRate);
    rs.process(raw, out);
    return out;
}

double rms(std::span<const int16_t> x) {
    double s = 0;
    for (auto v : x) s += double(v) * v;
    return x.empty() ? 0 : std::sqrt(s / double(x.size()));
}

// Drives one call in real time: every 20 ms pops a packet's worth of playout (what the caller hears) and
// feeds the handler one frame from `source(frame_index, heard_8k)`.
class Driver {
public:
    Driver(agent::ConversationFactory& f) : handler(f.create()) {}
    ~Driver() { end(); }
    void start() { handler->on_start(call); }
    // Runs `frames` ticks. `near` fills the caller's frame (default silence). Returns per-tick RMS heard.
    void run(int frames, const std::function<void(int, std::span<const int16_t>, AudioFrame&)>& near = {}) {
        auto next = std::chrono::steady_clock::now();
        std::array<int16_t, 160> pkt{};
        for (int i = 0; i < frames; ++i) {
            pkt.fill(0);
            call.out.pop(pkt);
            heard_rms.push_back(rms(pkt));
            queued.push_back(call.out.queued_ms());
            heard.insert(heard.end(), pkt.begin(), pkt.end());
            AudioFrame f;
            if (near) near(tick, pkt, f);
            handler->on_audio(f);
            ++tick;
            next += 20ms;
            std::this_thread::sleep_until(next);
        }
    }
    void end() {
        if (handler) {
            handler->on_end();
            handler.reset();
        }
    }
    FakeCall call;
    std::unique_ptr<call::CallHandler> handler;
    // Pumps until `done()` or `timeout`; true if done.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() > end) return false;
            run(1);
        }
        return true;
    }
    std::vector<double> heard_rms;
    std::vector<int> queued;  // playout ms queued after each tick
    std::vector<int16_t> heard;
    int tick = 0;
};

// Caller speech starting at tick `from`.
auto speak_at(const std::vector<int16_t>& speech, int from) {
    return [&speech, from](int tick, std::span<const int16_t>, AudioFrame& f) {
        long off = long(tick - from) * kFrameSamples;
        if (off < 0 || off + kFrameSamples > long(speech.size())) return;
        std::copy_n(speech.begin() + off, kFrameSamples, f.samples.begin());
    };
}

std::unique_ptr<agent::ConversationFactory> factory(Turns& turns, const std::function<void(Config&)>& tweak = {}) {
    Config c = env().config;
    c.agent.greeting = "Hello.";
    c.agent.silence_prompt_s = 0;
    if (tweak) tweak(c);
    std::string err;
    auto f = agent::make_conversation_factory(c, env().engines, &turns, &err);
    EXPECT_TRUE(f) << err;
    return f;
}

int first_tick_with_sound(const std::vector<double>& r, int from, double thr = 200) {
    for (int i = from; i < int(r.size()); ++i)
        if (r[size_t(i)] > thr) return i;
    return -1;
}

}  // namespace

TEST(Conversation, GreetsThenAnswersTheCallerWithEveryStageTimed) {
    Turns turns;
    auto f = factory(turns);
    auto speech = caller_speech("I would like to book a table for two people tonight.");
    Driver d(*f);
    d.start();
    d.run(50);  // 1 s: the greeting plays
    EXPECT_GE(first_tick_with_sound(d.heard_rms, 0), 0) << "the greeting is heard at once";
    EXPECT_LE(first_tick_with_sound(d.heard_rms, 0), 2);
    const int speak_from = d.tick;
    const int speech_ticks = int(speech.size()) / kFrameSamples;
    d.run(speech_ticks + 150, speak_at(speech, speak_from));  // the sentence, then 3 s for the reply
    ASSERT_TRUE(d.run_until([&] { return !turns.get().empty(); }, 40s)) << "no turn recorded";
    auto t = turns.get()[0];
    EXPECT_EQ(t.trigger, "speech");
    EXPECT_FALSE(t.user_text.empty());
    EXPECT_FALSE(t.reply_text.empty());
    EXPECT_FALSE(t.interrupted);
    const auto& tm = t.timing;
    EXPECT_GE(tm.eot_wait_ms, 200);  // at least the short pause
    EXPECT_LE(tm.eot_wait_ms, tm.stt_final_ms + 1);
    EXPECT_LE(tm.stt_final_ms, tm.llm_first_token_ms);
    EXPECT_LE(tm.llm_first_token_ms, tm.first_sentence_ms);
    EXPECT_LE(tm.first_sentence_ms, tm.tts_first_audio_ms);
    EXPECT_LE(tm.tts_first_audio_ms, tm.first_rtp_ms);
    EXPECT_GE(tm.overhead_ms, 0);
    // The reply is heard after the caller's speech: sound in the playout after the speech ended.
    int reply_tick = first_tick_with_sound(d.heard_rms, speak_from + speech_ticks);
    EXPECT_GT(reply_tick, 0) << "no reply audio after the caller spoke";
}

TEST(Conversation, BargeInSilencesParleyWithinAFrameOfDetectionAndKeepsOnlyWhatWasHeard) {
    Turns turns;
    auto f = factory(turns, [](Config& c) { c.llm.max_tokens = 40; });
    auto speech = caller_speech("Can you tell me the opening hours please?");
    auto interruption = caller_speech("No wait, stop, I have a different question about my order.");
    Driver d(*f);
    d.start();
    d.run(40);
    const int speak_from = d.tick;
    const int speech_ticks = int(speech.size()) / kFrameSamples;
    // Speak, then wait until Parley's reply is audible.
    int reply_tick = -1;
    d.run(speech_ticks, speak_at(speech, speak_from));
    for (int i = 0; i < 400 && reply_tick < 0; ++i) {
        d.run(1);
        reply_tick = first_tick_with_sound(d.heard_rms, speak_from + speech_ticks);
    }
    ASSERT_GT(reply_tick, 0) << "Parley never replied";
    d.run(40);  // 800 ms into the reply
    ASSERT_GT(d.call.out.queued_ms(), 500) << "the reply should still be playing (make it longer)";
    const int barge_from = d.tick;
    d.run(60, speak_at(interruption, barge_from));
    // Parley's audio stops: find the first silent tick after the caller's onset.
    int silent = -1;
    for (int i = barge_from; i < int(d.heard_rms.size()); ++i)
        if (d.heard_rms[size_t(i)] < 50 && d.queued[size_t(i)] == 0) {
            silent = i;
            break;
        }
    ASSERT_GT(silent, 0) << "Parley kept talking over the caller";
    const double stop_ms = (silent - barge_from) * 20.0;
    const double budget = env().config.agent.barge_in_min_ms + 2 * 32 + 60;
    EXPECT_GE(stop_ms, env().config.agent.barge_in_min_ms - 40) << "silent before enough speech: a pause, not the barge-in";
    std::printf("barge-in: Parley silent %.0f ms after the caller's onset (min speech %d ms + VAD windows)\n", stop_ms,
                env().config.agent.barge_in_min_ms);
    EXPECT_LE(stop_ms, budget);
    ASSERT_TRUE(d.run_until([&] { return !turns.get().empty(); }, 20s));
    auto t = turns.get()[0];
    EXPECT_TRUE(t.interrupted);
    EXPECT_LT(t.reply_text.size(), t.full_reply.size()) << "the history keeps only what was heard";
}

TEST(Conversation, ItsOwnEchoDoesNotInterruptItButWithoutTheCancellerItWould) {
    for (bool aec : {true, false}) {
        Turns turns;
        auto f = factory(turns, [&](Config& c) {
            c.agent.echo_canceller = aec;
            c.agent.greeting = "Thank you for calling the Parley test line. All of our agents are busy right now, "
                               "but I am happy to help you with your booking.";
        });
        Driver d(*f);
        d.start();
        // The far end sends back what it heard, 100 ms later, 6 dB down (a speakerphone / hybrid echo).
        std::deque<int16_t> line(800, 0);
        media::Resampler up(8000, kInternalRate);
        std::vector<int16_t> up16;
        d.run(300, [&](int, std::span<const int16_t> heard8k, AudioFrame& fr) {
            up16.clear();
            up.process(heard8k, up16);
            for (auto v : up16) line.push_back(int16_t(v / 2));
            for (int i = 0; i < kFrameSamples && !line.empty(); ++i) {
                fr.samples[size_t(i)] = line.front();
                line.pop_front();
            }
        });
        const int greeting_ticks = int(std::count_if(d.heard_rms.begin(), d.heard_rms.end(), [](double r) { return r > 200; }));
        std::printf("echo canceller %s: %d ticks of greeting heard, %zu turns\n", aec ? "on" : "off", greeting_ticks,
                    turns.get().size());
        if (aec) {
            EXPECT_GT(greeting_ticks, 250) << "the whole greeting (about 7 s) must play: an echo interrupted it";
            EXPECT_TRUE(turns.get().empty()) << "the echo was taken for the caller";
        } else {
            EXPECT_LT(greeting_ticks, 200) << "control: without the canceller the echo should barge in";
        }
    }
}

TEST(Conversation, HangupMidReplyStopsEverythingAtOnceAndFreesTheSequence) {
    Turns turns;
    auto f = factory(turns, [](Config& c) { c.llm.max_tokens = 40; });
    auto speech = caller_speech("Tell me everything about your shop.");
    Driver d(*f);
    d.start();
    d.run(30);
    d.run(int(speech.size()) / kFrameSamples + 80, speak_at(speech, d.tick));
    const auto t0 = std::chrono::steady_clock::now();
    d.end();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("on_end took %.1f ms\n", ms);
    EXPECT_LT(ms, 1000);
    EXPECT_EQ(env().engines.llm->active_sequences(), 0);
}

TEST(Conversation, KeypadDigitsReachTheModelAndActionsRun) {
    Turns turns;
    auto f = factory(turns, [](Config& c) { c.agent.dtmf_actions = {"0=hang_up"}; });
    Driver d(*f);
    d.start();
    d.run(40);
    d.handler->on_dtmf('1');
    d.handler->on_dtmf('2');
    d.handler->on_dtmf('#');
    ASSERT_TRUE(d.run_until([&] { return !turns.get().empty(); }, 40s));
    EXPECT_EQ(turns.get()[0].trigger, "dtmf");
    EXPECT_EQ(turns.get()[0].user_text, "[keypad 1 2]");
    d.handler->on_dtmf('0');
    for (int i = 0; i < 300 && d.call.hangup_reasons().empty(); ++i) d.run(1);
    ASSERT_EQ(d.call.hangup_reasons(), std::vector<std::string>{"dtmf_hang_up"});
    EXPECT_EQ(d.call.out.queued_ms(), 0) << "the goodbye was played before hanging up";
}

TEST(Conversation, SilencePromptsThenGoodbye) {
    Turns turns;
    auto f = factory(turns, [](Config& c) {
        c.agent.silence_prompt_s = 1;
        c.agent.silence_prompts_max = 1;
    });
    Driver d(*f);
    d.start();
    for (int i = 0; i < 600 && d.call.hangup_reasons().empty(); ++i) d.run(1);
    ASSERT_EQ(d.call.hangup_reasons(), std::vector<std::string>{"caller_silent"});
    // greeting, prompt, goodbye: three separate bursts of sound
    int bursts = 0;
    bool in = false;
    int quiet = 0;
    for (double r : d.heard_rms) {
        if (r > 200) {
            if (!in && quiet > 25) ++bursts;
            if (!in && bursts == 0) bursts = 1;
            in = true;
            quiet = 0;
        } else {
            ++quiet;
            if (quiet > 25) in = false;
        }
    }
    EXPECT_EQ(bursts, 3);
}

TEST(Conversation, TimeLimitSaysGoodbyeAndHangsUp) {
    Turns turns;
    auto f = factory(turns);
    Driver d(*f);
    d.start();
    d.run(10);
    EXPECT_TRUE(d.handler->on_time_limit());
    for (int i = 0; i < 400 && d.call.hangup_reasons().empty(); ++i) d.run(1);
    ASSERT_EQ(d.call.hangup_reasons(), std::vector<std::string>{"max_duration"});
}

TEST(Conversation, AnUnreachableModelGetsAnApologyNotDeadAir) {
    Turns turns;
    Config c = env().config;
    c.agent.greeting = "Hello.";
    c.agent.silence_prompt_s = 0;
    c.llm.engine = "openai";
    c.llm.remote.base_url = "http://127.0.0.1:9/v1";  // discard port: connection refused
    c.llm.remote.retries = 0;
    std::string err;
    auto llm = llm::create(c.llm, &err);
    ASSERT_TRUE(llm) << err;
    agent::Engines engines = env().engines;
    engines.llm = std::move(llm);
    auto f = agent::make_conversation_factory(c, engines, &turns, &err);
    ASSERT_TRUE(f) << err;
    auto speech = caller_speech("Hello, is anybody there?");
    Driver d(*f);
    d.start();
    d.run(30);
    const int speak_from = d.tick;
    const int speech_ticks = int(speech.size()) / kFrameSamples;
    d.run(speech_ticks, speak_at(speech, speak_from));
    ASSERT_TRUE(d.run_until([&] { return !turns.get().empty(); }, 30s));
    auto t = turns.get()[0];
    EXPECT_EQ(t.reply_text, "I'm sorry, I am having trouble answering right now. Please try again.");
    EXPECT_GT(first_tick_with_sound(d.heard_rms, speak_from + speech_ticks), 0) << "the caller heard nothing";
}
