// stun.cpp — RFC 5389 Binding request/response (see stun.h).
#include "net/stun.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <chrono>
#include <cstring>
#include <random>

namespace parley::net {
namespace {

constexpr uint32_t kMagicCookie = 0x2112A442;
constexpr uint16_t kBindingRequest = 0x0001;
constexpr uint16_t kBindingSuccess = 0x0101;
constexpr uint16_t kBindingError = 0x0111;
constexpr uint16_t kAttrMappedAddress = 0x0001;
constexpr uint16_t kAttrErrorCode = 0x0009;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
constexpr uint16_t kAttrXorMappedAddressOld = 0x8020;  // pre-RFC servers (vovida) used this number

uint16_t be16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t be32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | p[3];
}

bool fail(std::string* error, std::string msg) {
    if (error) *error = std::move(msg);
    return false;
}

// One (XOR-)MAPPED-ADDRESS value: 0, family, port, address.
bool parse_address(const uint8_t* v, size_t len, bool xored, const uint8_t* header, StunMapped& out,
                   std::string* error) {
    if (len < 4) return fail(error, "mapped address attribute too short");
    uint8_t family = v[1];
    uint16_t port = be16(v + 2);
    if (xored) port ^= static_cast<uint16_t>(kMagicCookie >> 16);
    char buf[INET6_ADDRSTRLEN] = {};
    if (family == 0x01) {
        if (len < 8) return fail(error, "IPv4 mapped address too short");
        uint8_t a[4];
        for (int i = 0; i < 4; ++i) a[i] = static_cast<uint8_t>(v[4 + i] ^ (xored ? header[4 + i] : 0));
        inet_ntop(AF_INET, a, buf, sizeof buf);
    } else if (family == 0x02) {
        if (len < 20) return fail(error, "IPv6 mapped address too short");
        uint8_t a[16];
        for (int i = 0; i < 16; ++i) a[i] = static_cast<uint8_t>(v[4 + i] ^ (xored ? header[4 + i] : 0));
        inet_ntop(AF_INET6, a, buf, sizeof buf);
    } else {
        return fail(error, fmt::format("unknown address family {}", family));
    }
    out.ip = buf;
    out.port = port;
    out.xor_mapped = xored;
    return true;
}

}  // namespace

std::vector<uint8_t> stun_binding_request(const StunTxId& txid) {
    std::vector<uint8_t> m(20, 0);
    m[0] = kBindingRequest >> 8;
    m[1] = kBindingRequest & 0xff;
    // length 0 (bytes 2-3)
    m[4] = kMagicCookie >> 24;
    m[5] = (kMagicCookie >> 16) & 0xff;
    m[6] = (kMagicCookie >> 8) & 0xff;
    m[7] = kMagicCookie & 0xff;
    std::memcpy(m.data() + 8, txid.data(), txid.size());
    return m;
}

std::optional<StunMapped> stun_parse_binding_response(const uint8_t* data, size_t len, const StunTxId& txid,
                                                      std::string* error) {
    if (!data || len < 20) return fail(error, "shorter than a STUN header"), std::nullopt;
    if ((data[0] & 0xc0) != 0) return fail(error, "not a STUN message"), std::nullopt;
    uint16_t type = be16(data);
    size_t body_len = be16(data + 2);
    if (be32(data + 4) != kMagicCookie) return fail(error, "no STUN magic cookie"), std::nullopt;
    if (std::memcmp(data + 8, txid.data(), txid.size()) != 0)
        return fail(error, "transaction id does not match our request"), std::nullopt;
    if (body_len % 4 != 0 || 20 + body_len > len)
        return fail(error, fmt::format("length {} does not fit the {} bytes received", body_len, len)),
               std::nullopt;
    if (type != kBindingSuccess && type != kBindingError)
        return fail(error, fmt::format("message type 0x{:04x} is not a Binding response", type)),
               std::nullopt;

    std::optional<StunMapped> xor_addr, plain_addr;
    const uint8_t* p = data + 20;
    const uint8_t* end = p + body_len;
    while (end - p >= 4) {
        uint16_t attr = be16(p);
        size_t alen = be16(p + 2);
        const uint8_t* v = p + 4;
        if (alen > static_cast<size_t>(end - v))
            return fail(error, "attribute runs past the message"), std::nullopt;
        if (type == kBindingError && attr == kAttrErrorCode && alen >= 4) {
            int code = (v[2] & 0x07) * 100 + v[3];
            std::string reason(reinterpret_cast<const char*>(v + 4), alen - 4);
            for (auto& c : reason)
                if (static_cast<unsigned char>(c) < 0x20 || c == '"') c = '?';
            return fail(error, fmt::format("error response {} \"{}\"", code, reason)), std::nullopt;
        }
        StunMapped a;
        if (attr == kAttrXorMappedAddress || attr == kAttrXorMappedAddressOld) {
            if (!xor_addr && parse_address(v, alen, true, data, a, error)) xor_addr = a;
        } else if (attr == kAttrMappedAddress) {
            if (!plain_addr && parse_address(v, alen, false, data, a, error)) plain_addr = a;
        }
        size_t padded = (alen + 3) & ~size_t{3};
        if (padded > static_cast<size_t>(end - v)) break;  // last attribute, unpadded: tolerated
        p = v + padded;
    }
    if (type == kBindingError) return fail(error, "error response without ERROR-CODE"), std::nullopt;
    if (xor_addr) return xor_addr;
    if (plain_addr) return plain_addr;
    return fail(error, "no (XOR-)MAPPED-ADDRESS in the response"), std::nullopt;
}

std::optional<StunMapped> stun_query(const std::string& server, int timeout_ms, std::string* error,
                                     const std::string& bind_ip) {
    std::string host = server, port = "3478";
    if (auto colon = server.rfind(':'); colon != std::string::npos && server.find(':') == colon) {
        host = server.substr(0, colon);
        port = server.substr(colon + 1);
    }
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || !res) {
        fail(error, fmt::format("cannot resolve {}: {}", server, gai_strerror(rc)));
        return std::nullopt;
    }
    sockaddr_storage dest{};
    std::memcpy(&dest, res->ai_addr, res->ai_addrlen);
    socklen_t dest_len = res->ai_addrlen;
    ::freeaddrinfo(res);

    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(error, "socket failed"), std::nullopt;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    if (!bind_ip.empty()) {
        sockaddr_in local{};
        local.sin_family = AF_INET;
        if (inet_pton(AF_INET, bind_ip.c_str(), &local.sin_addr) != 1 ||
            ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
            return fail(error, fmt::format("cannot bind {}", bind_ip)), std::nullopt;
    }
    StunTxId txid;
    {
        std::random_device rd;
        for (auto& b : txid) b = static_cast<uint8_t>(rd());
    }
    auto req = stun_binding_request(txid);
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    auto next_send = Clock::now();
    int rto_ms = 500;
    std::string last_error = "no answer";
    for (int rounds = 0; rounds < 1000; ++rounds) {  // bounded: each round sends or waits at least 1 ms
        auto now = Clock::now();
        if (now >= deadline) break;
        if (now >= next_send) {
            ::sendto(fd, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&dest), dest_len);
            next_send = now + std::chrono::milliseconds(rto_ms);
            rto_ms *= 2;
        }
        auto wait = std::min(next_send, deadline) - Clock::now();
        int wait_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, std::max(wait_ms, 1)) <= 0) continue;
        uint8_t buf[1500];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::string err;
        if (auto m = stun_parse_binding_response(buf, static_cast<size_t>(n), txid, &err)) return m;
        last_error = err;  // a stray or bad datagram: keep waiting for ours
    }
    fail(error, fmt::format("STUN {}: {}", server, last_error));
    return std::nullopt;
}

}  // namespace parley::net
