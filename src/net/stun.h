// stun.h — the client half of a STUN Binding (RFC 5389): what address a NAT maps us to.
//
// Parley asks a STUN server (sip.stun_server) for its external address at start and every
// sip.stun_interval_s (see nat.h). This header has two layers:
//   * pure functions that build a Binding request and parse a Binding response (no I/O; the response
//     parser reads bytes from the network, so it is fuzzed: tests/fuzz/stun_fuzz.cpp);
//   * stun_query(): one blocking exchange on a fresh UDP socket, bounded in time.
// Only what a Binding needs is understood: XOR-MAPPED-ADDRESS (preferred) and MAPPED-ADDRESS (RFC 3489
// servers); other attributes are skipped. No authentication, no FINGERPRINT check (we verify the magic
// cookie and the transaction id instead, which is what RFC 5389 section 7.3 asks of a client).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace parley::net {

using StunTxId = std::array<uint8_t, 12>;

struct StunMapped {
    std::string ip;  // dotted IPv4 or IPv6 text
    uint16_t port = 0;
    bool xor_mapped = false;  // from XOR-MAPPED-ADDRESS (else MAPPED-ADDRESS)
};

// A 20-byte Binding request (no attributes) with this transaction id.
std::vector<uint8_t> stun_binding_request(const StunTxId& txid);

// Parses a Binding success response to the request with `txid`. nullopt and *error (when given) for
// anything else: too short, not a STUN message, wrong cookie or transaction id, an error response
// (the error code is in the message), attributes running past the end, no mapped address.
std::optional<StunMapped> stun_parse_binding_response(const uint8_t* data, size_t len, const StunTxId& txid,
                                                      std::string* error = nullptr);

// Sends a Binding request to `server` ("host:port" or "host", port 3478; IPv4) from an ephemeral UDP
// socket (bound to `bind_ip` when not empty), retransmitting after 500 ms and 1 s, for at most
// `timeout_ms` in all. nullopt and *error on failure (unresolvable, no answer, bad answer).
std::optional<StunMapped> stun_query(const std::string& server, int timeout_ms, std::string* error,
                                     const std::string& bind_ip = "");

}  // namespace parley::net
