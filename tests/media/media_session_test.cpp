// media_session_test.cpp — one call's media thread against a fake far end on real UDP sockets.
//
// A "peer" (UdpEndpoint pair bound to 127.0.0.1, ephemeral ports) plays the remote party: it receives
// what Parley sends and sends RTP of its own. A RecordingSink stands in for the call handler.
//
// Port ranges: this binary owns 32000-32199, below the kernel's ephemeral range (32768+) so no
// socket another test opens can take them; port_pool_test.cpp uses 32000-32079 and every test here
// gets its own two pairs at 32100 + 4*i, so test cases can run in parallel under ctest.
//
// Timing: every wait is bounded (poll with a deadline). Arrival times for the pacing checks come from
// the kernel's receive timestamps (SO_TIMESTAMPNS), so a slow test thread does not distort them.
#include "media/media_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "media/codec.h"
#include "media/dtmf.h"
#include "media/port_pool.h"
#include "media/rtp.h"

namespace parley::media {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint16_t kBase = 32100;
constexpr uint16_t base_for(int test_index) { return static_cast<uint16_t>(kBase + 4 * test_index); }

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Polls `pred` every 2 ms until it holds or `timeout` passes; returns its final value.
template <class Pred>
bool wait_until(Pred pred, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// Audio helpers

struct Level {
    double rms = 0;
    int zero_crossings = 0;
    int max_abs = 0;
};

Level measure(std::span<const int16_t> v) {
    Level l;
    double acc = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        acc += static_cast<double>(v[i]) * v[i];
        l.max_abs = std::max(l.max_abs, std::abs(static_cast<int>(v[i])));
        if (i > 0 && (v[i - 1] < 0) != (v[i] < 0)) ++l.zero_crossings;
    }
    l.rms = v.empty() ? 0 : std::sqrt(acc / static_cast<double>(v.size()));
    return l;
}

std::vector<int16_t> tone(double freq, int rate, size_t n, size_t start = 0, double amp = 8000) {
    std::vector<int16_t> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = static_cast<int16_t>(
            std::lround(amp * std::sin(2.0 * std::numbers::pi * freq * static_cast<double>(start + i) / rate)));
    return v;
}

bool is_ulaw_silence(std::span<const uint8_t> payload) {
    return std::all_of(payload.begin(), payload.end(), [](uint8_t b) { return b == 0xFF || b == 0x7F; });
}

Level decode_pcmu(std::span<const uint8_t> payload) {
    auto dec = make_decoder(CodecId::kPcmu);
    std::vector<int16_t> pcm(payload.size());
    pcm.resize(dec->decode(payload, pcm));
    return measure(pcm);
}

// ---------------------------------------------------------------------------------------------------------
// The sink: records what the media thread hands up, and checks it is always the same (media) thread.

class RecordingSink : public MediaSink {
public:
    struct Frame {
        Clock::time_point at;
        Level level;
    };

    void on_audio(const AudioFrame& f) override {
        Frame fr{Clock::now(), measure(f.samples)};
        note_call();
        std::lock_guard lk(mu_);
        frames_.push_back(fr);
    }
    void on_dtmf(char digit) override {
        note_call();
        std::lock_guard lk(mu_);
        digits_ += digit;
    }
    void on_media_timeout() override {
        auto now = Clock::now();
        note_call();
        std::lock_guard lk(mu_);
        timeouts_.push_back(now);
    }

    std::vector<Frame> frames() const {
        std::lock_guard lk(mu_);
        return frames_;
    }
    size_t frame_count() const {
        std::lock_guard lk(mu_);
        return frames_.size();
    }
    size_t loud_frames(double min_rms = 2000) const {
        std::lock_guard lk(mu_);
        return static_cast<size_t>(
            std::count_if(frames_.begin(), frames_.end(), [&](const Frame& f) { return f.level.rms > min_rms; }));
    }
    std::string digits() const {
        std::lock_guard lk(mu_);
        return digits_;
    }
    std::vector<Clock::time_point> timeouts() const {
        std::lock_guard lk(mu_);
        return timeouts_;
    }
    size_t total_calls() const {
        std::lock_guard lk(mu_);
        return frames_.size() + digits_.size() + timeouts_.size();
    }

    std::atomic<bool> stopped{false};  // set by the test once stop() has returned
    std::atomic<int> calls_after_stop{0};
    std::atomic<int> wrong_thread{0};

private:
    void note_call() {
        if (stopped.load()) ++calls_after_stop;
        std::lock_guard lk(mu_);
        if (thread_ == std::thread::id{}) thread_ = std::this_thread::get_id();
        if (thread_ != std::this_thread::get_id()) ++wrong_thread;
    }

    mutable std::mutex mu_;
    std::thread::id thread_;
    std::vector<Frame> frames_;
    std::string digits_;
    std::vector<Clock::time_point> timeouts_;
};

// ---------------------------------------------------------------------------------------------------------
// UDP endpoints

struct Datagram {
    Clock::time_point at;     // when the test thread got it
    double kernel_ms = 0;     // kernel receive timestamp (CLOCK_REALTIME, ms): for interval measurements
    uint16_t from_port = 0;
    std::vector<uint8_t> bytes;
};

struct Rtp {
    RtpHeader h;
    std::vector<uint8_t> payload;
    Clock::time_point at;
    double kernel_ms = 0;
    uint16_t from_port = 0;
};

std::optional<Rtp> as_rtp(const Datagram& d) {
    RtpPacketView v;
    if (rtp_parse(d.bytes, v) != RtpParseError::kOk) return std::nullopt;
    return Rtp{v.header, std::vector<uint8_t>(v.payload.begin(), v.payload.end()), d.at, d.kernel_ms, d.from_port};
}

std::vector<uint8_t> make_rtp(uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc, bool marker,
                              std::span<const uint8_t> payload) {
    RtpHeader h;
    h.payload_type = pt;
    h.sequence = seq;
    h.timestamp = ts;
    h.ssrc = ssrc;
    h.marker = marker;
    std::vector<uint8_t> out(kRtpMaxPacket);
    out.resize(rtp_serialize(h, payload, out));
    return out;
}

class UdpEndpoint {
public:
    UdpEndpoint() {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ADD_FAILURE() << "cannot bind a loopback UDP socket";
            return;
        }
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        int on = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    }
    ~UdpEndpoint() {
        if (fd_ >= 0) ::close(fd_);
    }
    UdpEndpoint(const UdpEndpoint&) = delete;
    UdpEndpoint& operator=(const UdpEndpoint&) = delete;

    uint16_t port() const { return port_; }

    void send_to(uint16_t port, std::span<const uint8_t> bytes) const {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        ASSERT_EQ(::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
                  static_cast<ssize_t>(bytes.size()));
    }

    // Next datagram, waiting at most `timeout`.
    std::optional<Datagram> recv(Clock::duration timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            if (auto d = try_recv()) return d;
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return std::nullopt;
            pollfd pfd{fd_, POLLIN, 0};
            ::poll(&pfd, 1, static_cast<int>(left));
        }
    }

    // Next datagram that parses as RTP (RTCP and junk skipped), waiting at most `timeout`.
    std::optional<Rtp> recv_rtp(Clock::duration timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            auto left = deadline - Clock::now();
            if (left <= Clock::duration::zero()) return std::nullopt;
            auto d = recv(left);
            if (!d) return std::nullopt;
            if (auto r = as_rtp(*d)) return r;
        }
    }

    // Up to `n` RTP packets, waiting at most `timeout` in all.
    std::vector<Rtp> collect_rtp(size_t n, Clock::duration timeout) {
        std::vector<Rtp> out;
        const auto deadline = Clock::now() + timeout;
        while (out.size() < n) {
            auto left = deadline - Clock::now();
            if (left <= Clock::duration::zero()) break;
            auto r = recv_rtp(left);
            if (!r) break;
            out.push_back(std::move(*r));
        }
        return out;
    }

    // Everything that arrives within `window` (RTP only).
    std::vector<Rtp> collect_for(Clock::duration window) { return collect_rtp(SIZE_MAX, window); }

    // Discards whatever is queued now; returns how many datagrams that was.
    size_t drain() {
        size_t n = 0;
        while (try_recv()) ++n;
        return n;
    }

private:
    std::optional<Datagram> try_recv() {
        Datagram d;
        d.bytes.resize(2048);
        sockaddr_in from{};
        iovec iov{d.bytes.data(), d.bytes.size()};
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(timespec))];
        msghdr msg{};
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        ssize_t n = ::recvmsg(fd_, &msg, 0);
        if (n < 0) return std::nullopt;
        d.at = Clock::now();
        d.bytes.resize(static_cast<size_t>(n));
        d.from_port = ntohs(from.sin_port);
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                timespec ts;
                std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                d.kernel_ms = static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
            }
        }
        return d;
    }

    int fd_ = -1;
    uint16_t port_ = 0;
};

// The far end: an RTP socket and an RTCP socket.
struct Peer {
    UdpEndpoint rtp;
    UdpEndpoint rtcp;
};

// The far end's outgoing RTP stream (PCMU, 20 ms packets), one sequence/timestamp space per stream.
class RtpStream {
public:
    RtpStream(UdpEndpoint& from, uint16_t to_port, uint32_t ssrc)
        : from_(from), to_port_(to_port), ssrc_(ssrc), enc_(make_encoder(CodecId::kPcmu)) {}

    // One 20 ms PCMU packet: a 1 kHz tone or silence.
    void audio(bool loud = true) {
        auto pcm = loud ? tone(1000, 8000, 160, sample_) : std::vector<int16_t>(160, 0);
        std::vector<uint8_t> enc(160);
        enc.resize(enc_->encode(pcm, enc));
        from_.send_to(to_port_, make_rtp(0, seq_++, ts_, ssrc_, first_, enc));
        first_ = false;
        ts_ += 160;
        sample_ += 160;
    }
    // `count` packets on an absolute 20 ms schedule (starting now).
    void audio_paced(int count, bool loud = true) {
        const auto t0 = Clock::now();
        for (int i = 0; i < count; ++i) {
            std::this_thread::sleep_until(t0 + i * 20ms);
            audio(loud);
        }
    }
    // One RFC 4733 key press, as a real phone sends it, in place of audio: start packet with marker,
    // updates, three end packets, all with the timestamp of the event start; paced 20 ms.
    void key_press(char digit, int pt = 101) {
        const auto t0 = Clock::now();
        const uint32_t event_ts = ts_;
        const int event = rfc4733_char_to_event(digit);
        int i = 0;
        auto send = [&](uint16_t duration, bool end, bool marker) {
            std::this_thread::sleep_until(t0 + i++ * 20ms);
            TelephoneEvent ev;
            ev.event = static_cast<uint8_t>(event);
            ev.end = end;
            ev.duration = duration;
            std::array<uint8_t, 4> body{};
            rfc4733_serialize(ev, body);
            from_.send_to(to_port_, make_rtp(static_cast<uint8_t>(pt), seq_++, event_ts, ssrc_, marker, body));
            ts_ += 160;
        };
        send(160, false, true);
        send(320, false, false);
        send(320, false, false);  // a retransmitted update
        send(480, false, false);
        send(640, false, false);
        for (int e = 0; e < 3; ++e) send(800, true, false);
    }
    uint16_t next_seq() const { return seq_; }

private:
    UdpEndpoint& from_;
    uint16_t to_port_;
    uint32_t ssrc_;
    std::unique_ptr<Encoder> enc_;
    uint16_t seq_ = 4242;
    uint32_t ts_ = 90000;
    size_t sample_ = 0;
    bool first_ = true;
};

StreamParams params_to(const Peer& peer) {
    StreamParams p;
    p.codec = CodecId::kPcmu;
    p.payload_type = 0;
    p.telephone_event_pt = 101;
    p.ptime = 20;
    p.remote_address = "127.0.0.1";
    p.remote_port = peer.rtp.port();
    p.remote_rtcp_port = peer.rtcp.port();
    return p;
}

MediaSessionOptions test_options() {
    MediaSessionOptions o;
    o.timeout_s = 0;
    o.log_tag = "call=test";
    return o;
}

// A session on its own two port pairs. Members are destroyed in reverse order: session before sink.
struct Harness {
    explicit Harness(int test_index, MediaSessionOptions options = test_options())
        : pool("127.0.0.1", base_for(test_index), static_cast<uint16_t>(base_for(test_index) + 3)) {
        auto sockets = pool.acquire(&error);
        if (!sockets) return;
        port = sockets->rtp_port();
        session = std::make_unique<MediaSession>(std::move(sockets), std::move(options), sink);
    }
    ~Harness() { session.reset(); }
    bool start(const StreamParams& p) {
        if (!session) return false;
        return session->start(p, &error);
    }

    PortPool pool;
    RecordingSink sink;
    std::unique_ptr<MediaSession> session;
    uint16_t port = 0;
    std::string error;
};

#define START_OR_FAIL(h, params)                     \
    ASSERT_TRUE((h).session) << (h).error;           \
    ASSERT_TRUE((h).start(params)) << (h).error

// =========================================================================================================
// Sending

TEST(MediaSession, SendsPacedRtpWithCorrectHeaders) {
    Peer peer;
    Harness h(0);
    ASSERT_TRUE(h.session) << h.error;
    const auto t_start = Clock::now();
    ASSERT_TRUE(h.start(params_to(peer))) << h.error;
    auto pkts = peer.rtp.collect_rtp(50, 1500ms);
    ASSERT_EQ(pkts.size(), 50u);
    EXPECT_LE(ms_between(t_start, pkts[49].at), 1100.0) << "50 packets of 20 ms take 0.98 s";

    const auto stats = h.session->stats();
    EXPECT_NE(stats.ssrc, 0u);
    for (size_t i = 0; i < pkts.size(); ++i) {
        const auto& p = pkts[i];
        SCOPED_TRACE("packet " + std::to_string(i));
        EXPECT_EQ(p.from_port, h.port) << "symmetric RTP: sent from the port we receive on";
        EXPECT_EQ(p.h.payload_type, 0);
        EXPECT_EQ(p.h.ssrc, pkts[0].h.ssrc);
        EXPECT_EQ(p.h.ssrc, stats.ssrc);
        EXPECT_EQ(p.h.marker, i == 0);
        EXPECT_EQ(p.h.sequence, static_cast<uint16_t>(pkts[0].h.sequence + i));
        EXPECT_EQ(p.h.timestamp, static_cast<uint32_t>(pkts[0].h.timestamp + 160 * i));
        EXPECT_EQ(p.payload.size(), 160u);
        EXPECT_FALSE(p.h.padding || p.h.extension || p.h.csrc_count);
    }

    // Pacing, from kernel receive timestamps.
    ASSERT_GT(pkts[0].kernel_ms, 0.0) << "no SO_TIMESTAMPNS";
    const double span = pkts[49].kernel_ms - pkts[0].kernel_ms;
    std::vector<double> gaps;
    for (size_t i = 1; i < pkts.size(); ++i) gaps.push_back(pkts[i].kernel_ms - pkts[i - 1].kernel_ms);
    auto sorted = gaps;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    // On an absolute schedule packet i leaves at t0 + 20 ms * i + (its own wake-up lateness >= 0), so
    // arrival_i - 20 ms * i stays at t0 plus noise; the minimum over a few consecutive packets removes the
    // noise of a single late wake-up (this machine is shared), while drift from chained sleeps would not
    // cancel. `sched_span` is where the 50th packet's slot lies after the first's: ideally 980 ms.
    auto envelope = [&](size_t from) {
        double m = 1e300;
        for (size_t i = from; i < from + 5; ++i) m = std::min(m, pkts[i].kernel_ms - 20.0 * static_cast<double>(i));
        return m;
    };
    const double sched_span = 49 * 20.0 + envelope(45) - envelope(0);
    std::printf("[ pacing   ] 1st->50th %.2f ms raw, %.2f ms schedule (ideal 980); gap mean %.3f ms, median %.3f, "
                "min %.3f, max %.3f\n",
                span, sched_span, span / 49.0, median, sorted.front(), sorted.back());
    EXPECT_NEAR(sched_span, 49 * 20.0, 15.0) << "absolute 20 ms schedule (mean gap 20 ms)";
    EXPECT_NEAR(span, 49 * 20.0, 40.0) << "raw first-to-50th arrival";
    EXPECT_NEAR(median, 20.0, 5.0) << "packets must be spread out, not sent in bursts";

    h.session->stop();
    const auto end_stats = h.session->stats();
    std::printf("[ pacing   ] send lateness p50 %u us, p99 %u us, max %u us over %llu packets\n",
                end_stats.send_late_p50_us, end_stats.send_late_p99_us, end_stats.send_late_max_us,
                static_cast<unsigned long long>(end_stats.packets_sent));
    EXPECT_GE(end_stats.packets_sent, 50u);
    EXPECT_EQ(end_stats.bytes_sent, end_stats.packets_sent * (12 + 160));
}

TEST(MediaSession, SendsQueuedAudioAsUlawAndSilenceWhenNothingIsQueued) {
    Peer peer;
    Harness h(1);
    START_OR_FAIL(h, params_to(peer));
    auto before = peer.rtp.collect_rtp(5, 1s);
    ASSERT_EQ(before.size(), 5u);
    for (const auto& p : before) {
        EXPECT_EQ(p.payload.size(), 160u);
        EXPECT_TRUE(is_ulaw_silence(p.payload)) << "nothing queued: the payload is µ-law silence";
    }

    // 500 ms of a 1 kHz tone at 16 kHz: resampled to 8 kHz on push, sent as 25 packets.
    h.session->playout().push(tone(1000, 16000, 8000), 16000);
    auto after = peer.rtp.collect_rtp(45, 1500ms);
    ASSERT_EQ(after.size(), 45u);
    std::vector<Level> levels;
    for (const auto& p : after) levels.push_back(decode_pcmu(p.payload));
    std::vector<size_t> loud;
    for (size_t i = 0; i < levels.size(); ++i)
        if (levels[i].rms > 2000) loud.push_back(i);
    std::printf("[ playout  ] %zu of %zu packets carry the tone\n", loud.size(), after.size());
    ASSERT_GE(loud.size(), 23u);
    EXPECT_LE(loud.size(), 26u);
    for (size_t k = 1; k < loud.size(); ++k) EXPECT_EQ(loud[k], loud[k - 1] + 1) << "tone packets contiguous";
    for (size_t k = 1; k + 1 < loud.size(); ++k) {
        EXPECT_NEAR(levels[loud[k]].rms, 8000 / std::sqrt(2.0), 600);
        EXPECT_NEAR(levels[loud[k]].zero_crossings, 40, 3) << "1 kHz in 20 ms at 8 kHz";
    }
    // The queue ran dry: silence again.
    for (size_t i = after.size() - 5; i < after.size(); ++i)
        EXPECT_TRUE(is_ulaw_silence(after[i].payload)) << "packet " << i;
    EXPECT_EQ(h.session->playout().queued_ms(), 0);
    EXPECT_NEAR(static_cast<double>(h.session->playout().played_ms()), 500.0, 10.0);
}

// =========================================================================================================
// Receiving

TEST(MediaSession, DeliversA16kFrameEvery20msAndDecodesReceivedAudio) {
    Peer peer;
    Harness h(2);
    const auto t_start = Clock::now();
    START_OR_FAIL(h, params_to(peer));
    std::this_thread::sleep_for(200ms);  // frames before any RTP: silence
    RtpStream far(peer.rtp, h.port, 0x11223344);
    const auto t_tone0 = Clock::now();
    far.audio_paced(50);  // 1 s of 1 kHz
    const auto t_tone1 = Clock::now();
    std::this_thread::sleep_for(300ms);
    h.session->stop();
    const auto t_stop = Clock::now();

    const auto frames = h.sink.frames();
    const double elapsed = ms_between(t_start, t_stop);
    ASSERT_GE(frames.size(), 10u);
    const double rate = 1000.0 * static_cast<double>(frames.size() - 1) / ms_between(frames.front().at, frames.back().at);
    const size_t loud = h.sink.loud_frames();
    std::printf("[ receive  ] %zu frames in %.1f ms (%.2f frames/s), %zu with the tone\n", frames.size(), elapsed,
                rate, loud);
    EXPECT_NEAR(static_cast<double>(frames.size()), elapsed / 20.0, 4.0);
    EXPECT_NEAR(rate, 50.0, 1.5);
    EXPECT_EQ(h.sink.wrong_thread.load(), 0);

    size_t before = 0, after_quiet = 0;
    std::vector<int> tone_crossings;
    for (const auto& f : frames) {
        if (f.at < t_tone0) {
            ++before;
            EXPECT_EQ(f.level.max_abs, 0) << "silence before the far end says anything";
        } else if (f.at > t_tone1 + 200ms) {
            ++after_quiet;
            EXPECT_LT(f.level.max_abs, 50) << "silence once the far end stopped";
        } else if (f.level.rms > 5000) {  // a whole frame of the tone (RMS 8000/sqrt(2) = 5657)
            tone_crossings.push_back(f.level.zero_crossings);
        }
    }
    EXPECT_GE(before, 7u);
    EXPECT_GE(after_quiet, 3u);
    // 1 s of tone -> ~50 frames (a few may be split by jitter-buffer refills on a loaded machine).
    EXPECT_GE(loud, 46u);
    EXPECT_LE(loud, 56u);
    ASSERT_GE(tone_crossings.size(), 30u);
    std::sort(tone_crossings.begin(), tone_crossings.end());
    EXPECT_NEAR(tone_crossings[tone_crossings.size() / 2], 40, 2) << "1 kHz at 16 kHz: 40 crossings per 320 samples";

    const auto st = h.session->stats();
    EXPECT_EQ(st.packets_received, 50u);
    EXPECT_EQ(st.bytes_received, 50u * 172);
    EXPECT_EQ(st.frames_delivered, frames.size());
    EXPECT_EQ(st.packets_invalid + st.packets_foreign, 0u);
}

TEST(MediaSession, DropsForeignSourceWithoutSymmetricRtp) {
    Peer peer;
    UdpEndpoint stranger;
    auto opts = test_options();
    opts.symmetric_rtp = false;
    Harness h(3, opts);
    START_OR_FAIL(h, params_to(peer));
    RtpStream from_stranger(stranger, h.port, 0x5555);
    from_stranger.audio_paced(25);
    ASSERT_TRUE(wait_until([&] { return h.session->stats().packets_foreign >= 25; }, 1s));
    std::this_thread::sleep_for(100ms);  // what the jitter buffer would have played by now
    for (const auto& f : h.sink.frames()) EXPECT_EQ(f.level.max_abs, 0) << "foreign audio must not be heard";
    auto st = h.session->stats();
    EXPECT_EQ(st.packets_foreign, 25u);
    EXPECT_EQ(st.packets_received, 0u);
    EXPECT_EQ(stranger.drain(), 0u) << "our RTP still goes to the negotiated address only";
    EXPECT_GE(peer.rtp.drain(), 20u);

    // Control: the same audio from the negotiated address is heard.
    RtpStream from_peer(peer.rtp, h.port, 0x6666);
    from_peer.audio_paced(25);
    EXPECT_TRUE(wait_until([&] { return h.sink.loud_frames() >= 20; }, 1s)) << h.sink.loud_frames();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_received == 25; }, 500ms))
        << h.session->stats().packets_received;
}

TEST(MediaSession, SymmetricRtpLatchesOntoTheFirstSource) {
    Peer peer;
    UdpEndpoint nat;  // where the far end's packets really come from
    Harness h(4);
    START_OR_FAIL(h, params_to(peer));
    ASSERT_EQ(peer.rtp.collect_rtp(3, 1s).size(), 3u) << "sends to the negotiated address first";

    RtpStream far(nat, h.port, 0x7777);
    const auto t_first = Clock::now();
    far.audio();
    auto first = nat.recv_rtp(500ms);
    ASSERT_TRUE(first) << "Parley's RTP did not follow the latched source";
    const double follow_ms = ms_between(t_first, first->at);
    std::printf("[ latch    ] RTP at the latched address %.1f ms after its first packet\n", follow_ms);
    EXPECT_LE(follow_ms, 100.0);
    EXPECT_EQ(first->from_port, h.port);

    // From now on the negotiated address gets nothing.
    std::this_thread::sleep_for(5ms);
    peer.rtp.drain();
    EXPECT_TRUE(peer.rtp.collect_for(100ms).empty());
    EXPECT_GE(nat.collect_for(100ms).size(), 3u);

    // The latched source's audio is heard.
    far.audio_paced(20);
    EXPECT_TRUE(wait_until([&] { return h.sink.loud_frames() >= 15; }, 1s)) << h.sink.loud_frames();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_received == 21; }, 500ms))
        << h.session->stats().packets_received;
    EXPECT_EQ(h.session->stats().packets_foreign, 0u);

    // One latch only: the negotiated address is now a stranger.
    RtpStream late(peer.rtp, h.port, 0x8888);
    for (int i = 0; i < 3; ++i) late.audio();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_foreign == 3; }, 500ms));
    EXPECT_GE(nat.collect_for(60ms).size(), 1u) << "still sending to the latched address";
}

TEST(MediaSession, NoLatchingOnceTheNegotiatedSourceHasSpoken) {
    Peer peer;
    UdpEndpoint stranger;
    Harness h(5);
    START_OR_FAIL(h, params_to(peer));
    RtpStream far(peer.rtp, h.port, 0x1001);
    for (int i = 0; i < 3; ++i) far.audio();
    ASSERT_TRUE(wait_until([&] { return h.session->stats().packets_received == 3; }, 500ms));
    RtpStream other(stranger, h.port, 0x2002);
    for (int i = 0; i < 3; ++i) other.audio();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_foreign == 3; }, 500ms));
    peer.rtp.drain();
    EXPECT_GE(peer.rtp.collect_for(100ms).size(), 3u);
    EXPECT_EQ(stranger.drain(), 0u);
    EXPECT_EQ(h.session->stats().packets_received, 3u);
}

// A datagram that is not RTP (scanner, STUN, stray RTCP) must not capture the stream: otherwise the real
// peer's audio would be dropped as foreign for the rest of the call.
TEST(MediaSession, MalformedDatagramFromAStrangerDoesNotLatch) {
    Peer peer;
    UdpEndpoint stranger;
    Harness h(6);
    START_OR_FAIL(h, params_to(peer));
    const std::vector<uint8_t> junk = {0x00, 0x01, 0x00, 0x08, 0x21};  // too short for RTP
    stranger.send_to(h.port, junk);
    std::vector<uint8_t> v1(172, 0);
    v1[0] = 0x40;  // version 1
    stranger.send_to(h.port, v1);
    ASSERT_TRUE(wait_until(
        [&] {
            auto s = h.session->stats();
            return s.packets_foreign + s.packets_invalid >= 2;
        },
        500ms));
    std::this_thread::sleep_for(30ms);
    peer.rtp.drain();
    EXPECT_GE(peer.rtp.collect_for(100ms).size(), 3u) << "RTP must still go to the negotiated address";
    EXPECT_EQ(stranger.drain(), 0u);

    RtpStream far(peer.rtp, h.port, 0x3003);
    for (int i = 0; i < 3; ++i) far.audio();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_received == 3; }, 500ms))
        << "the negotiated peer's audio must still be accepted";
}

TEST(MediaSession, MalformedDatagramsAreCountedAndIgnored) {
    Peer peer;
    Harness h(7);
    START_OR_FAIL(h, params_to(peer));
    std::vector<std::vector<uint8_t>> bad;
    bad.push_back({0x80, 0x00, 0x00, 0x01, 0x00});  // shorter than the header
    bad.push_back({});                               // empty datagram
    std::vector<uint8_t> v1 = make_rtp(0, 1, 160, 9, false, std::vector<uint8_t>(160, 0x55));
    v1[0] = static_cast<uint8_t>((v1[0] & 0x3F) | 0x40);  // version 1
    bad.push_back(v1);
    std::vector<uint8_t> v0 = v1;
    v0[0] &= 0x3F;  // version 0
    bad.push_back(v0);
    std::vector<uint8_t> csrc = make_rtp(0, 2, 320, 9, false, {});
    csrc[0] |= 0x0F;  // 15 CSRCs claimed, none present
    bad.push_back(csrc);
    for (const auto& b : bad) peer.rtp.send_to(h.port, b);
    ASSERT_TRUE(wait_until([&] { return h.session->stats().packets_invalid == bad.size(); }, 500ms))
        << h.session->stats().packets_invalid;

    // Still alive in both directions.
    RtpStream far(peer.rtp, h.port, 0x4004);
    far.audio_paced(25);
    EXPECT_TRUE(wait_until([&] { return h.sink.loud_frames() >= 20; }, 1s)) << h.sink.loud_frames();
    EXPECT_TRUE(wait_until([&] { return h.session->stats().packets_received == 25; }, 500ms));
    auto st = h.session->stats();
    EXPECT_EQ(st.packets_received, 25u);
    EXPECT_EQ(st.packets_invalid, bad.size());
    peer.rtp.drain();
    EXPECT_GE(peer.rtp.collect_for(100ms).size(), 3u);
}

// =========================================================================================================
// RFC 4733

TEST(MediaSession, ReceivedKeyPressBecomesExactlyOneDigit) {
    Peer peer;
    Harness h(8);
    START_OR_FAIL(h, params_to(peer));
    RtpStream far(peer.rtp, h.port, 0x5005);
    far.audio_paced(3);
    far.key_press('5');
    far.audio_paced(3);
    ASSERT_TRUE(wait_until([&] { return !h.sink.digits().empty(); }, 500ms));
    std::this_thread::sleep_for(100ms);  // no second report from the repeats or the three ends
    EXPECT_EQ(h.sink.digits(), "5");

    far.key_press('#');
    far.audio_paced(2);
    far.key_press('5');  // the same key again is a new press (new timestamp)
    ASSERT_TRUE(wait_until([&] { return h.sink.digits().size() >= 3; }, 500ms)) << h.sink.digits();
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(h.sink.digits(), "5#5");
    EXPECT_EQ(h.session->stats().dtmf_received, 3u);
    EXPECT_EQ(h.sink.wrong_thread.load(), 0);
}

TEST(MediaSession, IgnoresTelephoneEventsWhenNotNegotiated) {
    Peer peer;
    Harness h(9);
    auto p = params_to(peer);
    p.telephone_event_pt = -1;
    START_OR_FAIL(h, p);
    RtpStream far(peer.rtp, h.port, 0x9009);
    far.key_press('7');
    ASSERT_TRUE(wait_until([&] { return h.session->stats().packets_received >= 8; }, 500ms));
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(h.sink.digits(), "");
}

TEST(MediaSession, SendsDigitsAsRfc4733Events) {
    Peer peer;
    Harness h(10);
    START_OR_FAIL(h, params_to(peer));
    auto pkts = peer.rtp.collect_rtp(3, 1s);
    ASSERT_EQ(pkts.size(), 3u);
    h.session->send_dtmf("12");

    // Collect until the third end packet of '2' (or 1.5 s).
    int ends_of_2 = 0;
    const auto deadline = Clock::now() + 1500ms;
    while (ends_of_2 < 3 && Clock::now() < deadline) {
        auto r = peer.rtp.recv_rtp(deadline - Clock::now());
        if (!r) break;
        if (r->h.payload_type == 101 && r->payload.size() >= 4 && r->payload[0] == 2 && (r->payload[1] & 0x80))
            ++ends_of_2;
        pkts.push_back(std::move(*r));
    }
    ASSERT_EQ(ends_of_2, 3);
    for (auto& r : peer.rtp.collect_for(60ms)) pkts.push_back(std::move(r));  // and a little audio after

    // One stream: consecutive sequence numbers, one SSRC, DTMF in place of audio.
    for (size_t i = 1; i < pkts.size(); ++i) {
        EXPECT_EQ(pkts[i].h.sequence, static_cast<uint16_t>(pkts[i - 1].h.sequence + 1)) << i;
        EXPECT_EQ(pkts[i].h.ssrc, pkts[0].h.ssrc);
    }
    struct Event {
        uint32_t ts;
        std::vector<size_t> idx;  // into pkts
    };
    std::vector<Event> events;
    for (size_t i = 0; i < pkts.size(); ++i) {
        const auto& r = pkts[i];
        if (r.h.payload_type == 0) continue;
        ASSERT_EQ(r.h.payload_type, 101) << i;
        ASSERT_EQ(r.payload.size(), 4u);
        if (events.empty() || events.back().ts != r.h.timestamp) {
            events.push_back({r.h.timestamp, {}});
        }
        events.back().idx.push_back(i);
    }
    ASSERT_EQ(events.size(), 2u);
    for (size_t e = 0; e < 2; ++e) {
        SCOPED_TRACE("event " + std::to_string(e));
        const auto& ev = events[e];
        ASSERT_GE(ev.idx.size(), 4u);
        for (size_t k = 1; k < ev.idx.size(); ++k) EXPECT_EQ(ev.idx[k], ev.idx[k - 1] + 1) << "contiguous";
        // The event's timestamp is where the media clock was when it started.
        const auto& first = pkts[ev.idx.front()];
        const auto& prev = pkts[ev.idx.front() - 1];
        EXPECT_EQ(first.h.timestamp, prev.h.timestamp + (prev.h.payload_type == 0 ? 160u : 0u));
        uint16_t last_duration = 0;
        for (size_t k = 0; k < ev.idx.size(); ++k) {
            const auto& r = pkts[ev.idx[k]];
            auto te = rfc4733_parse(r.payload);
            ASSERT_TRUE(te);
            EXPECT_EQ(te->event, e == 0 ? 1 : 2);
            EXPECT_EQ(r.h.marker, k == 0) << "marker on the first packet of each event only";
            EXPECT_EQ(te->end, k + 3 >= ev.idx.size()) << "E bit on the last three packets, packet " << k;
            EXPECT_GE(te->duration, last_duration);
            last_duration = te->duration;
        }
        EXPECT_GE(last_duration, 320) << "at least 40 ms";
        // After the event, audio resumes on the same timeline.
        const size_t after = ev.idx.back() + 1;
        ASSERT_LT(after, pkts.size());
        EXPECT_EQ(pkts[after].h.payload_type, 0);
        EXPECT_EQ(pkts[after].h.timestamp, first.h.timestamp + 160u * static_cast<uint32_t>(ev.idx.size()));
    }
    EXPECT_GE(events[1].idx.front() - events[0].idx.back() - 1, 2u) << "a pause of >= 40 ms between two digits";
    EXPECT_EQ(h.session->stats().dtmf_sent, 2u);
}

// =========================================================================================================
// Re-INVITE

TEST(MediaSession, UpdateMovesRtpToTheNewRemotePort) {
    Peer a, b;
    Harness h(11);
    START_OR_FAIL(h, params_to(a));
    auto at_a = a.rtp.collect_rtp(3, 1s);
    ASSERT_EQ(at_a.size(), 3u);
    const auto t_update = Clock::now();
    h.session->update(params_to(b));
    auto first_b = b.rtp.recv_rtp(500ms);
    ASSERT_TRUE(first_b) << "no RTP at the new port";
    const double moved_ms = ms_between(t_update, first_b->at);
    std::printf("[ update   ] RTP at the new port %.1f ms after update()\n", moved_ms);
    EXPECT_LE(moved_ms, 100.0);
    for (auto& r : a.rtp.collect_for(5ms)) at_a.push_back(std::move(r));
    EXPECT_TRUE(a.rtp.collect_for(100ms).empty()) << "the old port gets nothing more";
    EXPECT_GE(b.rtp.collect_for(100ms).size(), 3u);
    // Same stream continues: SSRC and sequence carry on.
    EXPECT_EQ(first_b->h.ssrc, at_a.back().h.ssrc);
    EXPECT_EQ(first_b->h.sequence, static_cast<uint16_t>(at_a.back().h.sequence + 1));
}

TEST(MediaSession, UpdateWithSendFalseStopsSendingAndSendTrueResumes) {
    Peer peer;
    Harness h(12);
    auto p = params_to(peer);
    START_OR_FAIL(h, p);
    auto first = peer.rtp.collect_rtp(3, 1s);
    ASSERT_EQ(first.size(), 3u);
    p.send = false;
    h.session->update(p);
    auto tail = peer.rtp.collect_for(100ms);  // at most what was already due
    EXPECT_LE(tail.size(), 5u);
    const auto sent = h.session->stats().packets_sent;
    EXPECT_TRUE(peer.rtp.collect_for(400ms).empty()) << "sending while on hold";
    EXPECT_EQ(h.session->stats().packets_sent, sent);
    const size_t frames = h.sink.frame_count();
    EXPECT_GE(frames, 20u) << "receiving side keeps running";

    p.send = true;
    const auto t_resume = Clock::now();
    h.session->update(p);
    auto resumed = peer.rtp.recv_rtp(500ms);
    ASSERT_TRUE(resumed);
    EXPECT_LE(ms_between(t_resume, resumed->at), 100.0);
    const auto& last = tail.empty() ? first.back() : tail.back();
    EXPECT_EQ(resumed->h.sequence, static_cast<uint16_t>(last.h.sequence + 1));
    // The media clock kept running while on hold: the timestamp jumped by the pause (~500 ms = 4000).
    const uint32_t jump = resumed->h.timestamp - last.h.timestamp;
    EXPECT_EQ(jump % 160, 0u);
    EXPECT_GE(jump, 160u * 20);
}

// =========================================================================================================
// Media timeout

TEST(MediaSession, MediaTimeoutFiresOnceWhenNothingArrives) {
    Peer peer;
    auto opts = test_options();
    opts.timeout_s = 1;
    Harness h(13, opts);
    ASSERT_TRUE(h.session);
    const auto t_start = Clock::now();
    ASSERT_TRUE(h.start(params_to(peer))) << h.error;
    ASSERT_TRUE(wait_until([&] { return !h.sink.timeouts().empty(); }, 3s)) << "no media timeout";
    const double after = ms_between(t_start, h.sink.timeouts()[0]);
    std::printf("[ timeout  ] on_media_timeout after %.1f ms (timeout_s=1)\n", after);
    EXPECT_GE(after, 1000.0);
    EXPECT_LE(after, 1500.0);
    std::this_thread::sleep_until(t_start + 2500ms);
    EXPECT_EQ(h.sink.timeouts().size(), 1u) << "reported once";
}

TEST(MediaSession, ReceivedRtpKeepsMediaAliveAndTimeoutFollowsItsEnd) {
    Peer peer;
    auto opts = test_options();
    opts.timeout_s = 1;
    Harness h(14, opts);
    START_OR_FAIL(h, params_to(peer));
    RtpStream far(peer.rtp, h.port, 0x1414);
    far.audio_paced(75, false);  // 1.5 s of (silent) RTP
    const auto t_last = Clock::now();
    EXPECT_TRUE(h.sink.timeouts().empty()) << "timed out while RTP was arriving";
    ASSERT_TRUE(wait_until([&] { return !h.sink.timeouts().empty(); }, 2500ms)) << "no media timeout";
    const double after = ms_between(t_last, h.sink.timeouts()[0]);
    std::printf("[ timeout  ] on_media_timeout %.1f ms after the last packet\n", after);
    EXPECT_GE(after, 980.0);
    EXPECT_LE(after, 1500.0);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(h.sink.timeouts().size(), 1u);
}

TEST(MediaSession, NoMediaTimeoutWhenThePeerWillNotSend) {
    Peer peer;
    auto opts = test_options();
    opts.timeout_s = 1;
    Harness h(15, opts);
    auto p = params_to(peer);
    p.receive = false;
    START_OR_FAIL(h, p);
    std::this_thread::sleep_for(1700ms);  // waiting for something that must not happen
    EXPECT_TRUE(h.sink.timeouts().empty());
    EXPECT_GE(h.sink.frame_count(), 60u) << "frames (silence) are still delivered";
}

// =========================================================================================================
// Lifetime

TEST(MediaSession, StopJoinsAndDestructionClosesTheSockets) {
    Peer peer;
    auto opts = test_options();
    opts.timeout_s = 1;
    Harness h(16, opts);
    START_OR_FAIL(h, params_to(peer));
    const uint16_t port = h.port;

    // The far end keeps talking (audio and digits) throughout, so the media thread has work to do.
    std::atomic<bool> talking{true};
    std::thread far_end([&] {
        RtpStream far(peer.rtp, port, 0x1616);
        while (talking) {
            far.audio_paced(5);
            far.key_press('9');
        }
    });
    const bool busy = wait_until([&] { return h.sink.frame_count() >= 15 && !h.sink.digits().empty(); }, 2s);
    h.session->stop();
    h.sink.stopped = true;
    const size_t calls = h.sink.total_calls();
    const auto sent = h.session->stats().packets_sent;
    std::this_thread::sleep_for(300ms);
    talking = false;
    far_end.join();
    ASSERT_TRUE(busy) << "frames " << h.sink.frame_count() << " digits " << h.sink.digits();

    EXPECT_EQ(h.sink.calls_after_stop.load(), 0) << "sink called after stop() returned";
    EXPECT_EQ(h.sink.total_calls(), calls);
    EXPECT_EQ(h.session->stats().packets_sent, sent);
    peer.rtp.drain();
    EXPECT_TRUE(peer.rtp.collect_for(60ms).empty());
    h.session->stop();  // idempotent

    EXPECT_EQ(h.pool.in_use(), 1u);
    h.session.reset();
    EXPECT_EQ(h.pool.in_use(), 0u);
    for (uint16_t p : {port, static_cast<uint16_t>(port + 1)}) {
        int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(p);
        EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << "port " << p << " still bound";
        ::close(fd);
    }
}

TEST(MediaSession, DestroyingARunningSessionStopsIt) {
    Peer peer;
    Harness h(17);
    START_OR_FAIL(h, params_to(peer));
    ASSERT_EQ(peer.rtp.collect_rtp(3, 1s).size(), 3u);
    h.session.reset();  // no stop(): the destructor joins
    h.sink.stopped = true;
    peer.rtp.drain();
    EXPECT_TRUE(peer.rtp.collect_for(60ms).empty());
    EXPECT_EQ(h.sink.calls_after_stop.load(), 0);
    EXPECT_EQ(h.pool.in_use(), 0u);
}

TEST(MediaSession, NeverStartedSessionIsDestroyedCleanly) {
    Harness h(18);
    ASSERT_TRUE(h.session) << h.error;
    h.session->stop();
    h.session.reset();
    EXPECT_EQ(h.sink.total_calls(), 0u);
    EXPECT_EQ(h.pool.in_use(), 0u);
}

TEST(MediaSession, StartRejectsBadParamsAndASecondStart) {
    Peer peer;
    Harness h(19);
    ASSERT_TRUE(h.session) << h.error;
    auto p = params_to(peer);
    std::string err;
    auto bad = p;
    bad.remote_address = "not-an-address";
    EXPECT_FALSE(h.session->start(bad, &err));
    EXPECT_FALSE(err.empty());
    bad = p;
    bad.ptime = 5;
    err.clear();
    EXPECT_FALSE(h.session->start(bad, &err));
    EXPECT_FALSE(err.empty());
    bad.ptime = 100;
    EXPECT_FALSE(h.session->start(bad, nullptr));
    EXPECT_TRUE(peer.rtp.collect_for(60ms).empty()) << "nothing sent after a refused start";

    EXPECT_TRUE(h.session->start(p, &err)) << err;
    err.clear();
    EXPECT_FALSE(h.session->start(p, &err));
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(peer.rtp.collect_rtp(3, 1s).size(), 3u);
}

TEST(MediaSession, SendsRtcpSenderReports) {
    Peer peer;
    Harness h(20);
    START_OR_FAIL(h, params_to(peer));
    auto d = peer.rtcp.recv(2500ms);
    ASSERT_TRUE(d) << "no RTCP at the negotiated RTCP port";
    const auto& b = d->bytes;
    ASSERT_GE(b.size(), 28u + 8u);
    EXPECT_EQ(d->from_port, h.port + 1) << "RTCP from the odd port";
    EXPECT_EQ(b[0] >> 6, 2);
    EXPECT_EQ(b[1], 200) << "SR";
    const size_t sr_len = (static_cast<size_t>(b[2]) << 8 | b[3]) * 4 + 4;
    ASSERT_LE(sr_len + 8, b.size());
    auto be32 = [&](size_t o) {
        return static_cast<uint32_t>(b[o]) << 24 | static_cast<uint32_t>(b[o + 1]) << 16 |
               static_cast<uint32_t>(b[o + 2]) << 8 | b[o + 3];
    };
    EXPECT_EQ(be32(4), h.session->stats().ssrc);
    EXPECT_GT(be32(20), 30u) << "sender's packet count after ~1 s";
    EXPECT_EQ(be32(24), be32(20) * 160) << "octet count: payload bytes";
    EXPECT_EQ(b[sr_len + 1], 202) << "SDES follows";
    const size_t sdes_len = (static_cast<size_t>(b[sr_len + 2]) << 8 | b[sr_len + 3]) * 4 + 4;
    EXPECT_EQ(sr_len + sdes_len, b.size()) << "compound length adds up";
    EXPECT_EQ(be32(sr_len + 4), h.session->stats().ssrc);
    EXPECT_EQ(b[sr_len + 8], 1) << "CNAME item";
}

}  // namespace
}  // namespace parley::media
