// llm.h — the language model: chat replies streamed token by token, for many calls at once.
//
//   auto llm = parley::llm::create(config.llm, &err);            // loads the model once
//   auto chat = llm->open();                                     // one per call: its own sequence/history
//   chat->reply(history, [&](std::string_view piece) { speak(piece); return true; }, token);
//
// Embedded (llama.cpp): one llama_context serves every call; each open Chat owns a sequence; one engine
// thread decodes all active sequences together in each step (continuous batching, like llama-server's
// slots), so a call's reply never waits for another call's whole reply. The system prompt's KV is
// computed once and copied into each new sequence. The chat template comes from the model's metadata.
// History longer than the context is trimmed from the oldest turns (the system prompt always stays).
// Remote (OpenAI API): POST /chat/completions with stream=true, read as server-sent events.
//
// Threading: reply() blocks the calling thread until the reply is complete, cancelled or failed; the
// callback runs on an engine thread and must be quick (return false to stop, like cancelling). Many
// Chats may reply() at once. Cancel: takes effect within one decode step (embedded) or one received
// chunk (remote). Errors never throw.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/cancel.h"
#include "common/config.h"

namespace parley::llm {

struct Message {
    std::string role;     // "system", "user", "assistant"
    std::string content;
};

// A function the model may call (OpenAI "tools"). `parameters` is a JSON Schema object as text, e.g.
// {"type":"object","properties":{"digits":{"type":"string"}},"required":["digits"]}.
struct Tool {
    std::string name;
    std::string description;
    std::string parameters = R"({"type":"object","properties":{}})";
};

struct ToolCall {
    std::string name;
    std::string arguments;  // JSON object as text ("{}" when the model gave none)
};

struct Sampling {
    double temperature = 0.7;  // 0 = greedy (deterministic)
    double top_p = 0.9;
    int top_k = 40;
    int max_tokens = 200;
    uint32_t seed = 0;         // 0 = random
};

struct Reply {
    bool ok = false;
    std::string error;         // "cancelled", or what failed
    std::string text;          // everything generated (also when cancelled: what came before), as given
                               // to on_piece: tool-call markup is not in it
    int prompt_tokens = 0, generated_tokens = 0;
    int reused_prompt_tokens = 0;  // embedded: of prompt_tokens, those whose KV was reused (system prompt
                                   // cache, the Chat's previous turns) instead of decoded
    double first_token_ms = 0, total_ms = 0;
    // In the order the model made them; their markup never reaches on_piece. Malformed calls and calls to
    // tools not offered are dropped (logged). A cancelled reply keeps the calls completed before the cancel.
    std::vector<ToolCall> tool_calls;
};

using TokenCallback = std::function<bool(std::string_view piece)>;

class Chat {
public:
    virtual ~Chat() = default;  // frees the call's sequence
    // `history` excludes the system prompt (the engine adds it). Generates the assistant's next message.
    virtual Reply reply(const std::vector<Message>& history, const TokenCallback& on_piece, const CancelToken& cancel,
                        const Sampling* sampling = nullptr) = 0;
};

class LanguageModel {
public:
    virtual ~LanguageModel() = default;
    virtual std::unique_ptr<Chat> open() = 0;
    virtual std::string describe() const = 0;
    // Embedded only: sequences in use right now (0 after every Chat is gone). -1 for remote engines.
    virtual int active_sequences() const { return -1; }
};

// `tools`: offered to the model on every reply of every Chat (embedded: described in the system prompt,
// calls parsed from the reply; remote: the request's "tools"). Empty = plain chat.
std::unique_ptr<LanguageModel> create(const LlmConfig& config, std::string* error,
                                      const std::vector<Tool>& tools = {});

}  // namespace parley::llm
