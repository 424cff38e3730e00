// jitter_buffer_test.cpp — the jitter buffer's contract as a table of event sequences.
//
// Each row is a script: put(seq) / get -> expected result (and, for kPacket, which sequence came out).
// Payloads are derived from the sequence number, so a kPacket row also checks the right bytes came out.
// Adding a case is adding a row.
#include "media/jitter_buffer.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace parley::media {
namespace {

using R = JitterBuffer::Result;

struct Step {
    enum Kind { kPut, kGet } kind;
    uint16_t seq;  // put: the sequence to insert; get with kPacket: the sequence expected out
    R expect;      // get only
};

Step put(uint16_t seq) {
    return {Step::kPut, seq, R::kEmpty};
}
Step pkt(uint16_t seq) {
    return {Step::kGet, seq, R::kPacket};
}
Step missing() {
    return {Step::kGet, 0, R::kMissing};
}
Step empty() {
    return {Step::kGet, 0, R::kEmpty};
}

std::vector<Step> puts(uint16_t first, int count) {
    std::vector<Step> v;
    for (int i = 0; i < count; ++i) v.push_back(put(static_cast<uint16_t>(first + i)));
    return v;
}

std::vector<Step> pkts(uint16_t first, int count) {
    std::vector<Step> v;
    for (int i = 0; i < count; ++i) v.push_back(pkt(static_cast<uint16_t>(first + i)));
    return v;
}

std::vector<Step> cat(std::initializer_list<std::vector<Step>> parts) {
    std::vector<Step> v;
    for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
    return v;
}

struct ExpectedStats {
    uint64_t played, missing, late, duplicate, overflow, resets;
};

struct Case {
    std::string name;
    JitterBuffer::Config config;
    std::vector<Step> steps;
    ExpectedStats stats;
};

constexpr JitterBuffer::Config kDefault{3, 50};

const std::vector<Case>& cases() {
    static const std::vector<Case> table = {
        {"InOrder",
         kDefault,
         cat({{empty()}, puts(100, 3), pkts(100, 1), {put(103)}, pkts(101, 3), {empty()}}),
         {4, 0, 0, 0, 0, 0}},
        {"InitialFillToTarget",
         kDefault,
         {empty(), put(10), empty(), put(11), empty(), put(12), pkt(10), pkt(11), pkt(12), empty()},
         {3, 0, 0, 0, 0, 0}},
        {"ReorderWithinWindow",
         kDefault,
         {put(2), put(1), put(4), put(3), pkt(1), pkt(2), pkt(3), pkt(4), empty()},
         {4, 0, 0, 0, 0, 0}},
        {"ReorderArrivingJustInTime",
         kDefault,
         {put(1), put(2), put(3), pkt(1), put(5), pkt(2), put(4), pkt(3), pkt(4), pkt(5)},
         {5, 0, 0, 0, 0, 0}},
        {"LossBecomesMissing",
         kDefault,
         {put(1), put(2), put(4), pkt(1), pkt(2), missing(), pkt(4), empty()},
         {3, 1, 0, 0, 0, 0}},
        {"BurstLoss",
         kDefault,
         {put(1), put(2), put(6), pkt(1), pkt(2), missing(), missing(), missing(), pkt(6), empty()},
         {3, 3, 0, 0, 0, 0}},
        {"MissingOnlyWhenLaterPacketsExist",
         kDefault,
         // 4 has not arrived and nothing after it is buffered: an underrun (kEmpty), not a loss.
         {put(1), put(2), put(3), pkt(1), pkt(2), pkt(3), empty(), empty()},
         {3, 0, 0, 0, 0, 0}},
        {"LatePacketDropped",
         kDefault,
         {put(1), put(2), put(4), put(5), pkt(1), pkt(2), missing(), put(3), pkt(4), pkt(5), empty()},
         {4, 1, 1, 0, 0, 0}},
        {"LateAlreadyPlayedDropped",
         kDefault,
         {put(7), put(8), put(9), pkt(7), pkt(8), put(7), put(6), pkt(9), empty()},
         {3, 0, 2, 0, 0, 0}},
        {"DuplicateDropped",
         kDefault,
         {put(1), put(1), put(2), put(2), put(3), pkt(1), pkt(2), put(3), pkt(3), empty()},
         {3, 0, 0, 3, 0, 0}},
        {"SequenceWrap",
         kDefault,
         cat({puts(65533, 3), pkts(65533, 1), puts(0, 3), pkts(65534, 2), pkts(0, 3), {empty()}}),
         {6, 0, 0, 0, 0, 0}},
        {"ReorderAcrossWrap",
         kDefault,
         {put(0), put(65534), put(65535), put(1), pkt(65534), pkt(65535), pkt(0), pkt(1), empty()},
         {4, 0, 0, 0, 0, 0}},
        {"LossAcrossWrap",
         kDefault,
         {put(65534), put(65535), put(1), pkt(65534), pkt(65535), missing(), pkt(1), empty()},
         {3, 1, 0, 0, 0, 0}},
        {"UnderrunThenRefill",
         kDefault,
         cat({puts(1, 3),
              pkts(1, 3),
              {empty(), put(4), empty(), put(5), empty(), put(6)},
              pkts(4, 3),
              {empty()}}),
         {6, 0, 0, 0, 0, 0}},
        {"RefillAfterUnderrunSkipsSlotsAlreadyCoveredByEmpty",
         kDefault,
         // 4 and 5 were lost while the buffer was empty; playout restarts at 6 without kMissing for them.
         cat({puts(1, 3), pkts(1, 3), {empty(), empty()}, puts(6, 3), pkts(6, 3)}),
         {6, 0, 0, 0, 0, 0}},
        {"LateWhileRefillingDropped",
         kDefault,
         {put(1), put(2), put(3), pkt(1), pkt(2), pkt(3), empty(), put(2), put(4), put(5), put(6), pkt(4)},
         {4, 0, 1, 0, 0, 0}},
        {"BigJumpAheadResets",
         kDefault,
         {put(1), put(2), put(3), pkt(1), put(1000), put(1001), empty(), put(1002), pkt(1000), pkt(1001),
          pkt(1002), empty()},
         {4, 0, 0, 0, 0, 1}},
        {"BigJumpBehindResets",
         kDefault,
         {put(5000), put(5001), put(5002), pkt(5000), put(10), put(11), put(12), pkt(10), pkt(11), pkt(12)},
         {4, 0, 0, 0, 0, 1}},
        {"JumpOfExactlyMaxIsNotReset",
         kDefault,
         {put(1), put(2), put(3), pkt(1), put(52), pkt(2), pkt(3), missing()},
         {3, 1, 0, 0, 0, 0}},
        {"BigJumpBeforePlayoutResets",
         kDefault,
         {put(1), put(2), put(30000), put(30001), empty(), put(30002), pkt(30000)},
         {1, 0, 0, 0, 0, 1}},
        {"OverflowDropsOldest",
         JitterBuffer::Config{2, 4},
         {put(1), put(2), put(3), put(4), put(5), put(6), pkt(3), pkt(4), pkt(5), pkt(6), empty()},
         {4, 0, 0, 0, 2, 0}},
        {"OverflowWhilePlayingMovesPlayoutPoint",
         JitterBuffer::Config{2, 4},
         // Playing from 2 with [2,3,4,5] buffered: 6 pushes out 2, 7 pushes out 3; playout goes on at 4.
         {put(1), put(2), pkt(1), put(3), put(4), put(5), put(6), put(7), pkt(4), pkt(5), pkt(6), pkt(7)},
         {5, 0, 0, 0, 2, 0}},
        {"TargetOne",
         JitterBuffer::Config{1, 50},
         {empty(), put(9), pkt(9), empty(), put(10), pkt(10)},
         {2, 0, 0, 0, 0, 0}},
    };
    return table;
}

std::vector<uint8_t> payload_for(uint16_t seq) {
    return {static_cast<uint8_t>(seq >> 8), static_cast<uint8_t>(seq), 0x5A};
}

void PrintTo(const Case& c, std::ostream* os) {
    *os << c.name;
}

class JitterBufferTable : public ::testing::TestWithParam<Case> {};

TEST_P(JitterBufferTable, Script) {
    const Case& c = GetParam();
    JitterBuffer jb(c.config);
    std::vector<uint8_t> out;
    uint64_t puts_done = 0;
    for (size_t i = 0; i < c.steps.size(); ++i) {
        const Step& s = c.steps[i];
        SCOPED_TRACE("step " + std::to_string(i));
        if (s.kind == Step::kPut) {
            // RTP timestamp of a 20 ms PCMU packet; the buffer must hand it back with the payload.
            jb.put(s.seq, static_cast<uint32_t>(s.seq) * 160u, payload_for(s.seq));
            ++puts_done;
            continue;
        }
        uint32_t ts = 0xFFFFFFFFu;
        const R r = jb.get(out, &ts);
        ASSERT_EQ(static_cast<int>(r), static_cast<int>(s.expect))
            << "expected "
            << (s.expect == R::kPacket    ? "kPacket " + std::to_string(s.seq)
                : s.expect == R::kMissing ? "kMissing"
                                          : "kEmpty");
        if (r == R::kPacket) {
            EXPECT_EQ(out, payload_for(s.seq));
            EXPECT_EQ(ts, static_cast<uint32_t>(s.seq) * 160u);
        } else {
            EXPECT_TRUE(out.empty());
        }
    }
    const auto& st = jb.stats();
    EXPECT_EQ(st.received, puts_done);
    EXPECT_EQ(st.played, c.stats.played);
    EXPECT_EQ(st.missing, c.stats.missing);
    EXPECT_EQ(st.late, c.stats.late);
    EXPECT_EQ(st.duplicate, c.stats.duplicate);
    EXPECT_EQ(st.overflow, c.stats.overflow);
    EXPECT_EQ(st.resets, c.stats.resets);
}

INSTANTIATE_TEST_SUITE_P(Table, JitterBufferTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

TEST(JitterBuffer, DepthAndDefaults) {
    JitterBuffer jb;
    std::vector<uint8_t> out;
    EXPECT_EQ(jb.depth(), 0u);
    for (uint16_t s = 0; s < 3; ++s) jb.put(s, s * 160u, payload_for(s));
    EXPECT_EQ(jb.depth(), 3u);           // default target is 3 packets (60 ms)
    EXPECT_EQ(jb.get(out), R::kPacket);  // timestamp pointer is optional
    EXPECT_EQ(jb.depth(), 2u);
}

TEST(JitterBuffer, LongRunAcrossManyWraps) {
    // 200k packets (several sequence wraps) with a steady one-packet reorder: never a kMissing.
    JitterBuffer jb;
    std::vector<uint8_t> out;
    uint16_t expect = 0;
    int played = 0;
    for (uint32_t i = 0; i < 200000; i += 2) {
        jb.put(static_cast<uint16_t>(i + 1), (i + 1) * 160, payload_for(static_cast<uint16_t>(i + 1)));
        jb.put(static_cast<uint16_t>(i), i * 160, payload_for(static_cast<uint16_t>(i)));
        for (int k = 0; k < 2; ++k) {
            const R r = jb.get(out);
            if (r == R::kEmpty) continue;
            ASSERT_EQ(r, R::kPacket);
            ASSERT_EQ(out, payload_for(expect));
            ++expect;
            ++played;
        }
    }
    EXPECT_GT(played, 199990);
    EXPECT_EQ(jb.stats().missing, 0u);
    EXPECT_EQ(jb.stats().resets, 0u);
}

}  // namespace
}  // namespace parley::media
