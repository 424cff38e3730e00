// handler.h — what a call *does* once it is answered: the seam between telephony and behaviour.
//
// The telephony layer (CallManager, Call) owns SIP and media; a CallHandler only sees 16 kHz frames in,
// a Playout to speak into, DTMF digits, and a CallControl to end the call or send digits. Built-in:
// `echo` (the caller hears itself after echo_delay_ms) and `playback` (plays a WAV, then hangs up). The
// conversation engine will be a third handler behind this same interface.
#pragma once

#include <memory>
#include <string>

#include "common/audio.h"
#include "common/config.h"
#include "media/playout.h"

namespace parley::call {

using CallId = uint64_t;

// How a transfer ended (CallHandler::on_transfer, control thread).
enum class TransferOutcome {
    kTransferred,  // the peer accepted our REFER (and NOTIFY reported the new call up, or timed out quietly);
                   // Parley hangs up its leg with reason "transferred"
    kBridged,      // the peer refused REFER: Parley called the target itself and now relays audio both ways;
                   // the handler no longer gets on_audio/on_dtmf
    kFailed,       // neither worked (target busy/unreachable); the call goes on with the handler
};
const char* transfer_outcome_str(TransferOutcome o);

struct TransferResult {
    TransferOutcome outcome = TransferOutcome::kFailed;
    int status = 0;          // the SIP status that decided it (REFER response, NOTIFY sipfrag, or target's answer)
    std::string detail;      // e.g. "REFER 202, NOTIFY SIP/2.0 200 OK" or "REFER 405; target 486 Busy Here"
};

// Thread-safe; handlers may call it from any thread. Requests are queued, never block.
class CallControl {
public:
    virtual ~CallControl() = default;
    virtual CallId id() const = 0;
    virtual void hangup(const std::string& reason) = 0;
    virtual void send_dtmf(const std::string& digits) = 0;
    // Blind transfer of the far end to `target` (sip: URI): SIP REFER; if the peer refuses REFER, Parley
    // calls the target and bridges the two calls. The result arrives as CallHandler::on_transfer.
    virtual void transfer(const std::string& target) = 0;
    virtual media::Playout& playout() = 0;
};

class CallHandler {
public:
    virtual ~CallHandler() = default;
    // Media is flowing (control thread). `control` outlives the handler.
    virtual void on_start(CallControl& control) = 0;
    // Every 20 ms on the call's media thread; must not block.
    virtual void on_audio(const AudioFrame& frame) = 0;
    // A digit: RFC 4733 on the media thread, SIP INFO on the control thread. Must not block.
    virtual void on_dtmf(char digit) { (void)digit; }
    // A transfer asked for with CallControl::transfer finished (control thread).
    virtual void on_transfer(const TransferResult& result) { (void)result; }
    // call.max_duration_s has passed (control thread). Return true to end the call yourself (e.g. after a
    // goodbye); the manager then hangs up anyway 30 s later. false (default): the manager hangs up now.
    virtual bool on_time_limit() { return false; }
    // The call is over (control thread, after the media thread has stopped).
    virtual void on_end() {}
};

// Makes one handler per call from the config; anything the handlers share (e.g. a decoded prompt) is
// loaded once here.
class HandlerFactory {
public:
    virtual ~HandlerFactory() = default;
    virtual std::unique_ptr<CallHandler> create() = 0;
};

// nullptr and *error when the configured handler cannot be built (e.g. unreadable playback_file).
std::unique_ptr<HandlerFactory> make_handler_factory(const CallConfig& config, std::string* error);

}  // namespace parley::call
