// rfc4733_fuzz.cpp — telephone-event parsing, the DTMF receiver and the jitter buffer, driven by arbitrary
// input. The input is read as a stream of small records; each record's first byte picks the operation.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "media/dtmf.h"
#include "media/jitter_buffer.h"

using namespace parley::media;

namespace {

// Cursor over the fuzzer input; reads past the end yield zeros so every record is well defined.
struct Reader {
    const uint8_t* p;
    size_t left;
    bool empty() const { return left == 0; }
    uint8_t u8() {
        if (left == 0) return 0;
        --left;
        return *p++;
    }
    // Separate statements: the operands of | are unsequenced, the byte order must not depend on the compiler.
    uint16_t u16() {
        const uint16_t hi = u8();
        return static_cast<uint16_t>((hi << 8) | u8());
    }
    uint32_t u32() {
        const uint32_t hi = u16();
        return (hi << 16) | u16();
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // Whole input as a payload: the parser must not read past it.
    const std::span<const uint8_t> all(data, size);
    if (auto ev = rfc4733_parse(all)) {
        if (size < 4 || ev->event > 16 || ev->volume > 63) __builtin_trap();
        uint8_t out[4];
        if (rfc4733_serialize(*ev, out) != 4) __builtin_trap();
        // Re-serialization is canonical: equal to the input except for the ignored R bit.
        if (out[0] != data[0] || out[1] != (data[1] & 0xBF) || out[2] != data[2] || out[3] != data[3])
            __builtin_trap();
        if (rfc4733_event_to_char(ev->event) == 0) __builtin_trap();
    }

    Reader r{data, size};
    const uint8_t target = static_cast<uint8_t>(r.u8() % 8);
    const uint8_t max = static_cast<uint8_t>(r.u8() % 64);
    JitterBuffer jb(JitterBuffer::Config{target, max});
    DtmfReceiver rx;
    std::vector<uint8_t> payload;
    uint64_t gets = 0;
    while (!r.empty()) {
        const uint8_t op = r.u8();
        switch (op % 4) {
            case 0: {  // a telephone-event packet into the receiver
                const uint32_t ts = r.u32();
                uint8_t pkt[4] = {r.u8(), r.u8(), r.u8(), r.u8()};
                if (auto ev = rfc4733_parse(pkt)) {
                    if (auto digit = rx.on_packet(ts, *ev)) {
                        if (rfc4733_char_to_event(*digit) != ev->event) __builtin_trap();
                    }
                }
                break;
            }
            case 1: {  // a packet into the jitter buffer, payload length chosen by the input
                const uint16_t seq = r.u16();
                const uint32_t ts = r.u32();
                const size_t len = r.u8() % 32;
                const size_t take = len < r.left ? len : r.left;
                jb.put(seq, ts, std::span<const uint8_t>(r.p, take));
                r.p += take;
                r.left -= take;
                break;
            }
            case 2: {  // the media clock ticks
                uint32_t ts = 0;
                const auto res = jb.get(payload, op & 0x80 ? &ts : nullptr);
                ++gets;
                if (res != JitterBuffer::Result::kPacket && !payload.empty()) __builtin_trap();
                if (res == JitterBuffer::Result::kMissing && jb.depth() == 0) __builtin_trap();
                break;
            }
            default: {  // the sender's packet stream for a digit, fed back through parse and the receiver
                const auto digit = static_cast<char>(r.u8());
                const int duration_ms = r.u8();
                const int ptime_ms = 1 + r.u8() % 60;
                DtmfSender tx(digit, duration_ms, ptime_ms);
                const uint32_t ts = r.u32();
                int packets = 0;
                int digits = 0;
                DtmfReceiver fresh;
                while (auto p = tx.next()) {
                    if (++packets > 70000) __builtin_trap();  // must terminate
                    if ((packets == 1) != p->marker) __builtin_trap();
                    uint8_t wire[4];
                    if (rfc4733_serialize(p->event, wire) != 4) __builtin_trap();
                    auto ev = rfc4733_parse(wire);
                    if (!ev) __builtin_trap();
                    if (fresh.on_packet(ts + p->timestamp_offset, *ev)) ++digits;
                }
                if (tx.valid() != (digits == 1)) __builtin_trap();
                break;
            }
        }
    }
    // Bookkeeping invariants: every get is accounted for exactly once; nothing is played twice.
    const auto& st = jb.stats();
    if (st.played + st.missing > gets) __builtin_trap();
    if (st.played > st.received) __builtin_trap();
    return 0;
}
