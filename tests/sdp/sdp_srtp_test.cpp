// sdp_srtp_test.cpp — SRTP (SDES, RFC 4568) in SDP: a=crypto lines in parsing and serialization, and the
// offer/answer rules of media.srtp (off / optional / required) and of unencrypted signalling, as one table.
#include <gtest/gtest.h>

#include "sdp/sdp.h"

namespace parley::sdp {
namespace {

using media::CryptoAttribute;
using media::SrtpKeySalt;
using media::SrtpSuite;

const std::string kHeader = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n";
// Key bytes 0..29 and 100..129, base64.
const std::string kKeyA = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
const std::string kKeyB = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CB";

SrtpKeySalt key_from(uint8_t first) {
    SrtpKeySalt k;
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(first + i);
    return k;
}

LocalMedia local_with(LocalMedia::Srtp mode, bool keys_allowed = true) {
    LocalMedia local;
    local.address = "192.0.2.100";
    local.port = 20000;
    local.srtp = mode;
    local.srtp_keys_allowed = keys_allowed;
    local.srtp_keys = {key_from(200), key_from(50)};
    return local;
}

std::string savp(const std::string& crypto_lines) {
    return kHeader + "m=audio 4000 RTP/SAVP 0\n" + crypto_lines;
}

TEST(SdpCrypto, ParsesUsableAndKeepsReasonsForTheOthers) {
    const auto sd = parse(savp("a=crypto:3 AES_CM_256_HMAC_SHA1_80 inline:" + kKeyA +
                               "\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "|2^31\n"
                               "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + kKeyB + "|1:4\n"));
    ASSERT_TRUE(sd);
    const MediaDescription& m = sd->media.at(0);
    ASSERT_EQ(m.crypto.size(), 1u);
    EXPECT_EQ(m.crypto[0].tag, 1u);
    EXPECT_EQ(m.crypto[0].suite, SrtpSuite::kAesCm128HmacSha1_80);
    EXPECT_EQ(m.crypto[0].key, key_from(0));
    ASSERT_EQ(m.crypto_refused.size(), 2u);
    EXPECT_NE(m.crypto_refused[0].find("AES_CM_256_HMAC_SHA1_80"), std::string::npos) << m.crypto_refused[0];
    EXPECT_NE(m.crypto_refused[1].find("MKI"), std::string::npos) << m.crypto_refused[1];
    // Written back with the usable line only, and that parses to the same.
    const std::string text = serialize(*sd);
    EXPECT_NE(text.find("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "\r\n"), std::string::npos) << text;
    const auto again = parse(text);
    ASSERT_TRUE(again);
    ASSERT_EQ(again->media.at(0).crypto.size(), 1u);
    EXPECT_EQ(again->media.at(0).crypto[0].key, key_from(0));
}

// ---- offer/answer: one row per rule ------------------------------------------------------------------

struct SrtpCase {
    std::string name;
    std::string offer;
    LocalMedia::Srtp mode = LocalMedia::Srtp::kOptional;
    bool keys_allowed = true;
    int status = 200;
    std::string reason{};  // substring, for 488
    bool srtp = false;     // the answer is RTP/SAVP with our key
    uint32_t tag = 1;
    SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
    uint8_t remote_key_first = 0;  // the remote key chosen (key_from(first))
    uint16_t remote_port = 4000;
};

const std::string kCryptoA80 = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "\n";
const std::string kCryptoB32 = "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:" + kKeyB + "\n";

const SrtpCase kCases[] = {
    {.name = "optional_takes_savp", .offer = savp(kCryptoA80), .srtp = true},
    {.name = "required_takes_savp", .offer = savp(kCryptoA80), .mode = LocalMedia::Srtp::kRequired, .srtp = true},
    {.name = "first_offered_suite_wins_32", .offer = savp(kCryptoB32 + kCryptoA80), .srtp = true, .tag = 7,
     .suite = SrtpSuite::kAesCm128HmacSha1_32, .remote_key_first = 100},
    {.name = "unsupported_first_line_skipped",
     .offer = savp("a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + kKeyA + "\n" + kCryptoB32), .srtp = true, .tag = 7,
     .suite = SrtpSuite::kAesCm128HmacSha1_32, .remote_key_first = 100},
    {.name = "off_refuses_savp", .offer = savp(kCryptoA80), .mode = LocalMedia::Srtp::kOff, .status = 488,
     .reason = "media.srtp is off"},
    {.name = "optional_takes_avp", .offer = kHeader + "m=audio 4000 RTP/AVP 0\n"},
    {.name = "off_takes_avp", .offer = kHeader + "m=audio 4000 RTP/AVP 0\n", .mode = LocalMedia::Srtp::kOff},
    {.name = "required_refuses_avp", .offer = kHeader + "m=audio 4000 RTP/AVP 0\n",
     .mode = LocalMedia::Srtp::kRequired, .status = 488, .reason = "plain RTP/AVP"},
    {.name = "insecure_signalling_refuses_savp", .offer = savp(kCryptoA80), .keys_allowed = false, .status = 488,
     .reason = "unencrypted signalling"},
    {.name = "insecure_required_refuses_both",
     .offer = savp(kCryptoA80) + "m=audio 4002 RTP/AVP 0\n", .mode = LocalMedia::Srtp::kRequired,
     .keys_allowed = false, .status = 488, .reason = "unencrypted signalling"},
    {.name = "insecure_optional_falls_back_to_second_avp_line",
     .offer = savp(kCryptoA80) + "m=audio 4002 RTP/AVP 0\n", .keys_allowed = false, .remote_port = 4002},
    {.name = "savp_without_crypto", .offer = savp(""), .status = 488, .reason = "no a=crypto"},
    {.name = "savp_only_mki", .offer = savp("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "|2^31|1:4\n"),
     .status = 488, .reason = "MKI"},
    {.name = "savp_short_lifetime", .offer = savp("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "|2^20\n"),
     .status = 488, .reason = "rekeying"},
    {.name = "dtls_srtp_refused", .offer = kHeader + "m=audio 4000 UDP/TLS/RTP/SAVP 0\n", .status = 488,
     .reason = "UDP/TLS/RTP/SAVP"},
};

void PrintTo(const SrtpCase& c, std::ostream* os) { *os << c.name; }

class SdpSrtpOfferAnswer : public ::testing::TestWithParam<SrtpCase> {};

TEST_P(SdpSrtpOfferAnswer, AnswersAsTheRulesSay) {
    const SrtpCase& c = GetParam();
    std::string error;
    const auto offer = parse(c.offer, &error);
    ASSERT_TRUE(offer) << error;
    const LocalMedia local = local_with(c.mode, c.keys_allowed);
    const Answer a = answer_offer(*offer, local);
    ASSERT_EQ(a.status, c.status) << a.reason;
    if (c.status != 200) {
        EXPECT_NE(a.reason.find(c.reason), std::string::npos) << a.reason;
        EXPECT_EQ(a.reason.find(kKeyA), std::string::npos) << "no key bytes in reasons";
        return;
    }
    EXPECT_EQ(a.media.remote_port, c.remote_port);
    const auto sd = parse(a.sdp, &error);
    ASSERT_TRUE(sd) << error;
    const auto it = std::find_if(sd->media.begin(), sd->media.end(), [](auto& m) { return m.port != 0; });
    ASSERT_NE(it, sd->media.end());
    if (!c.srtp) {
        EXPECT_FALSE(a.media.srtp);
        EXPECT_EQ(it->proto, "RTP/AVP");
        EXPECT_TRUE(it->crypto.empty());
        return;
    }
    ASSERT_TRUE(a.media.srtp);
    EXPECT_EQ(a.media.srtp->suite, c.suite);
    EXPECT_EQ(a.media.srtp->remote_key, key_from(c.remote_key_first));
    EXPECT_EQ(a.media.srtp->local_key, local.srtp_keys[0]);
    // RFC 4568 §7.1.2: the answer has exactly one a=crypto, with the offer's tag and suite and our key.
    EXPECT_EQ(it->proto, "RTP/SAVP");
    ASSERT_EQ(it->crypto.size(), 1u);
    EXPECT_EQ(it->crypto[0].tag, c.tag);
    EXPECT_EQ(it->crypto[0].suite, c.suite);
    EXPECT_EQ(it->crypto[0].key, local.srtp_keys[0]);
}

INSTANTIATE_TEST_SUITE_P(Table, SdpSrtpOfferAnswer, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<SrtpCase>& p) { return p.param.name; });

// ---- our offers and their answers ------------------------------------------------------------------

TEST(SdpSrtpOffer, RequiredOffersSavpWithBothSuitesAndOptionalOffersPlainRtp) {
    const auto required = parse(make_offer(local_with(LocalMedia::Srtp::kRequired)));
    ASSERT_TRUE(required);
    const MediaDescription& m = required->media.at(0);
    EXPECT_EQ(m.proto, "RTP/SAVP");
    ASSERT_EQ(m.crypto.size(), 2u);
    EXPECT_EQ(m.crypto[0].tag, 1u);
    EXPECT_EQ(m.crypto[0].suite, SrtpSuite::kAesCm128HmacSha1_80);
    EXPECT_EQ(m.crypto[0].key, key_from(200));
    EXPECT_EQ(m.crypto[1].tag, 2u);
    EXPECT_EQ(m.crypto[1].suite, SrtpSuite::kAesCm128HmacSha1_32);
    EXPECT_EQ(m.crypto[1].key, key_from(50));

    for (const auto mode : {LocalMedia::Srtp::kOptional, LocalMedia::Srtp::kOff}) {
        const auto plain = parse(make_offer(local_with(mode)));
        ASSERT_TRUE(plain);
        EXPECT_EQ(plain->media.at(0).proto, "RTP/AVP");
        EXPECT_TRUE(plain->media.at(0).crypto.empty());
    }
    // Keys not allowed (insecure signalling): never an offer with keys in it.
    const auto insecure = parse(make_offer(local_with(LocalMedia::Srtp::kRequired, false)));
    ASSERT_TRUE(insecure);
    EXPECT_TRUE(insecure->media.at(0).crypto.empty());
}

struct AcceptSrtpCase {
    std::string name;
    std::string answer;
    bool ok = true;
    std::string error{};
    SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
    uint8_t our_key_first = 200;
};

const AcceptSrtpCase kAcceptCases[] = {
    {.name = "tag1_80", .answer = savp(kCryptoA80)},
    {.name = "tag2_32", .answer = savp("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + kKeyA + "\n"),
     .suite = SrtpSuite::kAesCm128HmacSha1_32, .our_key_first = 50},
    {.name = "plain_answer_refused", .answer = kHeader + "m=audio 4000 RTP/AVP 0\n", .ok = false,
     .error = "instead of RTP/SAVP"},
    {.name = "unknown_tag", .answer = savp("a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyA + "\n"),
     .ok = false, .error = "no a=crypto matching"},
    {.name = "suite_switched_under_tag",
     .answer = savp("a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + kKeyA + "\n"), .ok = false,
     .error = "no a=crypto matching"},
};

void PrintTo(const AcceptSrtpCase& c, std::ostream* os) { *os << c.name; }

class SdpSrtpAccept : public ::testing::TestWithParam<AcceptSrtpCase> {};

TEST_P(SdpSrtpAccept, ReadsTheAnswerToOurSavpOffer) {
    const AcceptSrtpCase& c = GetParam();
    const auto answer = parse(c.answer);
    ASSERT_TRUE(answer);
    std::string error;
    const auto nm = accept_answer(*answer, local_with(LocalMedia::Srtp::kRequired), &error);
    ASSERT_EQ(nm.has_value(), c.ok) << error;
    if (!c.ok) {
        EXPECT_NE(error.find(c.error), std::string::npos) << error;
        return;
    }
    ASSERT_TRUE(nm->srtp);
    EXPECT_EQ(nm->srtp->suite, c.suite);
    EXPECT_EQ(nm->srtp->local_key, key_from(c.our_key_first));
    EXPECT_EQ(nm->srtp->remote_key, key_from(0));
}

INSTANTIATE_TEST_SUITE_P(Table, SdpSrtpAccept, ::testing::ValuesIn(kAcceptCases),
                         [](const ::testing::TestParamInfo<AcceptSrtpCase>& p) { return p.param.name; });

TEST(SdpSrtpAccept, PlainOfferTakesOnlyPlainAnswers) {
    std::string error;
    const auto answer = parse(savp(kCryptoA80));
    ASSERT_TRUE(answer);
    EXPECT_FALSE(accept_answer(*answer, local_with(LocalMedia::Srtp::kOptional), &error));
    EXPECT_NE(error.find("RTP/SAVP"), std::string::npos) << error;
}

}  // namespace
}  // namespace parley::sdp
