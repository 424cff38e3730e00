// sdp_fuzz.cpp — sdp::parse on arbitrary bytes, then everything Parley does with a parsed body. Invariants:
//   - a failed parse always says why;
//   - what parse accepts, serialize writes back in a form parse accepts again, and serializing that gives
//     the same text (a fixpoint: nothing is lost or invented on the second trip);
//   - answer_offer either answers (with an answer that parses and has one m= line per offered one) or
//     rejects with 488 and a reason; accept_answer never crashes and only picks offered payload types.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sdp/sdp.h"

using namespace parley::sdp;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "sdp_fuzz: %s\n%s\n", what, detail.c_str());
    std::abort();
}

bool has_format(const MediaDescription& m, int pt) {
    for (const int f : m.formats) {
        if (f == pt) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::string error;
    const auto sd = parse(text, &error);
    if (!sd) {
        if (error.empty()) fail("parse failed without a reason", std::string(text));
        return 0;
    }

    const std::string once = serialize(*sd);
    const auto again = parse(once, &error);
    if (!again) fail(("serialized SDP does not parse: " + error).c_str(), once);
    const std::string twice = serialize(*again);
    if (twice != once) fail("serialize(parse(serialize(x))) differs from serialize(x)", once + "---\n" + twice);

    LocalMedia local;
    local.address = "192.0.2.1";
    local.port = 20000;
    const Answer answer = answer_offer(*sd, local);
    if (answer.status == 200) {
        // Refused streams echo the offer's media and proto tokens, so an answer to an offer near the 64 KiB
        // limit can itself exceed it by a few hundred bytes; only check the re-parse well below the limit.
        if (size <= 32 * 1024) {
            const auto parsed = parse(answer.sdp, &error);
            if (!parsed) fail(("answer does not parse: " + error).c_str(), answer.sdp);
            if (parsed->media.size() != sd->media.size()) fail("answer m= count differs from offer", answer.sdp);
        }
        if (answer.media.payload_type < 0 || answer.media.payload_type > 127) fail("bad payload type", once);
        if (answer.media.remote_port == 0 || answer.media.remote_address.empty()) fail("no remote", once);
    } else if (answer.status != 488 || answer.reason.empty() || !answer.sdp.empty()) {
        fail("rejection is not a 488 with a reason", answer.reason);
    }

    // The same body read as an answer to our offer.
    error.clear();
    if (const auto nm = accept_answer(*sd, local, &error)) {
        bool offered = false;
        for (const MediaDescription& m : sd->media) offered = offered || has_format(m, nm->payload_type);
        if (!offered) fail("accept_answer picked a payload type the answer does not list", once);
    } else if (error.empty()) {
        fail("accept_answer failed without a reason", once);
    }
    return 0;
}
