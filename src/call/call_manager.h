// call_manager.h — turns SIP events into Calls, and owns every Call.
//
// The CallManager is the SipStack's event sink. SIP events arrive on the SIP thread and are queued to the
// manager's own control thread, which does everything else: SDP negotiation, taking RTP ports, creating,
// answering and destroying Calls, timers (answer delay, max duration), and the call limit (486 beyond
// call.max_concurrent). Media threads reach it only through queued requests (hangup). So no lock is ever
// held across I/O, and a slow call cannot stall signalling.
//
// Transfer (CallControl::transfer) is blind: REFER to the peer; 2xx, then a NOTIFY whose sipfrag is 2xx (or
// no final NOTIFY within 10 s) -> "transferred", we BYE our leg; a sipfrag >= 300 -> failed, the call goes
// on. REFER refused (>= 300) or unanswered for 10 s -> bridge fallback: we call the target ourselves (same
// line as the original call) with an internal handler and, once it answers, relay audio and DTMF between
// the two calls through an AudioBridge; either leg ending hangs up the other ("bridge_peer_ended"). The
// target not answering (busy, failed, 30 s) -> failed, the original call goes on with its handler.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "call/call.h"
#include "call/handler.h"
#include "common/config.h"
#include "media/port_pool.h"
#include "sdp/sdp.h"
#include "sip/sip_stack.h"

namespace parley::media {
class Recorder;
}
namespace parley::net {
class NatAddresses;
}

namespace parley::call {

struct CallSummary {
    CallInfo info;
    bool answered = false;
    double duration_s = 0;  // from answer to end (0 if never answered)
    media::MediaStats media;
};

// "<start epoch ms>-<id>": CallInfo::uid.
std::string make_uid(std::chrono::system_clock::time_point started, CallId id);

class CallObserver {
public:
    virtual ~CallObserver() = default;
    virtual void on_call_started(const CallInfo& info) { (void)info; }   // ringing (control thread)
    virtual void on_call_answered(const CallInfo& info) { (void)info; }
    virtual void on_call_ended(const CallSummary& summary) = 0;  // control thread
    virtual void on_line_state(const sip::LineStatus& status) { (void)status; }  // control thread
};

class CallManager final : public sip::SipEvents, public CallRequests {
public:
    CallManager(const Config& config, HandlerFactory& handlers, CallObserver* observer = nullptr);
    ~CallManager() override;  // stop()

    // Before attach(): record calls (see make_call) with this Recorder (not owned; it must outlive this
    // manager). nullptr (the default) = no recordings.
    void set_recorder(media::Recorder* recorder) { recorder_ = recorder; }
    // Before attach(): the NAT policy (not owned; must outlive this manager). With it, SDP offered to a peer
    // outside its local networks names the external media address, and each call logs
    // event=call_media_addresses (local, advertised and peer addresses). nullptr = media.address as before.
    void set_nat(const net::NatAddresses* nat) { nat_ = nat; }

    // Starts the control thread; events queued before this are processed now.
    void attach(sip::SipStack& sip);

    // Places an outgoing call (the configured handler runs once it is answered). 0 and *error on failure.
    CallId originate(const std::string& uri, const std::string& line, std::string* error);
    // The same with this call's own handler (nullptr: the configured one); *uid gets the call's uid.
    CallId originate(const std::string& uri, const std::string& line, std::unique_ptr<CallHandler> handler,
                     std::string* uid, std::string* error);
    void request_hangup(CallId id, const std::string& reason) override;
    void request_transfer(CallId id, const std::string& target) override;
    void hangup_all(const std::string& reason);
    // Waits until no call is left, at most `timeout`. true if idle.
    bool wait_idle(std::chrono::milliseconds timeout);
    // Ends whatever is left without signalling (the SIP stack must already be stopped) and joins.
    void stop();

    size_t active_calls() const { return active_.load(); }
    const media::PortPool& ports() const { return ports_; }

    // sip::SipEvents (SIP thread): queued to the control thread.
    void on_invite(const sip::InviteInfo& info) override;
    void on_ack(sip::DialogId id, const std::string& sdp) override;
    void on_reinvite(sip::DialogId id, const std::string& sdp) override;
    void on_progress(sip::DialogId id, int status, const std::string& phrase) override;
    void on_answered(sip::DialogId id, const std::string& sdp) override;
    void on_info_dtmf(sip::DialogId id, char digit) override;
    void on_refer_result(sip::DialogId id, int status, const std::string& phrase) override;
    void on_refer_notify(sip::DialogId id, int sipfrag_status, bool terminated) override;
    void on_terminated(sip::DialogId id, sip::EndCause cause, int status, const std::string& phrase) override;
    void on_line_state(const sip::LineStatus& status) override;

private:
    using Clock = std::chrono::steady_clock;
    void post(std::function<void()> fn);
    void after(std::chrono::milliseconds delay, std::function<void()> fn);
    void run();

    // control thread only
    void handle_invite(const sip::InviteInfo& info);
    void answer(CallId id);
    void handle_ack(sip::DialogId dialog, const std::string& sdp);
    void handle_reinvite(sip::DialogId dialog, const std::string& sdp);
    void handle_answered(sip::DialogId dialog, const std::string& sdp);
    void handle_terminated(sip::DialogId dialog, sip::EndCause cause, int status, const std::string& phrase);
    void do_hangup(CallId id, const std::string& reason);
    void on_max_duration(CallId id);
    CallId originate_call(const std::string& uri, const std::string& line, std::unique_ptr<CallHandler> handler,
                          CallId bridge_of, std::string* error, std::string* uid = nullptr);
    // transfer (control thread)
    void start_transfer(CallId id, const std::string& target);
    void handle_refer_result(sip::DialogId dialog, int status, const std::string& phrase);
    void handle_refer_notify(sip::DialogId dialog, int sipfrag, bool terminated);
    void start_bridge(CallId id, int refer_status, const std::string& why);
    void complete_bridge(CallId leg);
    void finish_transfer(CallId id, TransferOutcome outcome, int status, const std::string& detail);
    void transfer_on_call_end(CallId id, Call& call);
    void end_call(CallId id, std::string reason);  // by value: callers pass the call's own end_reason
    void mark_active(Call& call);
    Call* by_dialog(sip::DialogId dialog);
    sdp::LocalMedia local_media(uint16_t port, const std::string& remote_hint) const;
    media::StreamParams to_stream(const sdp::NegotiatedMedia& m) const;
    std::unique_ptr<Call> make_call(CallInfo info, std::unique_ptr<media::RtpSockets> sockets,
                                    std::unique_ptr<CallHandler> handler = nullptr);

    Config config_;
    HandlerFactory& handlers_;
    CallObserver* observer_;
    media::Recorder* recorder_ = nullptr;
    const net::NatAddresses* nat_ = nullptr;
    void log_media_addresses(CallId id, const sdp::LocalMedia& local, const std::string& peer,
                             uint16_t peer_port) const;
    media::PortPool ports_;
    sip::SipStack* sip_ = nullptr;

    std::mutex mu_;  // queue_, timers_, stopping_
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    std::multimap<Clock::time_point, std::function<void()>> timers_;
    bool stopping_ = false;
    std::thread thread_;

    std::mutex idle_mu_;
    std::condition_variable idle_cv_;
    std::atomic<size_t> active_{0};
    std::atomic<CallId> next_call_id_{1};

    // control thread only
    std::unordered_map<CallId, std::unique_ptr<Call>> calls_;
    std::unordered_map<sip::DialogId, CallId> dialog_to_call_;
    struct Pending {  // negotiation state kept between INVITE and answer/ACK
        std::string answer_sdp;              // our 200 body
        std::optional<sdp::NegotiatedMedia> media;  // set when the INVITE carried an offer
        sdp::LocalMedia local;
    };
    std::unordered_map<CallId, Pending> pending_;

    struct Transfer {  // one per call with a transfer under way (or bridged), keyed by the original call
        enum class Phase { kRefer, kWaitNotify, kDialing, kBridged };
        Phase phase = Phase::kRefer;
        uint64_t serial = 0;  // timers check it: a later transfer of the same call is not theirs
        std::string target;
        int refer_status = 0;
        std::string refer_detail;  // "REFER 405 Method Not Allowed", for the result's detail
        CallId leg = 0;            // the bridge leg we dialled
        bool leg_timed_out = false;
        std::shared_ptr<AudioBridge> bridge;
    };
    std::unordered_map<CallId, Transfer> transfers_;
    std::unordered_map<CallId, CallId> bridge_legs_;  // bridge leg -> original call
    uint64_t transfer_serial_ = 0;
};

}  // namespace parley::call
