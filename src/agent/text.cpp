// text.cpp — see text.h.
#include "agent/text.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace parley::agent {
namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

// Collapses runs of whitespace and drops characters TTS would read out or choke on.
std::string speakable(std::string_view in) {
    const std::string valid = valid_utf8(in);
    std::string_view s = valid;
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '*' || c == '#' || c == '`' || c == '_' || c == '~' || c == '|' || c == '<' || c == '>') continue;
        if (c == 0xF0 && i + 3 < s.size()) {  // 4-byte UTF-8: emoji and other pictographs
            i += 3;
            continue;
        }
        if (is_space(static_cast<char>(c)) || c < 0x20) {
            if (!out.empty() && out.back() != ' ') out.push_back(' ');
            continue;
        }
        out.push_back(static_cast<char>(c));
    }
    return trim(out);
}

bool sentence_mark(char c) { return c == '.' || c == '!' || c == '?'; }
bool clause_mark(char c) { return c == ',' || c == ';' || c == ':'; }

std::string lower_word_before_end(std::string_view t) {
    size_t e = t.size();
    while (e > 0 && !std::isalnum(static_cast<unsigned char>(t[e - 1])) && t[e - 1] != '\'') --e;
    size_t b = e;
    while (b > 0 && (std::isalnum(static_cast<unsigned char>(t[b - 1])) || t[b - 1] == '\'')) --b;
    std::string w(t.substr(b, e - b));
    for (auto& ch : w) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return w;
}

}  // namespace

std::string valid_utf8(std::string_view t) {
    std::string out;
    out.reserve(t.size());
    size_t i = 0;
    while (i < t.size()) {
        const auto c = static_cast<unsigned char>(t[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        bool ok = n > 0 && i + n <= t.size();
        for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(t[i + k]) & 0xC0) == 0x80;
        if (ok && n == 2) ok = c >= 0xC2;  // no overlong 2-byte forms
        if (ok && n == 3) {
            const auto c1 = static_cast<unsigned char>(t[i + 1]);
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
        }
        if (ok && n == 4) {
            const auto c1 = static_cast<unsigned char>(t[i + 1]);
            ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) out.append(t.substr(i, n));
        i += ok ? n : 1;
    }
    return out;
}

std::vector<std::string> ClauseChunker::push(std::string_view piece) {
    std::vector<std::string> out;
    pending_.append(piece);
    // Scan for the earliest acceptable cut; repeat while cuts are found.
    for (;;) {
        size_t cut = std::string::npos;
        size_t last_space = std::string::npos;
        for (size_t i = 0; i < pending_.size(); ++i) {
            char c = pending_[i];
            bool next_space = i + 1 < pending_.size() && is_space(pending_[i + 1]);
            if (is_space(c)) last_space = i;
            // "…" (U+2026) is E2 80 A6.
            bool ellipsis = i >= 2 && static_cast<unsigned char>(c) == 0xA6 &&
                            static_cast<unsigned char>(pending_[i - 1]) == 0x80 &&
                            static_cast<unsigned char>(pending_[i - 2]) == 0xE2;
            if ((sentence_mark(c) || ellipsis) && next_space && i + 1 >= min_chars_) {
                cut = i + 1;
                break;
            }
            if (clause_mark(c) && next_space && i + 1 >= clause_chars_) {
                cut = i + 1;
                break;
            }
            if (is_space(c) && i >= max_chars_ && last_space != std::string::npos) {
                cut = i;
                break;
            }
        }
        if (cut == std::string::npos) break;
        std::string clause = speakable(std::string_view(pending_).substr(0, cut));
        pending_.erase(0, cut);
        if (!clause.empty() && std::any_of(clause.begin(), clause.end(), [](char ch) {
                return std::isalnum(static_cast<unsigned char>(ch)) || static_cast<unsigned char>(ch) >= 0x80;
            }))
            out.push_back(std::move(clause));
    }
    return out;
}

std::string ClauseChunker::finish() {
    std::string rest = speakable(pending_);
    pending_.clear();
    if (!std::any_of(rest.begin(), rest.end(), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || static_cast<unsigned char>(ch) >= 0x80;
        }))
        return {};
    return rest;
}

bool reads_complete(std::string_view transcript) {
    std::string t = trim(transcript);
    while (!t.empty() && (t.back() == '"' || t.back() == '\'' || t.back() == ')')) t.pop_back();
    if (t.empty()) return false;
    char last = t.back();
    if (last != '.' && last != '!' && last != '?') return false;
    if (t.size() >= 3 && t.compare(t.size() - 3, 3, "...") == 0) return false;  // trailing off
    static const std::array<const char*, 40> kOpen = {
        "um", "uh", "er", "erm", "hmm", "mm", "like", "so", "and", "but", "or", "because", "cause", "to",
        "the", "a", "an", "of", "for", "with", "if", "then", "that", "which", "my", "your", "is", "was",
        "i", "we", "you", "at", "in", "on", "from", "about", "well", "actually", "also", "than"};
    std::string w = lower_word_before_end(t);
    if (w.empty()) return false;
    for (const char* f : kOpen)
        if (w == f) return false;
    return true;
}

std::string clean_transcript(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        char close = c == '[' ? ']' : c == '(' ? ')' : c == '*' ? '*' : 0;
        if (close) {
            size_t j = text.find(close, i + 1);
            if (j != std::string_view::npos && j - i < 40) {
                i = j;
                continue;
            }
        }
        out.push_back(c);
    }
    return speakable(out);
}

std::string heard_prefix(std::string_view text, double fraction) {
    if (fraction >= 1.0) return trim(text);
    if (fraction <= 0.0) return {};
    size_t target = static_cast<size_t>(fraction * static_cast<double>(text.size()));
    // Keep whole words that end at or before the target position.
    size_t end = 0;
    for (size_t i = 0; i <= text.size(); ++i) {
        bool boundary = i == text.size() || is_space(text[i]);
        if (boundary && i > 0 && !is_space(text[i - 1])) {
            if (i <= target) end = i;
            else break;
        }
    }
    return trim(text.substr(0, end));
}

}  // namespace parley::agent
