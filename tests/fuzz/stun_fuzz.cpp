// STUN Binding responses come from the network (sip.stun_server, or anyone who can send to our socket).
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/stun.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    parley::net::StunTxId tx{};
    if (size >= 20) std::copy(data + 8, data + 20, tx.begin());  // let the fuzzer reach past the id check
    std::string err;
    auto m = parley::net::stun_parse_binding_response(data, size, tx, &err);
    if (m && m->ip.empty()) __builtin_trap();
    return 0;
}
