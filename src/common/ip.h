// ip.h — IP address literals and CIDR networks: used by the config's checks and by the NAT policy
// (src/net/nat.h), so that what the config accepts is exactly what the policy matches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace parley {

// true when `s` is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& s);

// One IPv4 or IPv6 network, "10.0.0.0/8", "fd00::/8", or a single address ("192.0.2.7" = /32).
class Cidr {
public:
    // nullopt for anything that is not an address with an optional in-range prefix length.
    static std::optional<Cidr> parse(const std::string& text);
    bool contains(const std::string& ip) const;  // false for non-literals and the other family
    const std::string& text() const { return text_; }

private:
    int family_ = 0;
    uint8_t addr_[16] = {};
    int bits_ = 0;
    std::string text_;
};

}  // namespace parley
