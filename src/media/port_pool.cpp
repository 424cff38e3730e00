#include "media/port_pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

namespace parley::media {

struct RtpSockets::State {
    std::mutex mu;
    std::string host;
    uint16_t min_port = 0;   // even
    size_t pairs = 0;
    size_t next = 0;         // round-robin cursor
    std::vector<bool> used;  // per pair
    size_t in_use = 0;
};

namespace {

int bind_udp(const std::string& host, uint16_t port) {
    sockaddr_storage ss{};
    socklen_t len;
    int family;
    if (host.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return -1;
        len = sizeof *a;
        family = AF_INET6;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return -1;
        len = sizeof *a;
        family = AF_INET;
    }
    int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        ::close(fd);
        return -1;
    }
    int tos = 0xb8;  // DSCP EF (46): voice
    ::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    return fd;
}

}  // namespace

RtpSockets::~RtpSockets() {
    ::close(rtp_fd_);
    ::close(rtcp_fd_);
    std::lock_guard lk(state_->mu);
    size_t idx = (port_ - state_->min_port) / 2;
    if (idx < state_->used.size() && state_->used[idx]) {
        state_->used[idx] = false;
        --state_->in_use;
    }
}

PortPool::PortPool(std::string bind_host, uint16_t min_port, uint16_t max_port)
    : state_(std::make_shared<RtpSockets::State>()) {
    state_->host = std::move(bind_host);
    state_->min_port = static_cast<uint16_t>(min_port + (min_port % 2));
    state_->pairs = max_port > state_->min_port ? (max_port - state_->min_port + 1) / 2 : 0;
    state_->used.assign(state_->pairs, false);
}

std::unique_ptr<RtpSockets> PortPool::acquire(std::string* error) {
    // Reserve a pair under the lock, bind outside it (no lock across system calls that may be slow),
    // and give the reservation back if the OS says the port is taken by someone else.
    for (size_t attempt = 0; attempt < state_->pairs; ++attempt) {
        size_t idx;
        {
            std::lock_guard lk(state_->mu);
            if (state_->in_use == state_->pairs) break;
            do {
                idx = state_->next;
                state_->next = (state_->next + 1) % state_->pairs;
            } while (state_->used[idx]);
            state_->used[idx] = true;
            ++state_->in_use;
        }
        auto port = static_cast<uint16_t>(state_->min_port + 2 * idx);
        int rtp = bind_udp(state_->host, port);
        int rtcp = rtp >= 0 ? bind_udp(state_->host, static_cast<uint16_t>(port + 1)) : -1;
        if (rtp >= 0 && rtcp >= 0) return std::unique_ptr<RtpSockets>(new RtpSockets(state_, rtp, rtcp, port));
        if (rtp >= 0) ::close(rtp);
        std::lock_guard lk(state_->mu);
        state_->used[idx] = false;
        --state_->in_use;
    }
    if (error)
        *error = fmt::format("no free RTP port pair in {}-{} on {}", state_->min_port,
                             state_->min_port + 2 * state_->pairs - 1, state_->host);
    return nullptr;
}

size_t PortPool::in_use() const {
    std::lock_guard lk(state_->mu);
    return state_->in_use;
}

size_t PortPool::capacity() const { return state_->pairs; }

}  // namespace parley::media
