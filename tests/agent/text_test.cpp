// The conversation's text rules: clause chunking of streamed replies, "does this read complete", what was heard.
#include <gtest/gtest.h>

#include <random>

#include "agent/text.h"

using parley::agent::ClauseChunker;
using parley::agent::clean_transcript;
using parley::agent::heard_prefix;
using parley::agent::reads_complete;

namespace {

std::vector<std::string> chunk_all(const std::string& text, const std::vector<size_t>& cuts, ClauseChunker c = ClauseChunker()) {
    std::vector<std::string> out;
    size_t prev = 0;
    for (size_t cut : cuts) {
        for (auto& s : c.push(std::string_view(text).substr(prev, cut - prev))) out.push_back(s);
        prev = cut;
    }
    for (auto& s : c.push(std::string_view(text).substr(prev))) out.push_back(s);
    if (auto rest = c.finish(); !rest.empty()) out.push_back(rest);
    return out;
}

}  // namespace

TEST(ClauseChunker, SplitsAtSentenceEndsAsSoonAsTheNextTokenArrives) {
    ClauseChunker c;
    EXPECT_TRUE(c.push("Hello there").empty());
    EXPECT_TRUE(c.push(".").empty()) << "a period may still be 3.5 or Dr. — wait for the next character";
    auto out = c.push(" How");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], "Hello there.");
    EXPECT_TRUE(c.push(" are you?").empty());
    EXPECT_EQ(c.finish(), "How are you?");
}

TEST(ClauseChunker, DoesNotSplitDecimalsOrAbbreviationsWithoutSpace) {
    auto out = chunk_all("It costs 3.50 dollars.Really", {});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], "It costs 3.50 dollars.Really");
}

TEST(ClauseChunker, LongClauseSplitsAtACommaShortOneDoesNot) {
    auto out = chunk_all("Yes, sure. We are open from nine in the morning until six in the evening, every day of the week.", {});
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0], "Yes, sure.");
    EXPECT_EQ(out[1], "We are open from nine in the morning until six in the evening,");
    EXPECT_EQ(out[2], "every day of the week.");
}

TEST(ClauseChunker, TextWithoutPunctuationIsCutAtASpaceAfterMaxChars) {
    std::string words;
    for (int i = 0; i < 60; ++i) words += "word ";
    auto out = chunk_all(words, {}, ClauseChunker(2, 40, 50));
    ASSERT_GE(out.size(), 5u);
    for (auto& s : out) EXPECT_LE(s.size(), 60u) << s;
}

TEST(ClauseChunker, SameClausesWhateverThePieceBoundaries) {
    const std::string text = "Sure! I can help with that. Your order, number 4512, ships on Monday; it should arrive by "
                             "Thursday... Anything else? *Thanks* for calling.";
    auto whole = chunk_all(text, {});
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<size_t> cuts;
        for (size_t i = 1; i < text.size(); ++i)
            if (rng() % 4 == 0) cuts.push_back(i);
        EXPECT_EQ(chunk_all(text, cuts), whole) << "trial " << trial;
    }
    // and one character at a time
    std::vector<size_t> every;
    for (size_t i = 1; i < text.size(); ++i) every.push_back(i);
    EXPECT_EQ(chunk_all(text, every), whole);
    for (auto& s : whole) EXPECT_EQ(s.find('*'), std::string::npos) << "markup is not spoken: " << s;
}

TEST(ClauseChunker, DropsPiecesWithNothingToSay) {
    auto out = chunk_all("... !! ** \n\n", {});
    EXPECT_TRUE(out.empty());
}

TEST(ReadsComplete, TerminalPunctuationAndNoOpenEnding) {
    EXPECT_TRUE(reads_complete("I'd like to book a table."));
    EXPECT_TRUE(reads_complete(" Can you help me? "));
    EXPECT_TRUE(reads_complete("Yes!"));
    EXPECT_FALSE(reads_complete("I'd like to book a table"));   // no punctuation: maybe more
    EXPECT_FALSE(reads_complete("I'd like to book a table and."));  // ends on a conjunction
    EXPECT_FALSE(reads_complete("So I was thinking, um."));     // ends on a filler
    EXPECT_FALSE(reads_complete("My number is..."));            // trailing off
    EXPECT_FALSE(reads_complete("It's for the."));
    EXPECT_FALSE(reads_complete(""));
    EXPECT_FALSE(reads_complete("."));
}

TEST(CleanTranscript, DropsWhisperAnnotations) {
    EXPECT_EQ(clean_transcript(" [BLANK_AUDIO]"), "");
    EXPECT_EQ(clean_transcript("(music) Hello there. [Laughter]"), "Hello there.");
    EXPECT_EQ(clean_transcript("  Hi,\n  how are you?  "), "Hi, how are you?");
}

TEST(HeardPrefix, CutsAtTheLastWholeWordPlayed) {
    const std::string s = "We are open every day until six.";
    EXPECT_EQ(heard_prefix(s, 1.0), s);
    EXPECT_EQ(heard_prefix(s, 0.0), "");
    EXPECT_EQ(heard_prefix(s, 0.25), "We are");       // 8 of 32 characters: "We are o|pen"
    EXPECT_EQ(heard_prefix(s, 0.5), "We are open");     // 16 of 32: "We are open eve|ry"
    EXPECT_EQ(heard_prefix(s, 0.01), "");
    // Monotonic: more played never means fewer words.
    size_t prev = 0;
    for (int i = 0; i <= 100; ++i) {
        auto h = heard_prefix(s, i / 100.0);
        EXPECT_GE(h.size(), prev);
        EXPECT_EQ(s.rfind(h, 0), 0u) << "a prefix";
        prev = h.size();
    }
}

TEST(ValidUtf8, DropsBrokenSequencesKeepsGoodOnes) {
    using parley::agent::valid_utf8;
    EXPECT_EQ(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT_EQ(valid_utf8("ab\xe3\x95"), "ab") << "a character cut by max_tokens";
    EXPECT_EQ(valid_utf8("\xe3\x95x\x80y"), "xy");
    EXPECT_EQ(valid_utf8("\xc0\xaf"), "") << "overlong";
    EXPECT_EQ(valid_utf8("\xed\xa0\x80"), "") << "surrogate";
    ClauseChunker c;
    c.push("Hello \xe3\x95");
    EXPECT_EQ(c.finish(), "Hello");
}
