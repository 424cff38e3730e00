// media_session.cpp — the per-call media thread (see media_session.h).
#include "media/media_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "common/log.h"
#include "media/dtmf.h"
#include "media/jitter_buffer.h"
#include "media/resampler.h"
#include "media/rtp.h"

namespace parley::media {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool make_addr(const std::string& host, uint16_t port, sockaddr_storage& ss, socklen_t& len) {
    std::memset(&ss, 0, sizeof ss);
    if (host.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        len = sizeof *a;
        return inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) == 1;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    len = sizeof *a;
    return inet_pton(AF_INET, host.c_str(), &a->sin_addr) == 1;
}

bool same_addr(const sockaddr_storage& a, const sockaddr_storage& b) {
    if (a.ss_family != b.ss_family) return false;
    if (a.ss_family == AF_INET) {
        auto* x = reinterpret_cast<const sockaddr_in*>(&a);
        auto* y = reinterpret_cast<const sockaddr_in*>(&b);
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    auto* x = reinterpret_cast<const sockaddr_in6*>(&a);
    auto* y = reinterpret_cast<const sockaddr_in6*>(&b);
    return x->sin6_port == y->sin6_port && std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

std::string addr_str(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        port = ntohs(a->sin6_port);
    }
    return std::string(buf) + ":" + std::to_string(port);
}

// Send lateness histogram: 50 µs buckets up to 20 ms.
struct LateHistogram {
    static constexpr int kBucketUs = 50;
    std::array<uint32_t, 401> buckets{};
    uint32_t max_us = 0;
    uint64_t count = 0;
    void add(int64_t us) {
        if (us < 0) us = 0;
        buckets[static_cast<size_t>(std::min<int64_t>(us / kBucketUs, 400))]++;
        max_us = std::max<uint32_t>(max_us, static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
        ++count;
    }
    uint32_t percentile(double p) const {
        if (!count) return 0;
        auto want = static_cast<uint64_t>(p * static_cast<double>(count));
        uint64_t seen = 0;
        for (size_t i = 0; i < buckets.size(); ++i) {
            seen += buckets[i];
            if (seen > want) return static_cast<uint32_t>((i + 1) * kBucketUs);
        }
        return max_us;
    }
};

}  // namespace

// Everything the media thread owns; lives on the thread's stack for the duration of run().
struct MediaSession::Worker {
    MediaSession& s;
    StreamParams p;
    const CodecInfo* info = nullptr;
    std::unique_ptr<Encoder> encoder;
    std::unique_ptr<Decoder> decoder;
    std::unique_ptr<JitterBuffer> jitter;
    std::unique_ptr<Resampler> in_resampler;    // codec rate -> 16 kHz (null when equal)
    std::unique_ptr<Resampler> out_rate_fix;    // playout rate -> codec rate after a codec change
    DtmfReceiver dtmf_rx;
    std::unique_ptr<DtmfSender> dtmf_tx;
    uint32_t dtmf_ts = 0;
    int dtmf_gap_ticks = 0;

    // send state
    uint32_t ssrc = 0;
    uint16_t seq = 0;
    uint32_t ts = 0;
    bool first_packet = true;
    sockaddr_storage remote{};
    socklen_t remote_len = 0;
    sockaddr_storage remote_rtcp{};
    socklen_t remote_rtcp_len = 0;
    bool latched = false;
    LateHistogram late;
    uint64_t octets_sent = 0, packets_sent = 0;
    std::unique_ptr<SrtpSession> srtp;  // null: plain RTP

    // receive state
    bool have_ssrc = false;
    uint32_t rx_ssrc = 0;
    std::vector<int16_t> decoded = std::vector<int16_t>(2048);  // scratch, codec rate (60 ms of G.722 fits)
    std::vector<int16_t> fifo16;    // 16 kHz samples waiting to be framed
    std::vector<int16_t> sent_fifo;  // tap only: what was sent (codec rate), waiting for its frame tick
    std::vector<uint8_t> payload;
    Clock::time_point last_rx;
    bool timed_out = false;
    double jitter_ts = 0;  // RFC 3550 J, in timestamp units
    bool have_transit = false;
    int64_t last_transit = 0;
    std::set<std::string> logged_sources;
    Clock::time_point start_time;

    explicit Worker(MediaSession& session) : s(session) {}

    bool apply(const StreamParams& np, bool initial) {
        bool codec_changed = initial || np.codec != p.codec;
        const std::optional<SrtpParams> old_srtp = p.srtp;
        p = np;
        info = &codec_info(p.codec);
        if (codec_changed) {
            encoder = make_encoder(p.codec);
            decoder = make_decoder(p.codec);
            JitterBuffer::Config jc;
            jc.target_packets = std::max(1, s.options_.jitter_ms / std::max(10, p.ptime));
            jitter = std::make_unique<JitterBuffer>(jc);
            in_resampler = info->sample_rate == kInternalRate
                               ? nullptr
                               : std::make_unique<Resampler>(info->sample_rate, kInternalRate);
            out_rate_fix = s.playout_->codec_rate() == info->sample_rate
                               ? nullptr
                               : std::make_unique<Resampler>(s.playout_->codec_rate(), info->sample_rate);
            have_ssrc = false;
            sent_fifo.clear();  // another rate
        }
        if (initial) {
            srtp = std::move(s.initial_srtp_);
        } else if (np.srtp != old_srtp) {
            // New keys in a re-INVITE: a new context (unchanged keys keep the old one, with its replay state).
            srtp.reset();  // never fall back to sending in clear: without a context nothing is sent
            std::string error;
            if (np.srtp) srtp = SrtpSession::create(*np.srtp, &error);
            if (np.srtp && !srtp)
                PLOG_WARN("{} event=srtp_rekey_failed error=\"{}\" (media stops)", s.options_.log_tag, error);
        }
        if (!make_addr(p.remote_address, p.remote_port, remote, remote_len)) return false;
        uint16_t rtcp_port = p.remote_rtcp_port ? p.remote_rtcp_port : static_cast<uint16_t>(p.remote_port + 1);
        make_addr(p.remote_address, rtcp_port, remote_rtcp, remote_rtcp_len);
        latched = false;
        have_transit = false;
        last_rx = Clock::now();  // a new negotiation restarts the media timeout
        timed_out = false;
        return true;
    }

    void log_once(const std::string& key, const std::string& line) {
        if (logged_sources.size() >= 32 || !logged_sources.insert(key).second) return;
        PLOG_WARN("{} {}", s.options_.log_tag, line);
    }

    void count_foreign(const sockaddr_storage& from) {
        std::lock_guard lk(s.mu_);
        s.stats_.packets_foreign++;
        log_once("src" + addr_str(from), "event=rtp_foreign_source from=" + addr_str(from) + " dropped=true");
    }

    void receive(int fd) {
        std::array<uint8_t, kRtpMaxPacket> buf;
        for (int i = 0; i < 64; ++i) {
            sockaddr_storage from{};
            socklen_t from_len = sizeof from;
            ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
            if (n < 0) return;  // EAGAIN: drained
            auto now = Clock::now();
            RtpPacketView pkt;
            const bool from_remote = same_addr(from, remote);
            // A datagram from elsewhere can only matter as the first packet of a NATed peer (latching);
            // anything else is dropped before any work is done for it (no SRTP authentication: a spray
            // of foreign packets costs no HMAC).
            const bool may_latch =
                !from_remote && s.options_.symmetric_rtp && !latched && from.ss_family == remote.ss_family;
            if (!from_remote && !may_latch) {
                count_foreign(from);
                continue;
            }
            // SRTP: authenticate and decrypt in place before anything reads the packet. A packet that fails
            // changes no SRTP state (libsrtp2 checks before it updates).
            size_t len = static_cast<size_t>(n);
            SrtpSession::Result srtp_result = SrtpSession::Result::kOk;
            if (p.srtp) {
                srtp_result = srtp ? srtp->unprotect_rtp(buf.data(), len) : SrtpSession::Result::kInvalid;
            }
            auto err = rtp_parse(std::span<const uint8_t>(buf.data(), len), pkt);
            if (!from_remote) {
                // Latch only onto real RTP: a stray datagram (scanner, STUN, junk) must not capture the stream.
                // With SRTP only onto a packet that authenticates: a forged one must not capture it either.
                if (err != RtpParseError::kOk || srtp_result != SrtpSession::Result::kOk) {
                    count_foreign(from);
                    continue;
                }
                PLOG_INFO("{} event=rtp_latched from={} negotiated={}", s.options_.log_tag, addr_str(from),
                          addr_str(remote));
                remote = from;
                remote_len = from_len;
                // RTCP follows the latched address too (behind NAT it comes from the next port).
                remote_rtcp = from;
                remote_rtcp_len = from_len;
                if (from.ss_family == AF_INET) {
                    auto* a = reinterpret_cast<sockaddr_in*>(&remote_rtcp);
                    a->sin_port = htons(static_cast<uint16_t>(ntohs(a->sin_port) + 1));
                } else {
                    auto* a = reinterpret_cast<sockaddr_in6*>(&remote_rtcp);
                    a->sin6_port = htons(static_cast<uint16_t>(ntohs(a->sin6_port) + 1));
                }
            }
            latched = true;  // the negotiated source spoke first: no later latching to anyone else
            if (srtp_result != SrtpSession::Result::kOk) {
                std::lock_guard lk(s.mu_);
                if (srtp_result == SrtpSession::Result::kAuthFailed) {
                    s.stats_.packets_auth_failed++;
                    log_once("srtp_auth", "event=srtp_auth_failed from=" + addr_str(from) +
                                              " dropped=true (further failures are only counted)");
                } else {
                    s.stats_.packets_invalid++;
                    const char* why = srtp_result == SrtpSession::Result::kReplayed ? "srtp_replay" : "srtp_invalid";
                    log_once(why, std::string("event=rtp_invalid reason=") + why + " from=" + addr_str(from));
                }
                continue;
            }
            if (err != RtpParseError::kOk) {
                std::lock_guard lk(s.mu_);
                s.stats_.packets_invalid++;
                log_once(std::string("bad") + rtp_parse_error_str(err),
                         std::string("event=rtp_invalid reason=") + rtp_parse_error_str(err) +
                             " from=" + addr_str(from));
                continue;
            }
            last_rx = now;
            {
                std::lock_guard lk(s.mu_);
                s.stats_.packets_received++;
                s.stats_.bytes_received += static_cast<uint64_t>(n);
            }
            if (p.telephone_event_pt >= 0 && pkt.header.payload_type == p.telephone_event_pt) {
                if (auto ev = rfc4733_parse(pkt.payload)) {
                    if (auto digit = dtmf_rx.on_packet(pkt.header.timestamp, *ev)) {
                        {
                            std::lock_guard lk(s.mu_);
                            s.stats_.dtmf_received++;
                        }
                        PLOG_INFO("{} event=dtmf_received digit={}", s.options_.log_tag, *digit);
                        s.sink_.on_dtmf(*digit);
                    }
                }
                continue;
            }
            if (pkt.header.payload_type != p.payload_type) {
                if (pkt.header.payload_type != 13)  // comfort noise: fine, nothing to play
                    log_once("pt" + std::to_string(pkt.header.payload_type),
                             "event=rtp_unexpected_pt pt=" + std::to_string(pkt.header.payload_type));
                continue;
            }
            if (!have_ssrc || pkt.header.ssrc != rx_ssrc) {
                if (have_ssrc) {
                    JitterBuffer::Config jc;
                    jc.target_packets = std::max(1, s.options_.jitter_ms / std::max(10, p.ptime));
                    jitter = std::make_unique<JitterBuffer>(jc);
                }
                have_ssrc = true;
                rx_ssrc = pkt.header.ssrc;
                have_transit = false;
            }
            update_jitter(now, pkt.header.timestamp);
            jitter->put(pkt.header.sequence, pkt.header.timestamp, pkt.payload);
        }
    }

    void update_jitter(Clock::time_point now, uint32_t rtp_ts) {
        auto arrival = std::chrono::duration_cast<std::chrono::microseconds>(now - start_time).count() *
                       info->rtp_clock_rate / 1000000;
        int64_t transit = arrival - static_cast<int64_t>(rtp_ts);
        if (have_transit) {
            double d = static_cast<double>(std::llabs(transit - last_transit));
            if (d < info->rtp_clock_rate) jitter_ts += (d - jitter_ts) / 16.0;  // ignore stream jumps
        }
        last_transit = transit;
        have_transit = true;
    }

    // Produces one 20 ms frame for the sink.
    void deliver_frame() {
        const size_t per_packet = static_cast<size_t>(info->sample_rate * p.ptime / 1000);
        uint64_t lost = 0;
        while (fifo16.size() < static_cast<size_t>(kFrameSamples)) {
            // Decode into fixed scratch (no allocation or clearing per packet); `pcm` is what was produced.
            const size_t cap = decoded.size();
            size_t got = 0;
            auto r = jitter->get(payload);
            if (r == JitterBuffer::Result::kPacket) {
                got = decoder->decode(payload, std::span<int16_t>(decoded.data(), cap));
            } else if (r == JitterBuffer::Result::kMissing) {
                got = std::min(per_packet, cap);
                decoder->conceal(std::span<int16_t>(decoded.data(), got));
                ++lost;
            } else {
                // Nothing buffered: silence for the rest of this frame.
                size_t need16 = static_cast<size_t>(kFrameSamples) - fifo16.size();
                fifo16.insert(fifo16.end(), need16, 0);
                break;
            }
            std::span<const int16_t> pcm(decoded.data(), got);
            if (in_resampler) {
                in_resampler->process(pcm, fifo16);
            } else {
                fifo16.insert(fifo16.end(), pcm.begin(), pcm.end());
            }
        }
        AudioFrame frame;
        std::copy_n(fifo16.begin(), kFrameSamples, frame.samples.begin());
        fifo16.erase(fifo16.begin(), fifo16.begin() + kFrameSamples);
        {
            std::lock_guard lk(s.mu_);
            s.stats_.frames_delivered++;
            s.stats_.packets_lost += lost;
            s.stats_.packets_late = jitter->stats().late;
        }
        s.sink_.on_audio(frame);
        if (s.tap_) {
            // The packet(s) of this tick went out just before (packet ticks run first at equal due times), so
            // the front of sent_fifo is what the caller hears during this frame.
            const auto n = static_cast<size_t>(info->sample_rate * kFrameMs / 1000);
            std::array<int16_t, 960> sent{};  // 20 ms up to 48 kHz
            const size_t take = std::min({n, sent_fifo.size(), sent.size()});
            std::copy_n(sent_fifo.begin(), take, sent.begin());
            sent_fifo.erase(sent_fifo.begin(), sent_fifo.begin() + static_cast<std::ptrdiff_t>(take));
            s.tap_->on_tick(frame, std::span<const int16_t>(sent.data(), std::min(n, sent.size())), info->sample_rate);
        }
    }

    // Tap only: `pcm` (codec rate) is what this packet tick sent; nullptr = silence of `samples`.
    void tap_sent(const int16_t* pcm, size_t samples) {
        if (!s.tap_) return;
        if (pcm) sent_fifo.insert(sent_fifo.end(), pcm, pcm + samples);
        else sent_fifo.insert(sent_fifo.end(), samples, 0);
        // Bounded: after a stall of the frame clock keep at most 120 ms (the newest).
        const auto cap = static_cast<size_t>(info->sample_rate * 120 / 1000);
        if (sent_fifo.size() > cap)
            sent_fifo.erase(sent_fifo.begin(), sent_fifo.end() - static_cast<std::ptrdiff_t>(cap));
    }

    void send_packet(int fd, std::span<const uint8_t> body, int pt, bool marker, uint32_t timestamp) {
        std::array<uint8_t, kRtpMaxPacket + SrtpSession::kSrtpMaxTrailer> buf;
        RtpHeader h;
        h.payload_type = static_cast<uint8_t>(pt);
        h.marker = marker;
        h.sequence = seq++;
        h.timestamp = timestamp;
        h.ssrc = ssrc;
        size_t n = rtp_serialize(h, body, std::span<uint8_t>(buf.data(), kRtpMaxPacket));
        if (!n) return;
        if (p.srtp && !(srtp && srtp->protect_rtp(buf.data(), n, buf.size()))) return;  // never in clear
        if (::sendto(fd, buf.data(), n, 0, reinterpret_cast<sockaddr*>(&remote), remote_len) > 0) {
            ++packets_sent;
            octets_sent += body.size();
            std::lock_guard lk(s.mu_);
            s.stats_.packets_sent++;
            s.stats_.bytes_sent += n;
        }
    }

    void send_tick(int fd) {
        const auto samples = static_cast<size_t>(info->sample_rate * p.ptime / 1000);
        const auto ts_step = static_cast<uint32_t>(info->rtp_clock_rate * p.ptime / 1000);
        std::array<uint8_t, 4> ev_buf;
        if (!dtmf_tx && dtmf_gap_ticks > 0) --dtmf_gap_ticks;
        if (!dtmf_tx && dtmf_gap_ticks == 0 && p.telephone_event_pt >= 0 && p.send) {
            std::lock_guard lk(s.mu_);
            while (!s.dtmf_queue_.empty() && !dtmf_tx) {
                char d = s.dtmf_queue_.front();
                s.dtmf_queue_.erase(0, 1);
                auto tx = std::make_unique<DtmfSender>(d, 100, p.ptime, info->rtp_clock_rate);
                if (tx->valid()) {
                    dtmf_tx = std::move(tx);
                    dtmf_ts = ts;
                    s.stats_.dtmf_sent++;
                }
            }
        }
        if (dtmf_tx) {
            if (auto pkt = dtmf_tx->next()) {
                if (p.send) {
                    size_t n = rfc4733_serialize(pkt->event, ev_buf);
                    send_packet(fd, std::span<const uint8_t>(ev_buf.data(), n), p.telephone_event_pt, pkt->marker,
                                dtmf_ts);
                }
                tap_sent(nullptr, samples);  // a digit: the recording keeps the audio channel silent
                ts += ts_step;
                return;
            }
            dtmf_tx.reset();
            dtmf_gap_ticks = 2;  // a short gap so consecutive digits are distinct presses
        }
        std::array<int16_t, 2048> pcm{};
        size_t want = std::min(samples, pcm.size());
        if (out_rate_fix) {
            std::vector<int16_t> raw(want * static_cast<size_t>(s.playout_->codec_rate()) /
                                     static_cast<size_t>(info->sample_rate));
            size_t got = s.playout_->pop(raw);
            std::fill(raw.begin() + static_cast<std::ptrdiff_t>(got), raw.end(), 0);
            std::vector<int16_t> conv;
            out_rate_fix->process(raw, conv);
            std::copy_n(conv.begin(), std::min(conv.size(), want), pcm.begin());
        } else {
            s.playout_->pop(std::span<int16_t>(pcm.data(), want));
        }
        if (p.send) {
            std::array<uint8_t, 2048> enc;
            size_t n = encoder->encode(std::span<const int16_t>(pcm.data(), want), enc);
            send_packet(fd, std::span<const uint8_t>(enc.data(), n), p.payload_type, first_packet, ts);
            first_packet = false;
            tap_sent(pcm.data(), want);
        } else {
            tap_sent(nullptr, want);  // not sending: the caller hears nothing from us
        }
        ts += ts_step;
    }

    void send_rtcp(int fd) {
        // Compound packet: SR (no report blocks) + SDES CNAME, RFC 3550 §6.4.1 / §6.5.
        std::array<uint8_t, 64 + SrtpSession::kSrtpMaxTrailer> b{};
        auto put32 = [&](size_t off, uint32_t v) {
            b[off] = static_cast<uint8_t>(v >> 24);
            b[off + 1] = static_cast<uint8_t>(v >> 16);
            b[off + 2] = static_cast<uint8_t>(v >> 8);
            b[off + 3] = static_cast<uint8_t>(v);
        };
        b[0] = 0x80;
        b[1] = 200;
        b[3] = 6;  // length in 32-bit words minus one
        put32(4, ssrc);
        auto now = std::chrono::system_clock::now().time_since_epoch();
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(now);
        auto frac = std::chrono::duration_cast<std::chrono::microseconds>(now - secs).count();
        put32(8, static_cast<uint32_t>(secs.count() + 2208988800ULL));
        put32(12, static_cast<uint32_t>((static_cast<uint64_t>(frac) << 32) / 1000000));
        put32(16, ts);
        put32(20, static_cast<uint32_t>(packets_sent));
        put32(24, static_cast<uint32_t>(octets_sent));
        // SDES: header, SSRC, CNAME item "parley", end, pad to 32-bit.
        const char cname[] = "parley";
        size_t o = 28;
        b[o] = 0x81;
        b[o + 1] = 202;
        size_t item_len = 2 + sizeof cname - 1 + 1;      // type, len, text, END
        size_t words = (4 + item_len + 3) / 4;           // SSRC + items, padded
        b[o + 3] = static_cast<uint8_t>(words);
        put32(o + 4, ssrc);
        b[o + 8] = 1;
        b[o + 9] = sizeof cname - 1;
        std::memcpy(&b[o + 10], cname, sizeof cname - 1);
        size_t total = o + 4 + words * 4;
        if (p.srtp && !(srtp && srtp->protect_rtcp(b.data(), total, b.size()))) return;
        ::sendto(fd, b.data(), total, 0, reinterpret_cast<sockaddr*>(&remote_rtcp), remote_rtcp_len);
    }
};

MediaSession::MediaSession(std::unique_ptr<RtpSockets> sockets, MediaSessionOptions options, MediaSink& sink)
    : sockets_(std::move(sockets)), options_(std::move(options)), sink_(sink) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

MediaSession::~MediaSession() {
    stop();
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool MediaSession::start(const StreamParams& params, std::string* error) {
    if (running_ || thread_.joinable()) {
        if (error) *error = "media session already started";
        return false;
    }
    if (wake_fd_ < 0) {
        if (error) *error = "eventfd failed";
        return false;
    }
    sockaddr_storage ss;
    socklen_t len;
    if (!make_addr(params.remote_address, params.remote_port, ss, len) || params.ptime < 10 || params.ptime > 60) {
        if (error) *error = "bad remote media address or ptime: " + params.remote_address;
        return false;
    }
    if (params.srtp) {
        std::string srtp_error;
        initial_srtp_ = SrtpSession::create(*params.srtp, &srtp_error);
        if (!initial_srtp_) {
            if (error) *error = "SRTP: " + srtp_error;
            return false;
        }
    }
    playout_ = std::make_unique<Playout>(codec_info(params.codec).sample_rate);
    {
        std::lock_guard lk(mu_);
        params_ = params;
        params_changed_ = false;
    }
    running_ = true;
    thread_ = std::thread([this] { run(); });
    return true;
}

void MediaSession::update(const StreamParams& params) {
    std::lock_guard lk(mu_);
    params_ = params;
    params_changed_ = true;
}

void MediaSession::stop() {
    if (!thread_.joinable()) return;
    running_ = false;
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_, &one, sizeof one);
    (void)n;
    thread_.join();
}

void MediaSession::send_dtmf(const std::string& digits) {
    std::lock_guard lk(mu_);
    dtmf_queue_ += digits;
}

MediaStats MediaSession::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

void MediaSession::run() {
    Worker w(*this);
    {
        std::lock_guard lk(mu_);
        w.apply(params_, true);
    }
    std::random_device rd;
    w.ssrc = rd();
    w.seq = static_cast<uint16_t>(rd());
    w.ts = rd();
    {
        std::lock_guard lk(mu_);
        stats_.ssrc = w.ssrc;
    }
    const int rtp_fd = sockets_->rtp_fd();
    const int rtcp_fd = sockets_->rtcp_fd();
    w.start_time = Clock::now();
    w.last_rx = w.start_time;
    // Absolute schedules: the n-th frame is due at start + n*20 ms, the n-th packet at start + n*ptime.
    uint64_t frame_n = 0, packet_n = 0;
    auto packet_base = w.start_time;
    auto next_frame = w.start_time;
    auto next_packet = w.start_time;
    auto next_rtcp = w.start_time + 1s;
    auto next_stats = w.start_time + 1s;

    while (running_.load(std::memory_order_relaxed)) {
        auto now = Clock::now();
        auto due = std::min({next_frame, next_packet, next_rtcp});
        if (due > now) {
            auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(due - now);
            timespec tsp{static_cast<time_t>(wait.count() / 1000000000), static_cast<long>(wait.count() % 1000000000)};
            pollfd fds[3] = {{rtp_fd, POLLIN, 0}, {rtcp_fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
            int r = ::ppoll(fds, 3, &tsp, nullptr);
            if (r > 0) {
                if (fds[2].revents) break;  // stop()
                if (fds[0].revents & POLLIN) w.receive(rtp_fd);
                if (fds[1].revents & POLLIN) {
                    std::array<uint8_t, 1500> junk;  // RTCP from the peer: read and drop (stats come later)
                    while (::recv(rtcp_fd, junk.data(), junk.size(), 0) > 0) {
                    }
                }
            }
            continue;
        }
        {
            std::unique_lock lk(mu_);
            if (params_changed_) {
                params_changed_ = false;
                StreamParams np = params_;
                lk.unlock();
                int old_ptime = w.p.ptime;
                if (!w.apply(np, false))
                    PLOG_WARN("{} event=media_update_failed address={}", options_.log_tag, np.remote_address);
                else
                    PLOG_INFO("{} event=media_updated remote={}:{} send={} receive={}", options_.log_tag,
                              np.remote_address, np.remote_port, np.send, np.receive);
                if (w.p.ptime != old_ptime) {
                    packet_base = next_packet;
                    packet_n = 0;
                }
            }
        }
        if (now >= next_packet) {
            auto late = std::chrono::duration_cast<std::chrono::microseconds>(now - next_packet).count();
            w.late.add(late);
            w.send_tick(rtp_fd);
            ++packet_n;
            next_packet = packet_base + packet_n * std::chrono::milliseconds(w.p.ptime);
            // After a stall (machine suspended, debugger), do not burst: skip the missed slots.
            if (Clock::now() - next_packet > std::chrono::milliseconds(5 * w.p.ptime)) {
                auto behind = (Clock::now() - next_packet) / std::chrono::milliseconds(w.p.ptime);
                packet_n += static_cast<uint64_t>(behind);
                w.ts += static_cast<uint32_t>(behind * w.info->rtp_clock_rate * w.p.ptime / 1000);
                next_packet = packet_base + packet_n * std::chrono::milliseconds(w.p.ptime);
            }
        }
        if (now >= next_frame) {
            w.deliver_frame();
            ++frame_n;
            next_frame = w.start_time + frame_n * std::chrono::milliseconds(kFrameMs);
            if (Clock::now() - next_frame > 100ms) {
                frame_n += static_cast<uint64_t>((Clock::now() - next_frame) / std::chrono::milliseconds(kFrameMs));
                next_frame = w.start_time + frame_n * std::chrono::milliseconds(kFrameMs);
            }
            if (options_.timeout_s > 0 && w.p.receive && !w.timed_out &&
                now - w.last_rx > std::chrono::seconds(options_.timeout_s)) {
                w.timed_out = true;
                PLOG_INFO("{} event=media_timeout after_s={}", options_.log_tag, options_.timeout_s);
                sink_.on_media_timeout();
            }
        }
        if (now >= next_rtcp) {
            if (w.p.send) w.send_rtcp(rtcp_fd);
            next_rtcp = now + 5s;
        }
        if (now >= next_stats) {
            std::lock_guard lk(mu_);
            stats_.jitter_ms = w.jitter_ts * 1000.0 / w.info->rtp_clock_rate;
            stats_.send_late_p50_us = w.late.percentile(0.50);
            stats_.send_late_p99_us = w.late.percentile(0.99);
            stats_.send_late_max_us = w.late.max_us;
            next_stats = now + 1s;
        }
    }
    std::lock_guard lk(mu_);
    stats_.jitter_ms = w.jitter_ts * 1000.0 / w.info->rtp_clock_rate;
    stats_.send_late_p50_us = w.late.percentile(0.50);
    stats_.send_late_p99_us = w.late.percentile(0.99);
    stats_.send_late_max_us = w.late.max_us;
}

}  // namespace parley::media
