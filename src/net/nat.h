// nat.h — which address Parley advertises to whom (SIP Contact, SDP c=/o=) when it sits behind a NAT.
//
// NatAddresses holds the external addresses, configured (sip.external_address, media.external_address) or
// discovered at run time (STUN, or the received/rport a registrar saw on our REGISTER), and the local
// networks (sip.local_networks) whose peers keep getting our local address. It is shared by the SIP thread
// and the call manager's control thread: every method is thread-safe and none blocks (no I/O, no DNS).
//
// StunRefresher asks a STUN server for the external address at start and every interval, on its own thread
// (joined by its destructor), and stores what it learns in a NatAddresses.
//
// Policy, for a peer address P (an IP literal):
//   P inside local_networks               -> the local address (unchanged behaviour)
//   otherwise, an external address known  -> the external address (configured beats discovered)
//   otherwise                             -> the local address
// A peer given by host name is not resolved here: it counts as outside local_networks.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/ip.h"

namespace parley::net {

// The local address the kernel would use to reach `peer_ip` (a connect()ed UDP socket, no packet sent);
// "" when there is no route or `peer_ip` is not a literal.
std::string route_source(const std::string& peer_ip);

class NatAddresses {
public:
    struct Options {
        std::string sip_external;    // sip.external_address: "" = discover (STUN / rport) or none
        std::string media_external;  // media.external_address: "" = sip's (configured or discovered)
        std::vector<std::string> local_networks;  // CIDRs; invalid entries are rejected by the config
    };
    explicit NatAddresses(Options options);

    bool is_local(const std::string& peer_ip) const;
    // Our SIP address (host, port) for `peer`, or nullopt: let the SIP stack use its local one.
    // `line` selects an address a registrar reported for that line (rport), which wins over STUN's.
    std::optional<std::pair<std::string, uint16_t>> sip_address_for(const std::string& peer,
                                                                    const std::string& line,
                                                                    uint16_t local_port) const;
    // Our media address for `peer` (its SDP c= or the SIP peer), or "" = the local one.
    std::string media_address_for(const std::string& peer) const;

    // Discoveries. Each returns true when it changed what we know (the caller logs / re-registers). A
    // changed STUN address (not the first) forgets the rport mappings: they were seen on the old one.
    bool set_stun_mapped(const std::string& ip);
    bool set_rport_mapped(const std::string& line, const std::string& ip, uint16_t port);
    bool configured() const { return !options_.sip_external.empty(); }
    bool any_external() const { return !external_sip_ip().empty(); }
    std::string external_sip_ip() const;    // configured, else rport's (any line), else STUN's; "" if none
    std::string external_media_ip() const;  // media_external, else external_sip_ip()
    std::string describe_local_networks() const;

private:
    Options options_;
    std::vector<Cidr> local_;
    mutable std::mutex mu_;
    std::string stun_ip_;
    struct RportMapping {
        std::string line, ip;
        uint16_t port;
    };
    std::vector<RportMapping> rport_;
};

class StunRefresher {
public:
    // Queries `server` now and then every `interval_s` (0: only once), on its own thread. `on_change` (may
    // be empty) is called on that thread each time the external address changed; it must not block.
    StunRefresher(NatAddresses& nat, std::string server, int interval_s,
                  std::function<void()> on_change = {});
    ~StunRefresher();  // stops and joins
    StunRefresher(const StunRefresher&) = delete;
    StunRefresher& operator=(const StunRefresher&) = delete;
    // Waits (bounded) for the first answer: start-up uses it so the first REGISTER already carries the
    // external address. true if one arrived.
    bool wait_first(int timeout_ms);

private:
    void run();
    NatAddresses& nat_;
    std::string server_;
    int interval_s_;
    std::function<void()> on_change_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool first_done_ = false;
    std::thread thread_;
};

}  // namespace parley::net
