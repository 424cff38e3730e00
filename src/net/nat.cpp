// nat.cpp — see nat.h.
#include "net/nat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "common/log.h"
#include "net/stun.h"

namespace parley::net {

std::string route_source(const std::string& peer_ip) {
    sockaddr_storage ss{};
    socklen_t len;
    int family = peer_ip.find(':') != std::string::npos ? AF_INET6 : AF_INET;
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(9);
        if (inet_pton(AF_INET, peer_ip.c_str(), &a->sin_addr) != 1) return {};
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(9);
        if (inet_pton(AF_INET6, peer_ip.c_str(), &a->sin6_addr) != 1) return {};
        len = sizeof *a;
    }
    int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {};
    std::string out;
    sockaddr_storage local{};
    socklen_t llen = sizeof local;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (family == AF_INET)
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, buf, sizeof buf);
        else
            inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, buf, sizeof buf);
        out = buf;
    }
    ::close(fd);
    return out;
}

NatAddresses::NatAddresses(Options options) : options_(std::move(options)) {
    for (auto& n : options_.local_networks)
        if (auto c = Cidr::parse(n)) local_.push_back(*c);
}

bool NatAddresses::is_local(const std::string& peer_ip) const {
    for (auto& c : local_)
        if (c.contains(peer_ip)) return true;
    return false;
}

std::string NatAddresses::external_sip_ip() const {
    if (!options_.sip_external.empty()) return options_.sip_external;
    std::lock_guard lk(mu_);
    if (!rport_.empty()) return rport_.front().ip;
    return stun_ip_;
}

std::string NatAddresses::external_media_ip() const {
    if (!options_.media_external.empty()) return options_.media_external;
    return external_sip_ip();
}

std::optional<std::pair<std::string, uint16_t>> NatAddresses::sip_address_for(const std::string& peer,
                                                                              const std::string& line,
                                                                              uint16_t local_port) const {
    if (is_local(peer)) return std::nullopt;
    if (!options_.sip_external.empty()) return std::make_pair(options_.sip_external, local_port);
    std::lock_guard lk(mu_);
    for (auto& m : rport_)
        if (m.line == line) return std::make_pair(m.ip, m.port);
    if (!rport_.empty()) return std::make_pair(rport_.front().ip, local_port);
    if (!stun_ip_.empty()) return std::make_pair(stun_ip_, local_port);
    return std::nullopt;
}

std::string NatAddresses::media_address_for(const std::string& peer) const {
    if (is_local(peer)) return {};
    return external_media_ip();
}

bool NatAddresses::set_stun_mapped(const std::string& ip) {
    std::lock_guard lk(mu_);
    if (stun_ip_ == ip) return false;
    // A new public address makes what registrars saw before stale too: they learn it again (rport) from
    // the REGISTER that the change triggers.
    if (!stun_ip_.empty()) rport_.clear();
    stun_ip_ = ip;
    return true;
}

bool NatAddresses::set_rport_mapped(const std::string& line, const std::string& ip, uint16_t port) {
    std::lock_guard lk(mu_);
    for (auto& m : rport_) {
        if (m.line != line) continue;
        if (m.ip == ip && m.port == port) return false;
        m.ip = ip;
        m.port = port;
        return true;
    }
    rport_.push_back({line, ip, port});
    return true;
}

std::string NatAddresses::describe_local_networks() const {
    std::string out;
    for (auto& c : local_) out += (out.empty() ? "" : ",") + c.text();
    return out;
}

// -------------------------------------------------------------------------------------------------

StunRefresher::StunRefresher(NatAddresses& nat, std::string server, int interval_s,
                             std::function<void()> on_change)
    : nat_(nat), server_(std::move(server)), interval_s_(interval_s), on_change_(std::move(on_change)) {
    thread_ = std::thread([this] { run(); });
}

StunRefresher::~StunRefresher() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool StunRefresher::wait_first(int timeout_ms) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return first_done_ || stop_; });
    return first_done_ && !nat_.external_sip_ip().empty();
}

void StunRefresher::run() {
    bool failing = false;
    for (;;) {
        std::string err;
        auto m = stun_query(server_, 2500, &err);  // blocking, bounded; no lock held
        if (m) {
            bool changed = nat_.set_stun_mapped(m->ip);
            if (changed || failing)
                PLOG_INFO("event=nat_stun_mapped server={} external={}:{} xor={}", server_, m->ip, m->port,
                          m->xor_mapped);
            failing = false;
            if (changed && on_change_) on_change_();
        } else if (!failing) {
            PLOG_WARN("event=nat_stun_failed server={} error=\"{}\"", server_, err);  // once per outage
            failing = true;
        }
        std::unique_lock lk(mu_);
        first_done_ = true;
        cv_.notify_all();
        if (interval_s_ <= 0) return;
        if (cv_.wait_for(lk, std::chrono::seconds(interval_s_), [this] { return stop_; })) return;
    }
}

}  // namespace parley::net
