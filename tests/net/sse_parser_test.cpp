// SSE parser vectors: chunking anywhere, CRLF/CR/LF, comments, multi-line data, [DONE], finish().
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "net/http_client.h"

using parley::net::SseEvent;
using parley::net::SseParser;

namespace {

std::vector<SseEvent> parse_chunks(const std::vector<std::string>& chunks, bool finish = false) {
    SseParser p;
    std::vector<SseEvent> events;
    const auto cb = [&](const SseEvent& e) {
        events.push_back(e);
        return true;
    };
    for (const auto& c : chunks) EXPECT_TRUE(p.feed(c, cb));
    if (finish) p.finish(cb);
    return events;
}

// Every split of `stream` into two chunks, and byte by byte, gives the same events as one chunk.
void expect_split_invariant(const std::string& stream) {
    const auto whole = parse_chunks({stream});
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
        const auto split = parse_chunks({stream.substr(0, cut), stream.substr(cut)});
        ASSERT_EQ(split.size(), whole.size()) << "cut at " << cut;
        for (size_t i = 0; i < whole.size(); ++i) EXPECT_EQ(split[i].data, whole[i].data) << "cut at " << cut;
    }
    std::vector<std::string> bytes;
    for (char c : stream) bytes.emplace_back(1, c);
    const auto single = parse_chunks(bytes);
    ASSERT_EQ(single.size(), whole.size());
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_EQ(single[i].data, whole[i].data);
}

}  // namespace

TEST(SseParser, SimpleEvents) {
    const auto ev = parse_chunks({"data: {\"a\":1}\n\ndata: two\n\ndata: [DONE]\n\n"});
    ASSERT_EQ(ev.size(), 3u);
    EXPECT_EQ(ev[0].data, "{\"a\":1}");
    EXPECT_EQ(ev[1].data, "two");
    EXPECT_TRUE(parley::net::is_done_marker(ev[2]));
    EXPECT_FALSE(parley::net::is_done_marker(ev[1]));
}

TEST(SseParser, CrLfAndCrLineEndings) {
    const auto crlf = parse_chunks({"data: a\r\n\r\ndata: b\r\n\r\n"});
    ASSERT_EQ(crlf.size(), 2u);
    EXPECT_EQ(crlf[0].data, "a");
    EXPECT_EQ(crlf[1].data, "b");
    const auto cr = parse_chunks({"data: a\r\rdata: b\r\r"});
    ASSERT_EQ(cr.size(), 2u);
    EXPECT_EQ(cr[1].data, "b");
}

TEST(SseParser, CrLfSplitAcrossChunksIsOneLineEnd) {
    // "\r" ends chunk 1, "\n" starts chunk 2: one terminator, not an extra empty line.
    const auto ev = parse_chunks({"data: a\r", "\ndata: b\r\n\r\n"});
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, "a\nb");
}

TEST(SseParser, CommentsAndOtherFieldsIgnored) {
    const auto ev = parse_chunks({": keep-alive\n\n: ping\nevent: delta\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n"});
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, "x");
    EXPECT_EQ(ev[0].event, "delta");
    EXPECT_EQ(ev[0].id, "7");
}

TEST(SseParser, MultipleDataLinesJoinWithNewline) {
    const auto ev = parse_chunks({"data: line1\ndata:line2\ndata:  two spaces\n\n"});
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, "line1\nline2\n two spaces");
}

TEST(SseParser, EmptyDataAndNoColon) {
    const auto ev = parse_chunks({"data:\n\ndata\n\n\n\n"});
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].data, "");
    EXPECT_EQ(ev[1].data, "");
}

TEST(SseParser, SplitAnywhere) {
    expect_split_invariant("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n: c\n"
                           "data: a\ndata: b\n\rdata: [DONE]\r\n\r\n");
}

TEST(SseParser, UnterminatedEventOnlyOnFinish) {
    EXPECT_TRUE(parse_chunks({"data: tail"}).empty());
    const auto ev = parse_chunks({"data: tail"}, true);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, "tail");
    EXPECT_TRUE(parse_chunks({"data: x\n\n: only a comment"}, true).size() == 1u);
}

TEST(SseParser, CallbackCanStop) {
    SseParser p;
    int n = 0;
    EXPECT_FALSE(p.feed("data: 1\n\ndata: 2\n\ndata: 3\n\n", [&](const SseEvent&) { return ++n < 2; }));
    EXPECT_EQ(n, 2);
}

TEST(JoinUrl, Slashes) {
    EXPECT_EQ(parley::net::join_url("http://h:1/v1", "/chat"), "http://h:1/v1/chat");
    EXPECT_EQ(parley::net::join_url("http://h:1/v1/", "/chat"), "http://h:1/v1/chat");
    EXPECT_EQ(parley::net::join_url("http://h:1/v1", "chat"), "http://h:1/v1/chat");
}
