// sip_stack.h — Parley's SIP signalling, on sofia-sip NUA.
//
// A SipStack owns the sofia-sip stack and runs it on its own thread (an su_root loop). Nothing outside
// this module touches a sofia object: other threads send *commands* (thread-safe, non-blocking: they are
// queued and run on the SIP thread) and receive *events* through SipEvents, called on the SIP thread.
// Event handlers must return quickly and must not call back into blocking code.
//
// Dialogs are named by a DialogId that the stack allocates (a counter, never derived from ports or
// Call-IDs). An id stays valid until the owner calls release(id) after on_terminated: that is when the
// sofia handle is destroyed. SDP is passed as text; negotiation is the caller's (src/sdp).
//
// SIP over TLS: see SipStackOptions::tls, InviteInfo::secure and invite_secure().
//
// Lines (accounts) are registered at start with digest auth, refreshed before expiry by NUA, re-registered
// with exponential backoff after any failure (registrar down or restarted), and un-registered by stop().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"

namespace parley::net {
class NatAddresses;
}

namespace parley::sip {

using DialogId = uint64_t;

struct InviteInfo {
    DialogId id = 0;
    std::string call_id;       // SIP Call-ID, for logs and records
    std::string from;          // From URI
    std::string from_display;  // display name, may be empty
    std::string to;            // To URI
    std::string line;          // name of the [[line]] it arrived on (matched by Request-URI user), or ""
    std::string content_type;  // of the body, "" when none
    std::string body;          // the SDP offer, "" when none (delayed offer)
    std::string source_ip;     // where the INVITE came from (top Via received=, else its host): NAT policy
    bool secure = false;       // arrived over TLS (sips: or transport=tls): SDES keys may be exchanged
};

enum class LineState { kUnregistered, kRegistering, kRegistered, kFailed };
const char* line_state_str(LineState s);

struct LineStatus {
    std::string name;
    LineState state = LineState::kUnregistered;
    int last_status = 0;        // last SIP status of a REGISTER transaction (0: none yet)
    std::string last_phrase;
    int expires = 0;            // granted by the registrar
    int failures = 0;           // consecutive failures (drives the backoff)
};

// Why a dialog ended, as seen by the signalling layer.
enum class EndCause {
    kRemoteBye,      // the peer sent BYE
    kLocalBye,       // we sent BYE (hangup) and it completed or timed out
    kCancelled,      // the caller cancelled before answer
    kRejected,       // we rejected it (4xx/5xx/6xx)
    kFailed,         // outgoing: the callee rejected, or the transaction failed
    kTimeout,        // no ACK, or a transaction timed out
    kShutdown,       // stop() ended it
};
const char* end_cause_str(EndCause c);

// Called on the SIP thread.
class SipEvents {
public:
    virtual ~SipEvents() = default;
    // A new incoming INVITE. The stack has sent 100 Trying; answer with respond().
    virtual void on_invite(const InviteInfo& info) = 0;
    // ACK for our 2xx. `sdp` is the answer when our 2xx carried the offer (INVITE without SDP), else "".
    virtual void on_ack(DialogId id, const std::string& sdp) = 0;
    // A re-INVITE (hold, unhold, new media address). Answer with respond(); "" body = no offer.
    virtual void on_reinvite(DialogId id, const std::string& sdp) = 0;
    // Outgoing call progress: 180/183 (ringing), 2xx (answered, `sdp` = the answer).
    virtual void on_progress(DialogId id, int status, const std::string& phrase) = 0;
    virtual void on_answered(DialogId id, const std::string& sdp) = 0;
    // A DTMF digit sent with SIP INFO (application/dtmf-relay); RFC 4733 digits come through media.
    virtual void on_info_dtmf(DialogId id, char digit) { (void)id; (void)digit; }
    // The final response to our REFER (refer()): 2xx accepted, >= 300 refused; 408 when none came (sofia's
    // transaction timeout) and 500 when it could not be sent.
    virtual void on_refer_result(DialogId id, int status, const std::string& phrase) {
        (void)id; (void)status; (void)phrase;
    }
    // A NOTIFY (Event: refer) of the implicit subscription our accepted REFER created; the stack has
    // answered it 200. `sipfrag_status` is the status of the message/sipfrag body ("SIP/2.0 180 Ringing" ->
    // 180; 0 when the body has no status line); `terminated` when Subscription-State says so.
    virtual void on_refer_notify(DialogId id, int sipfrag_status, bool terminated) {
        (void)id; (void)sipfrag_status; (void)terminated;
    }
    // The dialog is over for good; no more events for `id`. Call release(id) when done with it.
    virtual void on_terminated(DialogId id, EndCause cause, int status, const std::string& phrase) = 0;
    // A line's registration state changed.
    virtual void on_line_state(const LineStatus& status) = 0;
};

struct SipStackOptions {
    std::string listen_host = "0.0.0.0";
    uint16_t listen_port = 5060;
    std::string user_agent = "Parley";
    std::vector<LineConfig> lines;
    int unregister_timeout_ms = 3000;  // stop() waits at most this long for un-REGISTERs
    // NAT (docs/nat.md). Not owned; must outlive the stack. nullptr = no NAT handling (Contact is NUA's).
    // With it: Via carries ;rport (RFC 3581); peers outside its local networks get a Contact with the
    // external address; a REGISTER response whose Via received/rport differs from what we advertised
    // records that address (NatAddresses::set_rport_mapped) and the line is re-registered with it (the old
    // binding removed first). Each line with keepalive_s > 0 sends OPTIONS to its registrar that often while
    // registered, which keeps the NAT binding (and so inbound calls) alive.
    net::NatAddresses* nat = nullptr;
    // SIP over TLS (docs/tls.md). When tls.enabled(): a TLS listener on tls.listen_host:listen_port, lines
    // with transport "tls" register (and call) over TLS only, the peer's certificate is verified against
    // tls.ca_file and must name the host of the URI (sofia-sip: CN or DNS subjectAltName, exact match).
    // A certificate that fails logs event=line_register_failed with reason="TLS: ..." and the line retries
    // with backoff; it never falls back to UDP or TCP.
    SipTlsConfig tls;
};


class SipStack {
public:
    // Binds the listen address (UDP and TCP) and starts the SIP thread. Returns nullptr and sets *error
    // when the stack cannot start (e.g. the port is in use). `events` must outlive the stack.
    static std::unique_ptr<SipStack> start(const SipStackOptions& options, SipEvents& events,
                                           std::string* error);
    ~SipStack();  // stop() if still running
    SipStack(const SipStack&) = delete;
    SipStack& operator=(const SipStack&) = delete;

    // Commands: thread-safe, return at once; the work happens on the SIP thread. Unknown or released
    // ids are ignored (the dialog may have ended in the meantime).
    void respond(DialogId id, int status, const std::string& phrase, const std::string& sdp = "");
    void hangup(DialogId id);   // BYE if established, CANCEL if our INVITE is pending, 480 if not answered
    void release(DialogId id);  // destroy the handle after on_terminated
    // Places a call; events for it come with the returned id. `line` selects credentials and From.
    DialogId invite(const std::string& uri, const std::string& sdp, const std::string& line = "");
    void send_info_dtmf(DialogId id, char digit);
    // REFER the peer of `id` to `target` (blind transfer). The final response arrives as on_refer_result,
    // the progress of the referred call as on_refer_notify. An unknown or not established dialog gets
    // on_refer_result(id, 481).
    void refer(DialogId id, const std::string& target);

    // NAT: the external address changed (a new STUN answer): lines whose Contact would now differ are
    // re-registered (stale Contact un-registered first). Thread-safe, returns at once.
    void refresh_nat();
    // Whether invite(uri, ..., line) sends its INVITE over TLS: `uri` is sips: or has transport=tls, or the
    // line (the first line when `line` is "", as invite() chooses) has transport "tls" — invite() then
    // forces TLS for that call (adds transport=tls to a plain sip: URI, refuses an explicit udp/tcp one).
    // The call manager asks this before putting SDES keys in an offer. Thread-safe (reads the options).
    bool invite_secure(const std::string& uri, const std::string& line = "") const;

    std::vector<LineStatus> lines() const;
    std::string contact_host() const;  // the address SIP is bound to, for logs

    // Un-registers every line (bounded by unregister_timeout_ms), ends remaining dialogs, shuts the
    // stack down and joins the SIP thread. Idempotent.
    void stop();

    struct Impl;
private:
    explicit SipStack(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace parley::sip
