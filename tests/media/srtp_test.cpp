// srtp_test.cpp — SRTP: a=crypto parsing as a table, key generation and redaction, SrtpSession round trips,
// and a MediaSession with SRTP against a far end built directly on libsrtp2 (the library's own API, not our
// wrapper) over real loopback UDP: its audio is heard, what Parley sends decrypts, tampered packets are
// dropped and counted.
//
// Ports: this binary owns 32400-32403 (below the kernel's ephemeral range; see media_session_test.cpp).
#include "media/srtp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <srtp2/srtp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numbers>
#include <thread>
#include <vector>

#include "media/codec.h"
#include "media/media_session.h"
#include "media/port_pool.h"
#include "media/rtp.h"

namespace parley::media {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

SrtpKeySalt key_from(uint8_t first) {
    SrtpKeySalt k;
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(first + i);
    return k;
}

const std::string kKey0 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";  // bytes 0..29

// ---- a=crypto parsing: one row per case -------------------------------------------------------------------

struct CryptoCase {
    std::string name;
    std::string value;  // after "a=crypto:"
    bool ok = true;
    std::string error{};  // substring, when !ok
    uint32_t tag = 1;
    SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
};

const CryptoCase kCryptoCases[] = {
    {.name = "baresip_80", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0},
    {.name = "suite_32_tag_9_digits", .value = "999999999 AES_CM_128_HMAC_SHA1_32 inline:" + kKey0,
     .tag = 999999999, .suite = SrtpSuite::kAesCm128HmacSha1_32},
    {.name = "leading_and_extra_spaces", .value = "  2\tAES_CM_128_HMAC_SHA1_80   inline:" + kKey0 + "  ", .tag = 2},
    {.name = "lifetime_2_31", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^31"},
    {.name = "lifetime_decimal_big", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|4294967296"},
    {.name = "lifetime_2_20", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^20", .ok = false,
     .error = "rekeying"},
    {.name = "lifetime_decimal_small", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|1048576",
     .ok = false, .error = "2^20"},
    {.name = "mki", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|1:4", .ok = false, .error = "MKI"},
    {.name = "lifetime_and_mki", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^31|1:4", .ok = false,
     .error = "MKI"},
    {.name = "three_fields", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^31|2^31|2^31", .ok = false,
     .error = "too many"},
    {.name = "two_lifetimes", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^31|2^40", .ok = false,
     .error = "two lifetimes"},
    {.name = "bad_lifetime", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^x", .ok = false,
     .error = "lifetime"},
    {.name = "empty_lifetime", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|", .ok = false,
     .error = "lifetime"},
    {.name = "two_keys", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "|2^31|1:4;inline:" + kKey0,
     .ok = false, .error = "several master keys"},
    {.name = "session_param", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + " UNENCRYPTED_SRTP",
     .ok = false, .error = "UNENCRYPTED_SRTP"},
    {.name = "kdr", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + " KDR=1", .ok = false,
     .error = "KDR=1"},
    {.name = "unknown_suite", .value = "1 AES_256_CM_HMAC_SHA1_80 inline:" + kKey0, .ok = false,
     .error = "AES_256_CM_HMAC_SHA1_80 is not supported"},
    {.name = "lower_case_suite", .value = "1 aes_cm_128_hmac_sha1_80 inline:" + kKey0, .ok = false,
     .error = "not supported"},
    {.name = "short_key", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0.substr(0, 39), .ok = false,
     .error = "40 base64"},
    {.name = "long_key", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 + "AAAA", .ok = false,
     .error = "40 base64"},
    {.name = "padded_key", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0.substr(0, 38) + "==", .ok = false,
     .error = "40 base64"},
    {.name = "bad_base64_char", .value = "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0.substr(0, 39) + "*",
     .ok = false, .error = "40 base64"},
    {.name = "no_inline", .value = "1 AES_CM_128_HMAC_SHA1_80 uri:" + kKey0, .ok = false, .error = "inline:"},
    {.name = "tag_not_number", .value = "x AES_CM_128_HMAC_SHA1_80 inline:" + kKey0, .ok = false, .error = "tag"},
    {.name = "tag_ten_digits", .value = "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0, .ok = false,
     .error = "tag"},
    {.name = "tag_negative", .value = "-1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0, .ok = false, .error = "tag"},
    {.name = "two_fields", .value = "1 AES_CM_128_HMAC_SHA1_80", .ok = false, .error = "needs"},
    {.name = "empty", .value = "", .ok = false, .error = "needs"},
};

void PrintTo(const CryptoCase& c, std::ostream* os) { *os << c.name; }

class CryptoParse : public ::testing::TestWithParam<CryptoCase> {};

TEST_P(CryptoParse, AcceptsOrRefusesWithReason) {
    const CryptoCase& c = GetParam();
    std::string error;
    const auto parsed = crypto_parse(c.value, &error);
    ASSERT_EQ(parsed.has_value(), c.ok) << error;
    if (!c.ok) {
        EXPECT_NE(error.find(c.error), std::string::npos) << error;
        EXPECT_EQ(error.find(kKey0.substr(0, 12)), std::string::npos) << "an error must not quote the key: " << error;
        return;
    }
    EXPECT_EQ(parsed->tag, c.tag);
    EXPECT_EQ(parsed->suite, c.suite);
    EXPECT_EQ(parsed->key, key_from(0));
}

INSTANTIATE_TEST_SUITE_P(Table, CryptoParse, ::testing::ValuesIn(kCryptoCases),
                         [](const ::testing::TestParamInfo<CryptoCase>& p) { return p.param.name; });

TEST(CryptoSerialize, RoundTripsEveryKeyByte) {
    for (int first = 0; first < 256; first += 30) {
        CryptoAttribute c{static_cast<uint32_t>(first + 1), SrtpSuite::kAesCm128HmacSha1_32,
                          key_from(static_cast<uint8_t>(first))};
        const std::string text = crypto_serialize(c);
        const auto back = crypto_parse(text);
        ASSERT_TRUE(back) << text;
        EXPECT_EQ(back->tag, c.tag);
        EXPECT_EQ(back->suite, c.suite);
        EXPECT_EQ(back->key, c.key);
    }
    EXPECT_EQ(crypto_serialize({1, SrtpSuite::kAesCm128HmacSha1_80, key_from(0)}),
              "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0);
}

TEST(SrtpKeys, RandomKeysDiffer) {
    SrtpKeySalt a{}, b{};
    ASSERT_TRUE(srtp_random_key(a));
    ASSERT_TRUE(srtp_random_key(b));
    EXPECT_NE(a, b);
    EXPECT_NE(a, SrtpKeySalt{});
}

TEST(SrtpKeys, RedactsEveryInlineValue) {
    const std::string sdp = "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKey0 +
                            "|2^31\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + kKey0 + "\r\na=sendrecv\r\n";
    const std::string r = redact_sdes_keys(sdp);
    EXPECT_EQ(r.find(kKey0.substr(0, 8)), std::string::npos) << r;
    EXPECT_EQ(r, "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>\r\n"
                 "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:<redacted>\r\na=sendrecv\r\n");
    EXPECT_EQ(redact_sdes_keys("no keys here"), "no keys here");
    EXPECT_EQ(redact_sdes_keys("inline:"), "inline:<redacted>");
}

// ---- SrtpSession ------------------------------------------------------------------------------------------

std::vector<uint8_t> make_rtp(uint16_t seq, uint32_t ts, uint32_t ssrc, std::span<const uint8_t> payload) {
    RtpHeader h;
    h.payload_type = 0;
    h.sequence = seq;
    h.timestamp = ts;
    h.ssrc = ssrc;
    std::vector<uint8_t> out(kRtpMaxPacket);
    out.resize(rtp_serialize(h, payload, out));
    return out;
}

TEST(SrtpSession, RoundTripTamperAndReplay) {
    for (const auto suite : {SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAesCm128HmacSha1_32}) {
        std::string error;
        auto alice = SrtpSession::create({suite, key_from(1), key_from(100)}, &error);
        auto bob = SrtpSession::create({suite, key_from(100), key_from(1)}, &error);
        ASSERT_TRUE(alice && bob) << error;
        const std::vector<uint8_t> payload(160, 0x55);
        const auto plain = make_rtp(1000, 8000, 0xabcdef01, payload);

        std::vector<uint8_t> buf(plain.size() + SrtpSession::kSrtpMaxTrailer);
        std::memcpy(buf.data(), plain.data(), plain.size());
        size_t len = plain.size();
        ASSERT_TRUE(alice->protect_rtp(buf.data(), len, buf.size()));
        EXPECT_EQ(len, plain.size() + (suite == SrtpSuite::kAesCm128HmacSha1_80 ? 10u : 4u));
        EXPECT_NE(std::memcmp(buf.data() + 12, payload.data(), payload.size()), 0) << "payload is encrypted";
        const std::vector<uint8_t> wire(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(len));

        std::vector<uint8_t> tampered = wire;
        tampered[40] ^= 0x01;
        size_t tlen = tampered.size();
        EXPECT_EQ(bob->unprotect_rtp(tampered.data(), tlen), SrtpSession::Result::kAuthFailed);

        std::vector<uint8_t> rx = wire;
        size_t rlen = rx.size();
        ASSERT_EQ(bob->unprotect_rtp(rx.data(), rlen), SrtpSession::Result::kOk);
        ASSERT_EQ(rlen, plain.size());
        EXPECT_EQ(std::vector<uint8_t>(rx.begin(), rx.begin() + static_cast<ptrdiff_t>(rlen)), plain);

        rx = wire;
        rlen = rx.size();
        EXPECT_EQ(bob->unprotect_rtp(rx.data(), rlen), SrtpSession::Result::kReplayed);

        // The other direction uses the other key: alice cannot read her own packet.
        rx = wire;
        rlen = rx.size();
        EXPECT_EQ(alice->unprotect_rtp(rx.data(), rlen), SrtpSession::Result::kAuthFailed);

        // RTCP: a minimal SR grows by the SRTCP index and tag (that a peer decrypts it is checked against
        // libsrtp2's own API in SrtpMediaSession.HearsTheFarEnd... below).
        std::vector<uint8_t> sr(28 + SrtpSession::kSrtpMaxTrailer, 0);
        sr[0] = 0x80;
        sr[1] = 200;
        sr[3] = 6;
        size_t slen = 28;
        ASSERT_TRUE(alice->protect_rtcp(sr.data(), slen, sr.size()));
        EXPECT_EQ(slen, 28u + 4u + 10u);  // E flag + SRTCP index, 80-bit tag (RFC 4568: SRTCP always _80)
    }
}

TEST(SrtpSession, ProtectRefusesWithoutRoomForTheTag) {
    std::string error;
    auto s = SrtpSession::create({SrtpSuite::kAesCm128HmacSha1_80, key_from(1), key_from(2)}, &error);
    ASSERT_TRUE(s) << error;
    std::vector<uint8_t> buf(172, 0x80);
    size_t len = 172;
    EXPECT_FALSE(s->protect_rtp(buf.data(), len, buf.size()));
    EXPECT_EQ(len, 172u);
    size_t tiny = 3;
    EXPECT_EQ(s->unprotect_rtp(buf.data(), tiny), SrtpSession::Result::kInvalid);
}

// ---- MediaSession with SRTP against a libsrtp2 far end ----------------------------------------------------

class Udp {
public:
    Udp() {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "bind";
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
    }
    ~Udp() {
        if (fd_ >= 0) ::close(fd_);
    }
    uint16_t port() const { return port_; }
    void send_to(uint16_t port, const uint8_t* data, size_t n) const {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        ASSERT_EQ(::sendto(fd_, data, n, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), static_cast<ssize_t>(n));
    }
    std::optional<std::vector<uint8_t>> recv(Clock::duration timeout) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(timeout).count())) <= 0)
            return std::nullopt;
        std::vector<uint8_t> b(2048);
        const ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
        if (n < 0) return std::nullopt;
        b.resize(static_cast<size_t>(n));
        return b;
    }

private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

// The far end's contexts, made with libsrtp2's own API (srtp_init is idempotent after the first).
struct LibsrtpPeer {
    srtp_t out = nullptr, in = nullptr;
    LibsrtpPeer(SrtpKeySalt peer_key, SrtpKeySalt parley_key) {
        srtp_init();
        srtp_policy_t p{};
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
        p.ssrc.type = ssrc_any_outbound;
        p.key = peer_key.data();
        p.window_size = 128;
        EXPECT_EQ(srtp_create(&out, &p), srtp_err_status_ok);
        p.ssrc.type = ssrc_any_inbound;
        p.key = parley_key.data();
        EXPECT_EQ(srtp_create(&in, &p), srtp_err_status_ok);
    }
    ~LibsrtpPeer() {
        if (out) srtp_dealloc(out);
        if (in) srtp_dealloc(in);
    }
};

class CountingSink : public MediaSink {
public:
    void on_audio(const AudioFrame& f) override {
        double acc = 0;
        for (const int16_t s : f.samples) acc += static_cast<double>(s) * s;
        if (std::sqrt(acc / static_cast<double>(f.samples.size())) > 2000) ++loud;
    }
    void on_dtmf(char) override {}
    void on_media_timeout() override {}
    std::atomic<int> loud{0};
};

TEST(SrtpMediaSession, HearsTheFarEndSendsEncryptedAndDropsTamperedPackets) {
    const SrtpKeySalt parley_key = key_from(7), peer_key = key_from(77);
    Udp peer_rtp, peer_rtcp;
    LibsrtpPeer far(peer_key, parley_key);
    PortPool pool("127.0.0.1", 32400, 32403);
    std::string error;
    auto sockets = pool.acquire(&error);
    ASSERT_TRUE(sockets) << error;
    const uint16_t parley_port = sockets->rtp_port();
    CountingSink sink;
    MediaSessionOptions opts;
    opts.timeout_s = 0;
    opts.log_tag = "call=srtp-test";
    auto session = std::make_unique<MediaSession>(std::move(sockets), opts, sink);
    StreamParams params;
    params.remote_address = "127.0.0.1";
    params.remote_port = peer_rtp.port();
    params.remote_rtcp_port = peer_rtcp.port();
    params.srtp = SrtpParams{SrtpSuite::kAesCm128HmacSha1_80, parley_key, peer_key};
    ASSERT_TRUE(session->start(params, &error)) << error;

    // 1 s of a 1 kHz tone, every 10th packet followed by a tampered copy, plus one plain RTP packet.
    auto enc = make_encoder(CodecId::kPcmu);
    int tampered = 0;
    const auto t0 = Clock::now();
    for (int i = 0; i < 50; ++i) {
        std::this_thread::sleep_until(t0 + i * 20ms);
        std::vector<int16_t> pcm(160);
        for (size_t k = 0; k < pcm.size(); ++k)
            pcm[k] = static_cast<int16_t>(8000 * std::sin(2 * std::numbers::pi * 1000 * (i * 160 + k) / 8000.0));
        std::vector<uint8_t> body(160);
        body.resize(enc->encode(pcm, body));
        auto pkt = make_rtp(static_cast<uint16_t>(5000 + i), 160u * i, 0x5eed, body);
        pkt.resize(pkt.size() + SRTP_MAX_TRAILER_LEN);
        int len = static_cast<int>(pkt.size() - SRTP_MAX_TRAILER_LEN);
        ASSERT_EQ(srtp_protect(far.out, pkt.data(), &len), srtp_err_status_ok);
        peer_rtp.send_to(parley_port, pkt.data(), static_cast<size_t>(len));
        if (i % 10 == 9) {
            // A copy of the real packet with a sequence number not yet seen (else it is a replay, not an
            // authentication failure) and one bit of the encrypted payload flipped.
            std::vector<uint8_t> bad(pkt.begin(), pkt.begin() + len);
            bad[2] = static_cast<uint8_t>((6000 + i) >> 8);
            bad[3] = static_cast<uint8_t>(6000 + i);
            bad[20] ^= 0x40;
            peer_rtp.send_to(parley_port, bad.data(), bad.size());
            ++tampered;
        }
    }
    auto plain = make_rtp(7000, 9000, 0x5eed, std::vector<uint8_t>(160, 0x11));
    peer_rtp.send_to(parley_port, plain.data(), plain.size());
    ++tampered;

    // What Parley sent meanwhile: every packet decrypts with Parley's key, and none is plain RTP to libsrtp2.
    int decrypted = 0, failed = 0;
    const auto deadline = Clock::now() + 500ms;
    while (Clock::now() < deadline) {
        auto d = peer_rtp.recv(deadline - Clock::now());
        if (!d) break;
        int len = static_cast<int>(d->size());
        if (srtp_unprotect(far.in, d->data(), &len) == srtp_err_status_ok) {
            ++decrypted;
            EXPECT_EQ(len, 12 + 160) << "PCMU 20 ms after decryption";
        } else {
            ++failed;
        }
    }
    // And its RTCP (sent 1 s after start) is SRTCP.
    auto rtcp = peer_rtcp.recv(2s);
    session->stop();

    const MediaStats st = session->stats();
    std::printf("[ srtp     ] received=%llu auth_failed=%llu loud_frames=%d decrypted=%d failed=%d\n",
                static_cast<unsigned long long>(st.packets_received),
                static_cast<unsigned long long>(st.packets_auth_failed), sink.loud.load(), decrypted, failed);
    EXPECT_EQ(st.packets_received, 50u);
    EXPECT_EQ(st.packets_auth_failed, static_cast<uint64_t>(tampered));
    EXPECT_EQ(st.packets_foreign, 0u);
    EXPECT_GE(sink.loud.load(), 40) << "the far end's tone is heard through SRTP";
    EXPECT_GE(decrypted, 15);
    EXPECT_EQ(failed, 0);
    ASSERT_TRUE(rtcp) << "no RTCP from Parley";
    int rlen = static_cast<int>(rtcp->size());
    EXPECT_EQ(srtp_unprotect_rtcp(far.in, rtcp->data(), &rlen), srtp_err_status_ok);
}

}  // namespace
}  // namespace parley::media
