// srtp.h — SRTP (RFC 3711) with SDES keys (RFC 4568 a=crypto), over Debian's libsrtp2.
//
// Two parts:
//   - a=crypto text: crypto_parse()/crypto_serialize() (pure, no I/O, fuzzed: tests/fuzz/crypto_attr_fuzz.cpp),
//     srtp_random_key() (getrandom) and redact_sdes_keys() for anything that might reach a log;
//   - SrtpSession: one call's SRTP contexts (inbound with the peer's key, outbound with ours), RTP and RTCP,
//     used by the media thread only. libsrtp2 is initialised once per process (thread-safe).
//
// Supported: AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32, one master key per a=crypto line, an
// optional lifetime of at least 2^31 packets (never reached in a call, so never rekeyed). Refused, each
// with a reason: other suites, MKI, several keys per line, shorter lifetimes, session parameters
// (UNENCRYPTED_SRTP, KDR=, WSH=, ...). Key bytes are secrets: they are wiped when freed and never logged.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace parley::media {

enum class SrtpSuite { kAesCm128HmacSha1_80, kAesCm128HmacSha1_32 };
const char* srtp_suite_name(SrtpSuite s);  // "AES_CM_128_HMAC_SHA1_80", ...
std::optional<SrtpSuite> srtp_suite_from_name(std::string_view name);  // exact (RFC 4568 names are upper case)

// Master key (16 bytes) followed by master salt (14 bytes): what inline: carries, base64-encoded.
constexpr size_t kSrtpKeySaltLen = 30;
using SrtpKeySalt = std::array<uint8_t, kSrtpKeySaltLen>;

// One a=crypto line: "a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>]".
struct CryptoAttribute {
    uint32_t tag = 1;  // 1..999999999
    SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
    SrtpKeySalt key{};
};

// Parses the value after "a=crypto:". nullopt (and *error, which never contains key bytes) for anything
// malformed or unsupported. Never reads past `value`.
std::optional<CryptoAttribute> crypto_parse(std::string_view value, std::string* error = nullptr);
// The value for "a=crypto:" (without it), e.g. "1 AES_CM_128_HMAC_SHA1_80 inline:<40 base64 chars>".
std::string crypto_serialize(const CryptoAttribute& c);

// 30 fresh bytes from the kernel CSPRNG (getrandom). false only if the kernel refuses.
bool srtp_random_key(SrtpKeySalt& out);

// `text` with every "inline:<key>" value replaced by "inline:<redacted>": for SDP bodies or SIP messages
// that are about to be logged or stored.
std::string redact_sdes_keys(std::string_view text);

// What offer/answer decided for SRTP on one stream.
struct SrtpParams {
    SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
    SrtpKeySalt local_key{};   // ours: protects what we send
    SrtpKeySalt remote_key{};  // the peer's: unprotects what we receive
    bool operator==(const SrtpParams&) const = default;
};

// One call's SRTP state. Not thread-safe: the media thread alone uses it. Buffers passed to protect_*
// must have kSrtpMaxTrailer bytes of room after `len`.
class SrtpSession {
public:
    static constexpr size_t kSrtpMaxTrailer = 144;  // >= libsrtp2's SRTP_MAX_TRAILER_LEN

    enum class Result { kOk, kAuthFailed, kReplayed, kInvalid };

    // nullptr (and *error) when libsrtp2 refuses the keys.
    static std::unique_ptr<SrtpSession> create(const SrtpParams& params, std::string* error);
    ~SrtpSession();
    SrtpSession(const SrtpSession&) = delete;
    SrtpSession& operator=(const SrtpSession&) = delete;

    // In place: `len` grows by the auth tag (and SRTCP index). false when it cannot protect.
    bool protect_rtp(uint8_t* buf, size_t& len, size_t capacity);
    bool protect_rtcp(uint8_t* buf, size_t& len, size_t capacity);
    // In place: on kOk `len` is the plain packet's length; on anything else the packet must be dropped.
    // (Received SRTCP is not read: the media thread drops incoming RTCP unparsed, as for plain RTP.)
    Result unprotect_rtp(uint8_t* buf, size_t& len);

    struct Impl;

private:
    explicit SrtpSession(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace parley::media
