// STUN Binding (RFC 5389): requests we build and responses we parse, as tables of canned messages; and
// one real exchange with a STUN server in this process on 127.0.0.1.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "net/stun.h"

namespace parley::net {
namespace {

const StunTxId kTx = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

std::vector<uint8_t> header(uint16_t type, const std::vector<uint8_t>& attrs, const StunTxId& tx = kTx) {
    std::vector<uint8_t> m(20 + attrs.size());
    const uint8_t head[8] = {static_cast<uint8_t>(type >> 8),
                             static_cast<uint8_t>(type & 0xff),
                             static_cast<uint8_t>(attrs.size() >> 8),
                             static_cast<uint8_t>(attrs.size() & 0xff),
                             0x21,
                             0x12,
                             0xA4,
                             0x42};
    for (size_t i = 0; i < 8; ++i) m[i] = head[i];
    for (size_t i = 0; i < tx.size(); ++i) m[8 + i] = tx[i];
    for (size_t i = 0; i < attrs.size(); ++i) m[20 + i] = attrs[i];
    return m;
}

// XOR-MAPPED-ADDRESS for 203.0.113.5:40000 (RFC 5389 section 15.2: port ^ 0x2112, address ^ cookie).
std::vector<uint8_t> xor_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
    uint16_t xp = port ^ 0x2112;
    return {0x00,
            0x20,
            0x00,
            0x08,
            0x00,
            0x01,
            static_cast<uint8_t>(xp >> 8),
            static_cast<uint8_t>(xp & 0xff),
            static_cast<uint8_t>(a ^ 0x21),
            static_cast<uint8_t>(b ^ 0x12),
            static_cast<uint8_t>(c ^ 0xA4),
            static_cast<uint8_t>(d ^ 0x42)};
}

std::vector<uint8_t> plain_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
    return {0x00,
            0x01,
            0x00,
            0x08,
            0x00,
            0x01,
            static_cast<uint8_t>(port >> 8),
            static_cast<uint8_t>(port & 0xff),
            a,
            b,
            c,
            d};
}

std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

TEST(Stun, BindingRequestIsTwentyBytesWithCookieAndTransactionId) {
    auto m = stun_binding_request(kTx);
    ASSERT_EQ(m.size(), 20u);
    EXPECT_EQ(m[0], 0x00);
    EXPECT_EQ(m[1], 0x01);
    EXPECT_EQ(m[2], 0x00);
    EXPECT_EQ(m[3], 0x00);
    EXPECT_EQ(m[4], 0x21);
    EXPECT_EQ(m[7], 0x42);
    EXPECT_TRUE(std::equal(kTx.begin(), kTx.end(), m.begin() + 8));
}

struct Good {
    const char* name;
    std::vector<uint8_t> msg;
    const char* ip;
    uint16_t port;
    bool xored;
};

class StunGood : public ::testing::TestWithParam<Good> {};
TEST_P(StunGood, Parses) {
    const auto& c = GetParam();
    std::string err;
    auto m = stun_parse_binding_response(c.msg.data(), c.msg.size(), kTx, &err);
    ASSERT_TRUE(m) << err;
    EXPECT_EQ(m->ip, c.ip);
    EXPECT_EQ(m->port, c.port);
    EXPECT_EQ(m->xor_mapped, c.xored);
}
INSTANTIATE_TEST_SUITE_P(
    Table, StunGood,
    ::testing::Values(
        Good{"xor", header(0x0101, xor_v4(203, 0, 113, 5, 40000)), "203.0.113.5", 40000, true},
        Good{"plain_rfc3489", header(0x0101, plain_v4(198, 51, 100, 7, 5060)), "198.51.100.7", 5060, false},
        Good{"xor_wins_over_plain",
             header(0x0101, cat(plain_v4(10, 0, 0, 1, 1), xor_v4(203, 0, 113, 9, 3478))), "203.0.113.9", 3478,
             true},
        // an unknown attribute (SOFTWARE, 3 bytes + 1 padding) before the address is skipped
        Good{"skips_unknown",
             header(0x0101, cat({0x80, 0x22, 0x00, 0x03, 'a', 'b', 'c', 0}, xor_v4(1, 2, 3, 4, 5))),
             "1.2.3.4", 5, true}),
    [](const auto& p) { return std::string(p.param.name); });

struct Bad {
    const char* name;
    std::vector<uint8_t> msg;
    const char* expect;
};

class StunBad : public ::testing::TestWithParam<Bad> {};
TEST_P(StunBad, IsRejectedWithAReason) {
    const auto& c = GetParam();
    std::string err;
    auto m = stun_parse_binding_response(c.msg.data(), c.msg.size(), kTx, &err);
    EXPECT_FALSE(m) << c.name;
    EXPECT_NE(err.find(c.expect), std::string::npos) << "error was: " << err;
}

std::vector<uint8_t> wrong_cookie() {
    auto m = header(0x0101, xor_v4(1, 2, 3, 4, 5));
    m[4] = 0;
    return m;
}
std::vector<uint8_t> overlong_attr() {
    return header(0x0101, {0x00, 0x20, 0x00, 0x40, 0, 1, 0, 0, 0, 0, 0, 0});
}
std::vector<uint8_t> length_past_end() {
    auto m = header(0x0101, xor_v4(1, 2, 3, 4, 5));
    m[3] = 0x40;
    return m;
}

INSTANTIATE_TEST_SUITE_P(
    Table, StunBad,
    ::testing::Values(
        Bad{"empty", {}, "shorter than a STUN header"},
        Bad{"short", {0, 1, 0, 0, 0x21}, "shorter than a STUN header"},
        Bad{"rtp_not_stun",
            {0x80, 0, 0, 1, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
            "not a STUN message"},
        Bad{"wrong_cookie", wrong_cookie(), "magic cookie"},
        Bad{"other_transaction", header(0x0101, xor_v4(1, 2, 3, 4, 5), StunTxId{9}), "transaction id"},
        Bad{"a_request", header(0x0001, {}), "not a Binding response"},
        Bad{"length_past_end", length_past_end(), "does not fit"},
        Bad{"attribute_past_end", overlong_attr(), "runs past"},
        Bad{"no_address", header(0x0101, {}), "no (XOR-)MAPPED-ADDRESS"},
        Bad{"bad_family", header(0x0101, {0x00, 0x20, 0x00, 0x08, 0x00, 0x07, 0, 0, 0, 0, 0, 0}),
            "no (XOR-)"},
        Bad{"error_401", header(0x0111, {0x00, 0x09, 0x00, 0x08, 0, 0, 4, 1, 'N', 'o', 'p', 'e'}),
            "error response 401 \"Nope\""}),
    [](const auto& p) { return std::string(p.param.name); });

// A real exchange: a minimal STUN server on 127.0.0.1 answers with the address it saw.
TEST(Stun, QueryAgainstALocalServer) {
    int srv = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(srv, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t alen = sizeof a;
    ::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &alen);
    uint16_t port = ntohs(a.sin_port);
    std::thread server([srv] {
        uint8_t buf[512];
        sockaddr_in from{};
        socklen_t flen = sizeof from;
        ssize_t n = ::recvfrom(srv, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 20) return;
        StunTxId tx;
        std::copy(buf + 8, buf + 20, tx.begin());
        uint32_t ip = ntohl(from.sin_addr.s_addr);
        auto resp = header(
            0x0101, xor_v4(ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff, ntohs(from.sin_port)),
            tx);
        ::sendto(srv, resp.data(), resp.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    });
    std::string err;
    auto m = stun_query("127.0.0.1:" + std::to_string(port), 2000, &err);
    server.join();
    ::close(srv);
    ASSERT_TRUE(m) << err;
    EXPECT_EQ(m->ip, "127.0.0.1");
    EXPECT_NE(m->port, 0);
}

TEST(Stun, QueryWithoutAServerFailsWithinItsTimeout) {
    int s = ::socket(AF_INET, SOCK_DGRAM, 0);  // a bound port nobody answers on
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t alen = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &alen);
    auto t0 = std::chrono::steady_clock::now();
    std::string err;
    auto m = stun_query("127.0.0.1:" + std::to_string(ntohs(a.sin_port)), 700, &err);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    ::close(s);
    EXPECT_FALSE(m);
    EXPECT_NE(err.find("no answer"), std::string::npos) << err;
    EXPECT_LT(ms, 1500);
}

}  // namespace
}  // namespace parley::net
