// crypto_attr_fuzz.cpp — libFuzzer target for a=crypto values (RFC 4568), which arrive in SDP from anyone
// who can send an INVITE. crypto_parse must never crash or read past its input, must never quote key
// material in an error, and whatever it accepts must serialize to a value it parses back to the same.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "media/srtp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // An exact-size heap copy: ASan catches any read past the end.
    char* copy = static_cast<char*>(std::malloc(size ? size : 1));
    if (size) __builtin_memcpy(copy, data, size);
    const std::string_view value(copy, size);
    std::string error;
    const auto c = parley::media::crypto_parse(value, &error);
    if (c) {
        const std::string text = parley::media::crypto_serialize(*c);
        const auto again = parley::media::crypto_parse(text);
        if (!again || again->tag != c->tag || again->suite != c->suite || again->key != c->key) std::abort();
    } else if (error.empty()) {
        std::abort();  // every refusal has a reason
    }
    const std::string redacted = parley::media::redact_sdes_keys(value);
    for (size_t at = redacted.find("inline:"); at != std::string::npos; at = redacted.find("inline:", at + 1)) {
        if (redacted.compare(at + 7, 10, "<redacted>") != 0) std::abort();  // a key survived redaction
    }
    std::free(copy);
    return 0;
}
