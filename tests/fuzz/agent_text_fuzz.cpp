// Fuzz target for text that comes from a model or a remote server and is parsed on a call's threads:
// the tool-call parser (Hermes <tool_call> JSON in a streamed reply) and the conversation's clause chunker,
// end-of-turn reading and heard-prefix rules. The first byte chooses piece boundaries, so the streaming
// paths see arbitrary splits. Invariant checked: the text out of the parser never contains a complete
// "<tool_call>" tag, and the chunker's clauses are never longer than their input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/text.h"
#include "llm/tool_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const size_t step = 1 + data[0] % 17;
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    parley::llm::ToolCallParser parser({"hang_up", "transfer", "send_dtmf"});
    parley::agent::ClauseChunker chunker;
    std::string spoken;
    size_t clause_bytes = 0;
    for (size_t i = 0; i < text.size(); i += step) {
        std::string out = parser.feed(text.substr(i, step));
        spoken += out;
        for (auto& c : chunker.push(out)) clause_bytes += c.size();
    }
    std::string rest = parser.finish();
    spoken += rest;
    for (auto& c : chunker.push(rest)) clause_bytes += c.size();
    clause_bytes += chunker.finish().size();
    if (clause_bytes > spoken.size()) std::abort();
    if (spoken.find("<tool_call>") != std::string::npos && text.find("<tool_call>") == std::string::npos) std::abort();

    (void)parley::agent::reads_complete(text);
    (void)parley::agent::clean_transcript(text);
    for (double f : {0.0, 0.3, 0.77, 1.0}) {
        if (parley::agent::heard_prefix(text, f).size() > text.size()) std::abort();
    }
    return 0;
}
