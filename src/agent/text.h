// text.h — the text rules of a conversation: where a reply may be cut into speakable clauses, whether a
// transcript reads as a finished turn, and what part of a sentence the caller heard before barging in.
// Pure functions and one small streaming class; no engine, no thread. Rules and constants: docs/conversation.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace parley::agent {

// Cuts streamed LLM text into pieces TTS can speak on their own, as early as it sensibly can:
//   - at a sentence end (. ! ? …, followed by a space or the end of the reply) once the piece has at least
//     `min_chars` characters (so "Dr. Smith" / "3.5" do not split: the mark must be followed by whitespace);
//   - at a clause mark (, ; : —) once the piece has at least `clause_chars` characters (so the first audio
//     does not wait for a long sentence to finish);
//   - at a space once the piece has `max_chars` characters (text with no punctuation at all).
// Markup the caller should not hear (asterisks, #, backticks, emoji) is removed.
class ClauseChunker {
public:
    explicit ClauseChunker(size_t min_chars = 2, size_t clause_chars = 40, size_t max_chars = 160)
        : min_chars_(min_chars), clause_chars_(clause_chars), max_chars_(max_chars) {}
    // Appends a streamed piece; returns the clauses it completed (possibly none).
    std::vector<std::string> push(std::string_view piece);
    // End of the reply: whatever is left (trimmed; empty if only whitespace).
    std::string finish();

private:
    std::string pending_;
    size_t min_chars_, clause_chars_, max_chars_;
};

// Whether a (speculative) transcript reads as a complete turn: it ends with terminal punctuation (. ! ?)
// and its last word is not a filler ("um", "uh", "er", "like", "so") or a conjunction/preposition that
// promises more ("and", "but", "or", "because", "to", "the", …). Empty text is not complete.
bool reads_complete(std::string_view transcript);

// `text` with every byte that is not part of a well-formed UTF-8 sequence dropped (a model may stop in the
// middle of a multi-byte character; logs, JSON and TTS must never see half a character).
std::string valid_utf8(std::string_view text);

// Removes whisper's non-speech annotations ("[BLANK_AUDIO]", "(music)", "*laughs*") and trims.
std::string clean_transcript(std::string_view text);

// The prefix of `text` a listener heard when `fraction` (0..1) of its audio had played, cut at a word
// boundary (the word being spoken when playback stopped is not included). Whole text at 1.
std::string heard_prefix(std::string_view text, double fraction);

}  // namespace parley::agent
