// ip.cpp — see ip.h.
#include "common/ip.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace parley {

bool is_ip_literal(const std::string& s) {
    uint8_t buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::optional<Cidr> Cidr::parse(const std::string& text) {
    Cidr c;
    c.text_ = text;
    std::string addr = text;
    int bits = -1;
    if (auto slash = text.find('/'); slash != std::string::npos) {
        addr = text.substr(0, slash);
        std::string b = text.substr(slash + 1);
        if (b.empty() || b.size() > 3 || b.find_first_not_of("0123456789") != std::string::npos)
            return std::nullopt;
        bits = std::stoi(b);
    }
    if (inet_pton(AF_INET, addr.c_str(), c.addr_) == 1) {
        c.family_ = AF_INET;
        if (bits < 0) bits = 32;
        if (bits > 32) return std::nullopt;
    } else if (inet_pton(AF_INET6, addr.c_str(), c.addr_) == 1) {
        c.family_ = AF_INET6;
        if (bits < 0) bits = 128;
        if (bits > 128) return std::nullopt;
    } else {
        return std::nullopt;
    }
    c.bits_ = bits;
    return c;
}

bool Cidr::contains(const std::string& ip) const {
    uint8_t a[16];
    int fam = inet_pton(AF_INET, ip.c_str(), a) == 1    ? AF_INET
              : inet_pton(AF_INET6, ip.c_str(), a) == 1 ? AF_INET6
                                                        : 0;
    if (fam != family_) return false;
    int full = bits_ / 8, rest = bits_ % 8;
    if (std::memcmp(a, addr_, static_cast<size_t>(full)) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (addr_[full] & mask);
}

}  // namespace parley
