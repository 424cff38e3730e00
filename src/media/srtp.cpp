// srtp.cpp — a=crypto (RFC 4568 §9.1) parsing and serialization, key generation, key redaction.
// Pure text handling; the libsrtp2 part is srtp_session.cpp.
#include "media/srtp.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <vector>

namespace parley::media {

namespace {

constexpr size_t kKeyBase64Len = 40;     // 30 bytes, no padding
constexpr uint32_t kMaxTag = 999999999;  // RFC 4568: tag = 1*9DIGIT
constexpr int kMinLifetimeLog2 = 31;     // 2^31 packets: 497 days at 50 packets/s, beyond any call
constexpr size_t kMaxEcho = 40;          // how much of an unknown token goes into an error message

bool is_ws(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> split_ws(std::string_view s) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < s.size() && out.size() < 16) {  // bounded: a line with more fields is refused below anyway
        while (i < s.size() && is_ws(s[i])) ++i;
        const size_t start = i;
        while (i < s.size() && !is_ws(s[i])) ++i;
        if (i > start) out.push_back(s.substr(start, i - start));
    }
    return out;
}

// Printable ASCII only, truncated: tokens from the network go into log lines through errors.
std::string echo(std::string_view s) {
    std::string out;
    for (const char c : s.substr(0, kMaxEcho)) out += (c > 0x20 && c < 0x7f && c != '"') ? c : '?';
    if (s.size() > kMaxEcho) out += "...";
    return out;
}

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool decode_key(std::string_view text, SrtpKeySalt& out) {
    if (text.size() != kKeyBase64Len) return false;
    size_t o = 0;
    for (size_t i = 0; i < text.size(); i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; ++j) {
            const int d = b64_value(text[i + j]);
            if (d < 0) return false;
            v = (v << 6) | static_cast<uint32_t>(d);
        }
        out[o++] = static_cast<uint8_t>(v >> 16);
        out[o++] = static_cast<uint8_t>(v >> 8);
        out[o++] = static_cast<uint8_t>(v);
    }
    return true;
}

std::string encode_key(const SrtpKeySalt& key) {
    std::string out;
    out.reserve(kKeyBase64Len);
    for (size_t i = 0; i < key.size(); i += 3) {
        const uint32_t v = (uint32_t{key[i]} << 16) | (uint32_t{key[i + 1]} << 8) | key[i + 2];
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += kB64[(v >> 6) & 63];
        out += kB64[v & 63];
    }
    return out;
}

std::optional<uint64_t> to_uint(std::string_view s, uint64_t max) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v > max) return std::nullopt;
    return v;
}

// RFC 4568 lifetime: ["2^"] 1*DIGIT, in packets. Returns log2 rounded down, or -1 when malformed.
int lifetime_log2(std::string_view s) {
    if (s.substr(0, 2) == "2^") {
        const auto n = to_uint(s.substr(2), 64);
        return n ? static_cast<int>(*n) : -1;
    }
    const auto n = to_uint(s, UINT64_MAX);
    if (!n || *n == 0) return -1;
    int log2 = 0;
    for (uint64_t v = *n; v > 1; v >>= 1) ++log2;
    return log2;
}

}  // namespace

const char* srtp_suite_name(SrtpSuite s) {
    switch (s) {
        case SrtpSuite::kAesCm128HmacSha1_80: return "AES_CM_128_HMAC_SHA1_80";
        case SrtpSuite::kAesCm128HmacSha1_32: return "AES_CM_128_HMAC_SHA1_32";
    }
    return "AES_CM_128_HMAC_SHA1_80";
}

std::optional<SrtpSuite> srtp_suite_from_name(std::string_view name) {
    if (name == "AES_CM_128_HMAC_SHA1_80") return SrtpSuite::kAesCm128HmacSha1_80;
    if (name == "AES_CM_128_HMAC_SHA1_32") return SrtpSuite::kAesCm128HmacSha1_32;
    return std::nullopt;
}

std::optional<CryptoAttribute> crypto_parse(std::string_view value, std::string* error) {
    auto fail = [error](std::string reason) -> std::optional<CryptoAttribute> {
        if (error) *error = std::move(reason);
        return std::nullopt;
    };
    const auto f = split_ws(value);
    if (f.size() < 3) return fail("a=crypto needs <tag> <suite> <key-params>");
    const auto tag = to_uint(f[0], kMaxTag);
    if (!tag || f[0].size() > 9) return fail("a=crypto tag \"" + echo(f[0]) + "\" is not a number of 1-9 digits");
    CryptoAttribute c;
    c.tag = static_cast<uint32_t>(*tag);
    const auto suite = srtp_suite_from_name(f[1]);
    if (!suite) {
        return fail("a=crypto suite " + echo(f[1]) +
                    " is not supported (AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 are)");
    }
    c.suite = *suite;
    if (f.size() > 3) {
        return fail("a=crypto session parameter " + echo(f[3]) + " is not supported");
    }
    // From here on the text is key material: errors describe it, never quote it.
    std::string_view kp = f[2];
    if (kp.find(';') != std::string_view::npos) {
        return fail("a=crypto with several master keys (they need MKI) is not supported");
    }
    if (kp.substr(0, 7) != "inline:") return fail("a=crypto key method is not inline:");
    kp.remove_prefix(7);
    const size_t bar = kp.find('|');
    if (!decode_key(kp.substr(0, bar), c.key)) {
        return fail("a=crypto key is not 40 base64 characters (a 16-byte key and 14-byte salt)");
    }
    std::string_view rest = bar == std::string_view::npos ? std::string_view() : kp.substr(bar + 1);
    if (std::count(rest.begin(), rest.end(), '|') > 1) return fail("a=crypto key has too many |-separated fields");
    bool seen_lifetime = false;
    while (bar != std::string_view::npos) {
        const size_t next = rest.find('|');
        const std::string_view field = rest.substr(0, next);
        if (field.find(':') != std::string_view::npos) {
            return fail("a=crypto with an MKI is not supported");
        }
        if (seen_lifetime) return fail("a=crypto key has two lifetimes");
        const int log2 = lifetime_log2(field);
        if (log2 < 0) return fail("a=crypto key lifetime is not [2^]<number>");
        if (log2 < kMinLifetimeLog2) {
            return fail("a=crypto key lifetime 2^" + std::to_string(log2) +
                        " packets would need rekeying, which is not supported (2^31 or more is)");
        }
        seen_lifetime = true;
        if (next == std::string_view::npos) break;
        rest = rest.substr(next + 1);
    }
    return c;
}

std::string crypto_serialize(const CryptoAttribute& c) {
    return std::to_string(c.tag) + " " + srtp_suite_name(c.suite) + " inline:" + encode_key(c.key);
}

bool srtp_random_key(SrtpKeySalt& out) {
    size_t got = 0;
    for (int tries = 0; got < out.size() && tries < 8; ++tries) {
        const ssize_t n = ::getrandom(out.data() + got, out.size() - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
        else if (n < 0 && errno != EINTR) return false;
    }
    return got == out.size();
}

std::string redact_sdes_keys(std::string_view text) {
    static constexpr std::string_view kInline = "inline:";
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        const size_t at = text.find(kInline, i);
        if (at == std::string_view::npos) {
            out.append(text.substr(i));
            break;
        }
        out.append(text.substr(i, at - i + kInline.size()));
        out += "<redacted>";
        i = at + kInline.size();
        while (i < text.size() && !is_ws(text[i]) && text[i] != '\r' && text[i] != '\n' && text[i] != ';' &&
               text[i] != '"' && text[i] != '\'')
            ++i;
    }
    return out;
}

}  // namespace parley::media
