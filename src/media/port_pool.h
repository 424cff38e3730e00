// port_pool.h — RTP/RTCP socket pairs from a configured port range.
//
// acquire() binds an even RTP port and the next odd port for RTCP, round-robin through the range so a
// port just released is not reused at once (late packets of the previous call would land in the next).
// The returned RtpSockets closes both sockets and gives the port back when destroyed, however the call
// ends. Thread-safe. The pool's bookkeeping is shared with outstanding leases, so destruction order
// between the pool and its leases does not matter.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace parley::media {

class PortPool;

class RtpSockets {
public:
    ~RtpSockets();
    RtpSockets(const RtpSockets&) = delete;
    RtpSockets& operator=(const RtpSockets&) = delete;

    int rtp_fd() const { return rtp_fd_; }
    int rtcp_fd() const { return rtcp_fd_; }
    uint16_t rtp_port() const { return port_; }

private:
    friend class PortPool;
    struct State;
    RtpSockets(std::shared_ptr<State> state, int rtp_fd, int rtcp_fd, uint16_t port)
        : state_(std::move(state)), rtp_fd_(rtp_fd), rtcp_fd_(rtcp_fd), port_(port) {}
    std::shared_ptr<State> state_;
    int rtp_fd_;
    int rtcp_fd_;
    uint16_t port_;
};

class PortPool {
public:
    // `bind_host` is an IPv4 or IPv6 literal ("0.0.0.0" for all). min/max inclusive.
    PortPool(std::string bind_host, uint16_t min_port, uint16_t max_port);

    // Non-blocking UDP sockets, close-on-exec. nullptr (and *error) when every pair is busy.
    std::unique_ptr<RtpSockets> acquire(std::string* error);

    size_t in_use() const;
    size_t capacity() const;

private:
    std::shared_ptr<RtpSockets::State> state_;
};

}  // namespace parley::media
