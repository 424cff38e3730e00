// media_session.h — one call's RTP stream: socket pair, receive path, paced send clock.
//
// A MediaSession owns its RtpSockets and one media thread. The thread:
//   - receives RTP, accepts it only from the negotiated source (or latches once onto the real source
//     when symmetric RTP is on: NAT), validates it, turns RFC 4733 packets into digits, reorders and
//     de-jitters the rest, decodes (concealing losses) and resamples to 16 kHz;
//   - every 20 ms, on an absolute schedule from a monotonic start (no drift from chained sleeps), hands
//     one AudioFrame to the MediaSink;
//   - every ptime, on the same kind of schedule, takes a packet's worth from the Playout (silence when
//     it is empty), encodes and sends it with correct sequence, timestamp, SSRC and marker; RFC 4733
//     digits queued by send_dtmf() replace audio while they play;
//   - sends RTCP sender reports every 5 s and reports a media timeout when nothing arrives for timeout_s.
// The destructor stops and joins the thread and closes the sockets: nothing outlives the session.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "common/audio.h"
#include "media/codec.h"
#include "media/playout.h"
#include "media/port_pool.h"
#include "media/srtp.h"

namespace parley::media {

// What SDP negotiation decided for this stream, in media terms.
struct StreamParams {
    CodecId codec = CodecId::kPcmu;
    int payload_type = 0;
    int telephone_event_pt = -1;  // -1: no RFC 4733
    int ptime = 20;               // ms per packet we send
    std::string remote_address;   // IPv4/IPv6 literal
    uint16_t remote_port = 0;
    uint16_t remote_rtcp_port = 0;  // 0: remote_port + 1
    bool send = true;             // false while the peer holds us (we are recvonly/inactive)
    bool receive = true;          // false when the peer will not send (it is recvonly/inactive)
    // SRTP (SDES) keys: every RTP/RTCP packet we send is protected, every RTP packet received must
    // authenticate (failures are dropped and counted in packets_auth_failed). nullopt: plain RTP.
    std::optional<SrtpParams> srtp;
};

struct MediaSessionOptions {
    int jitter_ms = 60;
    int timeout_s = 30;         // 0: never
    bool symmetric_rtp = true;
    std::string log_tag;        // "call=7", prefixed to log lines
};

// Called on the media thread; must not block.
class MediaSink {
public:
    virtual ~MediaSink() = default;
    virtual void on_audio(const AudioFrame& frame) = 0;  // every 20 ms
    virtual void on_dtmf(char digit) = 0;
    virtual void on_media_timeout() = 0;                 // once
};

struct MediaStats {
    uint64_t packets_sent = 0, packets_received = 0, bytes_sent = 0, bytes_received = 0;
    uint64_t packets_lost = 0, packets_late = 0, packets_invalid = 0, packets_foreign = 0;
    uint64_t packets_auth_failed = 0;  // SRTP: failed authentication (tampered, wrong key), dropped
    uint64_t dtmf_received = 0, dtmf_sent = 0, frames_delivered = 0;
    double jitter_ms = 0;          // RFC 3550 interarrival jitter
    uint32_t send_late_p50_us = 0, send_late_p99_us = 0, send_late_max_us = 0;  // send-clock accuracy
    uint32_t ssrc = 0;
};

// A copy of both directions, tick by tick (call recording). Called on the media thread right after the sink's
// on_audio; must not block (copy and return). `received16k` is the caller's frame of this 20 ms tick (silence
// when nothing arrived); `sent` is what was sent to the caller in the same 20 ms, at the codec rate `sent_rate`
// (20 ms worth: zeros for silence, RFC 4733 digits, or while we do not send).
class MediaTap {
public:
    virtual ~MediaTap() = default;
    virtual void on_tick(const AudioFrame& received16k, std::span<const int16_t> sent, int sent_rate) = 0;
};

class MediaSession {
public:
    MediaSession(std::unique_ptr<RtpSockets> sockets, MediaSessionOptions options, MediaSink& sink);
    ~MediaSession();
    MediaSession(const MediaSession&) = delete;
    MediaSession& operator=(const MediaSession&) = delete;

    // Starts the media thread with the negotiated stream. Call once. false (and *error) on bad params or
    // SRTP keys that libsrtp2 refuses.
    bool start(const StreamParams& params, std::string* error);
    // Re-INVITE: new remote address/port, direction or codec; takes effect at the next tick.
    void update(const StreamParams& params);
    // Stops and joins the media thread (idempotent). The sink is not called after this returns.
    void stop();
    // Before start(): every tick also goes to `tap` (not owned; must outlive the media thread). nullptr = none.
    void set_tap(MediaTap* tap) { tap_ = tap; }

    uint16_t local_port() const { return sockets_->rtp_port(); }
    // Valid after start(); rate = the codec's sample rate at start.
    Playout& playout() { return *playout_; }
    void send_dtmf(const std::string& digits);
    MediaStats stats() const;

private:
    struct Worker;
    void run();

    std::unique_ptr<RtpSockets> sockets_;
    MediaSessionOptions options_;
    MediaSink& sink_;
    MediaTap* tap_ = nullptr;  // set before start(); read by the media thread only
    std::unique_ptr<Playout> playout_;
    std::unique_ptr<SrtpSession> initial_srtp_;  // made by start(), handed to the media thread
    int wake_fd_ = -1;
    std::atomic<bool> running_{false};
    std::thread thread_;

    mutable std::mutex mu_;  // guards the fields below (shared with the media thread)
    StreamParams params_;
    bool params_changed_ = false;
    std::string dtmf_queue_;
    MediaStats stats_;
};

}  // namespace parley::media
