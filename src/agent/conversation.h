// conversation.h — the conversation call handler: the product. A caller speaks, Parley answers.
//
//   agent::Engines engines{stt, llm, tts};                      // loaded once by the app, shared by all calls
//   auto factory = agent::make_conversation_factory(config, engines, &turn_log, &err);
//   CallManager manager(config, *factory);                      // one ConversationHandler per call
//
// Per call, data flows one way: 16 kHz frames (media thread) → echo canceller (our playout is the
// reference) → streaming Silero VAD → utterance → end of turn (speculative STT at a short pause, ends early
// when the text reads complete; else a long pause) → STT → LLM tokens → clause chunker → TTS → Playout →
// paced RTP. One CancelToken per turn flows back: barge-in (caller speech while Parley speaks), DTMF, hangup.
// Threads per call: the media thread (never blocks: VAD, barge-in, flush), a turn thread (STT, LLM, tools,
// prompts, timers) and a speaker thread (TTS into the playout). Both are joined in on_end(), which returns
// only when nothing of the call is left running. docs/conversation.md explains turn-taking and barge-in.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "call/handler.h"
#include "common/config.h"
#include "llm/llm.h"
#include "stt/stt.h"
#include "tts/tts.h"

namespace parley::agent {

struct Engines {
    std::shared_ptr<stt::SpeechToText> stt;
    std::shared_ptr<llm::LanguageModel> llm;
    std::shared_ptr<tts::TextToSpeech> tts;
};

// The tools a config offers the model (hang_up, transfer — only with agent.transfer_target —, send_dtmf).
std::vector<llm::Tool> tools_for(const AgentConfig& agent);

// What happened in one turn and when. Times are milliseconds after `speech_end` (the end of the last 32 ms
// VAD window with speech in the caller's utterance), -1 when the stage did not happen (e.g. a turn cut by
// barge-in before any audio).
struct TurnTiming {
    double eot_wait_ms = -1;       // end-of-turn decided (short pause + complete text, or long pause)
    double stt_final_ms = -1;      // final transcript available
    double llm_first_token_ms = -1;
    double first_sentence_ms = -1; // first speakable clause out of the chunker
    double tts_first_audio_ms = -1;
    double first_rtp_ms = -1;      // first RTP packet carrying the reply: voice-to-voice latency
    double stt_compute_ms = -1;    // decode time of the transcript used (0 when the speculative one was reused)
    double tts_first_compute_ms = -1;  // synthesis time of the first clause's first audio
    double overhead_ms = -1;       // first_rtp - eot_wait - stt_compute - (first_sentence - llm start) - tts_first_compute
};

struct TurnRecord {
    call::CallId call = 0;
    int index = 0;                 // 1, 2, … within the call (the greeting is not a turn)
    std::string trigger;           // "speech", "dtmf", "silence", "time_limit"
    std::string user_text;         // what the caller said (or "[keypad 1 2]")
    std::string reply_text;        // what the caller heard of Parley's reply
    std::string full_reply;        // everything the model generated (tool-call markup excluded)
    bool interrupted = false;      // barge-in cut the reply
    bool early_end = false;        // the speculative transcript ended the turn at the short pause
    std::vector<std::string> tools;  // tool calls, as "name(arguments)"
    std::chrono::system_clock::time_point speech_end;
    TurnTiming timing;
};

// Receives every completed turn (from the call's turn thread; must not block for long). The operations
// layer stores them; tests read the `event=turn` log line that is written for each.
class TurnObserver {
public:
    virtual ~TurnObserver() = default;
    virtual void on_turn(const TurnRecord& turn) = 0;
};

// nullptr and *error when the greeting/goodbye cannot be synthesized or the VAD model cannot be loaded.
// Greeting, goodbye and silence prompt are synthesized once here; reconfigure() does it again.
class ConversationFactory : public call::HandlerFactory {
public:
    // Applies a new config for calls that start after it returns; calls in progress keep theirs. `engines`
    // (optional) replaces the engines too (the caller made them from the new [stt]/[llm]/[tts]); calls in
    // progress keep the old ones alive until they end.
    virtual bool reconfigure(const Config& config, std::string* error, const Engines* engines = nullptr) = 0;
    // A handler that says `first_message` instead of the greeting when the call is answered (an outbound call
    // placed with POST /api/calls). nullptr and *error when it cannot be synthesized.
    virtual std::unique_ptr<call::CallHandler> create_with_greeting(const std::string& first_message,
                                                                    std::string* error) = 0;
};

std::unique_ptr<ConversationFactory> make_conversation_factory(const Config& config, Engines engines,
                                                               TurnObserver* observer, std::string* error);

}  // namespace parley::agent
