// dtmf_test.cpp — RFC 4733 payload vectors, digit mapping, receiver de-duplication, sender sequence.
#include "media/dtmf.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace parley::media {
namespace {

struct PayloadVector {
    std::vector<uint8_t> bytes;
    uint8_t event;
    bool end;
    uint8_t volume;
    uint16_t duration;
};

// Hand-assembled from the RFC 4733 section 2.3 layout: event(8) | E R volume(6) | duration(16).
const PayloadVector kVectors[] = {
    {{0x05, 0x0A, 0x00, 0xA0}, 5, false, 10, 160},     // '5' start, -10 dBm0, 20 ms at 8 kHz
    {{0x05, 0x8A, 0x03, 0x20}, 5, true, 10, 800},      // '5' end, 100 ms
    {{0x0B, 0x3F, 0xFF, 0xFF}, 11, false, 63, 65535},  // '#', quietest, max duration
    {{0x00, 0x80, 0x00, 0x00}, 0, true, 0, 0},         // '0' end, 0 dBm0
    {{0x10, 0x07, 0x01, 0x00}, 16, false, 7, 256},     // flash
    {{0x0F, 0xA5, 0x12, 0x34}, 15, true, 37, 0x1234},  // 'D'
};

TEST(DtmfRfc4733, ParseVectors) {
    for (const auto& v : kVectors) {
        const auto ev = rfc4733_parse(v.bytes);
        ASSERT_TRUE(ev.has_value());
        EXPECT_EQ(ev->event, v.event);
        EXPECT_EQ(ev->end, v.end);
        EXPECT_EQ(ev->volume, v.volume);
        EXPECT_EQ(ev->duration, v.duration);
    }
}

TEST(DtmfRfc4733, SerializeVectors) {
    for (const auto& v : kVectors) {
        TelephoneEvent ev{v.event, v.end, v.volume, v.duration};
        std::vector<uint8_t> out(4, 0xEE);
        ASSERT_EQ(rfc4733_serialize(ev, out), 4u);
        EXPECT_EQ(out, v.bytes);
    }
}

TEST(DtmfRfc4733, ParseIgnoresReservedBitAndExtraBytes) {
    // R bit (0x40) set: ignored. A second event block (RFC 4733 allows several) is not read.
    const std::vector<uint8_t> bytes = {0x01, 0xC5, 0x00, 0x50, 0x02, 0x00, 0x00, 0x00};
    const auto ev = rfc4733_parse(bytes);
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->event, 1);
    EXPECT_TRUE(ev->end);
    EXPECT_EQ(ev->volume, 5);
    EXPECT_EQ(ev->duration, 80);
}

TEST(DtmfRfc4733, ParseRejectsShortAndUnknownEvents) {
    EXPECT_FALSE(rfc4733_parse(std::vector<uint8_t>{}).has_value());
    EXPECT_FALSE(rfc4733_parse(std::vector<uint8_t>{0x01, 0x0A, 0x00}).has_value());
    EXPECT_FALSE(rfc4733_parse(std::vector<uint8_t>{17, 0x0A, 0x00, 0xA0}).has_value());
    EXPECT_FALSE(rfc4733_parse(std::vector<uint8_t>{0xFF, 0x0A, 0x00, 0xA0}).has_value());
}

TEST(DtmfRfc4733, SerializeMasksVolumeAndNeedsFourBytes) {
    TelephoneEvent ev{3, false, 0xFF, 1};
    std::vector<uint8_t> out(4);
    ASSERT_EQ(rfc4733_serialize(ev, out), 4u);
    EXPECT_EQ(out[1], 0x3F);  // neither E nor R set by an oversized volume
    std::vector<uint8_t> small(3);
    EXPECT_EQ(rfc4733_serialize(ev, small), 0u);
}

TEST(DtmfRfc4733, EventCharMapping) {
    const std::string chars = "0123456789*#ABCD!";
    for (size_t e = 0; e < chars.size(); ++e) {
        EXPECT_EQ(rfc4733_event_to_char(static_cast<uint8_t>(e)), chars[e]) << e;
        EXPECT_EQ(rfc4733_char_to_event(chars[e]), static_cast<int>(e)) << chars[e];
    }
    EXPECT_EQ(rfc4733_char_to_event('a'), 12);
    EXPECT_EQ(rfc4733_char_to_event('d'), 15);
    EXPECT_EQ(rfc4733_event_to_char(17), 0);
    EXPECT_EQ(rfc4733_event_to_char(255), 0);
    for (char c : {'E', 'e', 'x', ' ', '\0', '+', '/'}) EXPECT_EQ(rfc4733_char_to_event(c), -1) << c;
}

// One received telephone-event packet: RTP timestamp plus payload fields.
struct Rx {
    uint32_t ts;
    uint8_t event;
    bool end;
    uint16_t duration;
};

std::string run_receiver(const std::vector<Rx>& packets) {
    DtmfReceiver rx;
    std::string digits;
    for (const auto& p : packets) {
        if (auto d = rx.on_packet(p.ts, TelephoneEvent{p.event, p.end, 10, p.duration})) digits += *d;
    }
    return digits;
}

TEST(DtmfReceiver, OneDigitPerPress) {
    // '1' for 100 ms: start (marker), three updates, three end packets — all with the start timestamp.
    EXPECT_EQ(run_receiver({{1000, 1, false, 160},
                            {1000, 1, false, 320},
                            {1000, 1, false, 480},
                            {1000, 1, false, 640},
                            {1000, 1, true, 800},
                            {1000, 1, true, 800},
                            {1000, 1, true, 800}}),
              "1");
}

TEST(DtmfReceiver, RepeatedStartPacketsAreOneDigit) {
    // Some senders repeat the start packet (RFC 4733 section 2.5.1.2 allows it) and send the end late.
    EXPECT_EQ(
        run_receiver({{500, 10, false, 0}, {500, 10, false, 0}, {500, 10, false, 0}, {500, 10, true, 400}}),
        "*");
}

TEST(DtmfReceiver, SameDigitTwiceIsTwoDigits) {
    std::vector<Rx> pkts;
    for (uint32_t ts : {8000u, 9600u}) {
        for (uint16_t d : {160, 320, 480}) pkts.push_back({ts, 4, false, d});
        for (int i = 0; i < 3; ++i) pkts.push_back({ts, 4, true, 640});
    }
    EXPECT_EQ(run_receiver(pkts), "44");
}

TEST(DtmfReceiver, SequenceOfDifferentDigits) {
    std::vector<Rx> pkts;
    uint32_t ts = 160000;
    for (uint8_t ev : {1, 2, 3, 11}) {
        pkts.push_back({ts, ev, false, 160});
        pkts.push_back({ts, ev, false, 320});
        for (int i = 0; i < 3; ++i) pkts.push_back({ts, ev, true, 480});
        ts += 1600;
    }
    EXPECT_EQ(run_receiver(pkts), "123#");
}

TEST(DtmfReceiver, PressWithLostStartIsStillReported) {
    // Of the '8' press only the end packets arrive.
    EXPECT_EQ(
        run_receiver({{100, 7, false, 160}, {100, 7, true, 800}, {1900, 8, true, 800}, {1900, 8, true, 800}}),
        "78");
}

TEST(DtmfReceiver, LateRetransmittedEndOfPreviousPressIgnored) {
    // The third end packet of '7' is reordered behind the start of '8': it must not repeat the '7'.
    EXPECT_EQ(run_receiver({{100, 7, false, 160},
                            {100, 7, true, 800},
                            {100, 7, true, 800},
                            {1900, 8, false, 160},
                            {100, 7, true, 800},
                            {1900, 8, true, 800}}),
              "78");
}

TEST(DtmfReceiver, TimestampWrapAndNewStream) {
    // Presses across the 32-bit timestamp wrap, then a stream restart far behind (new SSRC, random base).
    EXPECT_EQ(run_receiver({{0xFFFFFF00u, 1, false, 160},
                            {0xFFFFFF00u, 1, true, 800},
                            {0x00000500u, 2, false, 160},
                            {0x40000000u, 3, false, 160},
                            {0x10000000u, 4, true, 800}}),
              "1234");
}

TEST(DtmfReceiver, UnknownEventIgnored) {
    DtmfReceiver rx;
    EXPECT_FALSE(rx.on_packet(1, TelephoneEvent{40, false, 10, 160}).has_value());
    EXPECT_EQ(rx.on_packet(1, TelephoneEvent{9, false, 10, 160}), std::optional<char>('9'));
}

TEST(DtmfSender, PacketSequence) {
    // 100 ms at 20 ms ptime, 8 kHz: durations 160, 320, 480, 640, then the final 800 three times with E.
    DtmfSender tx('5', 100, 20);
    ASSERT_TRUE(tx.valid());
    std::vector<DtmfPacket> pkts;
    while (auto p = tx.next()) {
        pkts.push_back(*p);
        ASSERT_LT(pkts.size(), 100u);
    }
    ASSERT_EQ(pkts.size(), 7u);
    const uint16_t expect_duration[] = {160, 320, 480, 640, 800, 800, 800};
    for (size_t i = 0; i < pkts.size(); ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(pkts[i].marker, i == 0);
        EXPECT_EQ(pkts[i].event.event, 5);
        EXPECT_EQ(pkts[i].event.volume, 10);
        EXPECT_EQ(pkts[i].event.end, i >= 4);
        EXPECT_EQ(pkts[i].event.duration, expect_duration[i]);
        EXPECT_EQ(pkts[i].timestamp_offset, 0u);
    }
    EXPECT_FALSE(tx.next().has_value());  // stays finished
}

TEST(DtmfSender, DurationNotMultipleOfPtime) {
    DtmfSender tx('#', 50, 20, 8000, 12);  // 400 samples: 160, 320, then 400 x3 (end)
    std::vector<DtmfPacket> pkts;
    while (auto p = tx.next()) pkts.push_back(*p);
    ASSERT_EQ(pkts.size(), 5u);
    EXPECT_TRUE(pkts[0].marker);
    EXPECT_EQ(pkts[0].event.event, 11);
    EXPECT_EQ(pkts[0].event.volume, 12);
    EXPECT_EQ(pkts[1].event.duration, 320);
    for (size_t i = 2; i < 5; ++i) {
        EXPECT_TRUE(pkts[i].event.end);
        EXPECT_FALSE(pkts[i].marker);
        EXPECT_EQ(pkts[i].event.duration, 400);
    }
}

TEST(DtmfSender, ShorterThanOnePtime) {
    DtmfSender tx('0', 10, 20);  // 80 samples: one start packet, then three ends
    std::vector<DtmfPacket> pkts;
    while (auto p = tx.next()) pkts.push_back(*p);
    ASSERT_EQ(pkts.size(), 4u);
    EXPECT_TRUE(pkts[0].marker);
    EXPECT_FALSE(pkts[0].event.end);
    EXPECT_EQ(pkts[0].event.duration, 80);
    for (size_t i = 1; i < 4; ++i) EXPECT_TRUE(pkts[i].event.end);
}

TEST(DtmfSender, InvalidInputs) {
    for (DtmfSender tx : {DtmfSender('x', 100, 20), DtmfSender('1', 0, 20), DtmfSender('1', 100, 0),
                          DtmfSender('1', 100, 20, 0)}) {
        EXPECT_FALSE(tx.valid());
        EXPECT_FALSE(tx.next().has_value());
    }
}

TEST(DtmfSender, RoundTripThroughReceiver) {
    DtmfReceiver rx;
    std::string got;
    uint32_t ts = 12345;
    for (char c : std::string("0123456789*#ABCD")) {
        DtmfSender tx(c, 80, 20);
        while (auto p = tx.next()) {
            std::vector<uint8_t> wire(4);
            ASSERT_EQ(rfc4733_serialize(p->event, wire), 4u);
            const auto ev = rfc4733_parse(wire);
            ASSERT_TRUE(ev.has_value());
            if (auto d = rx.on_packet(ts + p->timestamp_offset, *ev)) got += *d;
        }
        ts += 1600;
    }
    EXPECT_EQ(got, "0123456789*#ABCD");
}

}  // namespace
}  // namespace parley::media
