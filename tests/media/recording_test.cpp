// recording_test.cpp — call recordings: the Recorder's WAV files, queue, retention and the MediaTap adapter.
// Files go under the build directory (PARLEY_RECORDING_TMP_DIR), one fresh directory per test.
#include "media/recording.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numbers>
#include <thread>
#include <vector>

#include "media/codec.h"
#include "media/port_pool.h"
#include "media/rtp.h"

namespace parley::media {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path fresh_dir(const std::string& name) {
    fs::path dir = fs::path(PARLEY_RECORDING_TMP_DIR) / "recording_test_files" / (name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    return dir;  // not created: the Recorder creates it
}

struct Wav {
    bool valid = false;
    std::string why;
    int channels = 0, rate = 0, bits = 0;
    std::uint32_t riff_size = 0, data_size = 0;
    std::vector<int16_t> left, right;
};

std::uint32_t le32(const unsigned char* p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<std::uint32_t>(p[3]) << 24; }
std::uint16_t le16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }

// Parses a canonical 44-byte-header PCM WAV by hand; reads only as many samples as the header says.
Wav parse_wav(const fs::path& path) {
    Wav w;
    std::ifstream in(path, std::ios::binary);
    std::vector<unsigned char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (b.size() < 44) return w.why = "short file", w;
    if (std::memcmp(&b[0], "RIFF", 4) || std::memcmp(&b[8], "WAVE", 4) || std::memcmp(&b[12], "fmt ", 4) ||
        std::memcmp(&b[36], "data", 4))
        return w.why = "bad chunk ids", w;
    if (le32(&b[16]) != 16 || le16(&b[20]) != 1) return w.why = "not PCM", w;
    w.channels = le16(&b[22]);
    w.rate = static_cast<int>(le32(&b[24]));
    w.bits = le16(&b[34]);
    if (le32(&b[28]) != static_cast<std::uint32_t>(w.rate * w.channels * w.bits / 8) ||
        le16(&b[32]) != w.channels * w.bits / 8)
        return w.why = "inconsistent byte rate / block align", w;
    w.riff_size = le32(&b[4]);
    w.data_size = le32(&b[40]);
    if (w.riff_size != 36 + w.data_size) return w.why = "RIFF size != 36 + data size", w;
    if (44 + static_cast<std::size_t>(w.data_size) > b.size()) return w.why = "data size beyond the file", w;
    if (w.channels != 2 || w.bits != 16 || w.data_size % 4) return w.why = "not 16-bit stereo frames", w;
    for (std::size_t i = 44; i < 44 + w.data_size; i += 4) {
        w.left.push_back(static_cast<int16_t>(le16(&b[i])));
        w.right.push_back(static_cast<int16_t>(le16(&b[i + 2])));
    }
    w.valid = true;
    return w;
}

std::vector<int16_t> tone(double hz, std::size_t n, std::size_t offset = 0, double amp = 8000, int rate = 16000) {
    std::vector<int16_t> out(n);
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<int16_t>(
            std::lround(amp * std::sin(2 * std::numbers::pi * hz * static_cast<double>(i + offset) / rate)));
    return out;
}

// Power of `x` at `hz` (Goertzel), normalised by length.
double power_at(const std::vector<int16_t>& x, double hz, int rate = 16000) {
    const double w = 2 * std::numbers::pi * hz / rate, c = 2 * std::cos(w);
    double s1 = 0, s2 = 0;
    for (int16_t v : x) {
        double s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    double p = s1 * s1 + s2 * s2 - c * s1 * s2;
    return p / (static_cast<double>(x.size()) * static_cast<double>(x.size()));
}

RecorderOptions options_for(const fs::path& dir) {
    RecorderOptions o;
    o.dir = dir.string();
    o.max_age_days = 0;
    o.max_total_mb = 0;
    o.poll_interval = 10ms;
    return o;
}

TEST(Recording, StereoWavWithCallerLeftAndParleyRight) {
    fs::path dir = fresh_dir("stereo");
    Recorder recorder(options_for(dir));
    std::string error;
    auto rec = recorder.open("1764030654123-7", &error);
    ASSERT_TRUE(rec) << error;
    EXPECT_EQ(rec->path(), (dir / "1764030654123-7.wav").string());
    // Private: the file is 0600.
    struct stat st {};
    ASSERT_EQ(::stat(rec->path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    // Valid the moment it is created: 0 data bytes.
    Wav empty = parse_wav(rec->path());
    ASSERT_TRUE(empty.valid) << empty.why;
    EXPECT_EQ(empty.data_size, 0u);

    constexpr std::size_t kTicks = 150;  // 3 s
    for (std::size_t t = 0; t < kTicks; ++t) {
        auto left = tone(440, kFrameSamples, t * kFrameSamples);
        auto right = tone(1000, kFrameSamples, t * kFrameSamples, 4000);
        rec->write(left, right);
    }
    rec->close();
    rec->write(tone(440, kFrameSamples), tone(1000, kFrameSamples));  // after close: ignored
    recorder.flush();
    EXPECT_EQ(recorder.open_count(), 0u);
    Wav w = parse_wav(rec->path());
    ASSERT_TRUE(w.valid) << w.why;
    EXPECT_EQ(w.rate, 16000);
    EXPECT_EQ(w.channels, 2);
    ASSERT_EQ(w.left.size(), kTicks * kFrameSamples);
    EXPECT_EQ(fs::file_size(rec->path()), 44 + kTicks * kFrameSamples * 4);
    // Sample-exact on both sides, and not swapped.
    EXPECT_EQ(w.left, tone(440, kTicks * kFrameSamples));
    EXPECT_EQ(w.right, tone(1000, kTicks * kFrameSamples, 0, 4000));
    EXPECT_GT(power_at(w.left, 440), 100 * power_at(w.left, 1000));
    EXPECT_GT(power_at(w.right, 1000), 100 * power_at(w.right, 440));
    EXPECT_EQ(rec->dropped_frames(), 0u);
}

TEST(Recording, HeaderIsValidWhileTheFileGrows) {
    fs::path dir = fresh_dir("growing");
    RecorderOptions o = options_for(dir);
    o.header_interval = 50ms;
    Recorder recorder(o);
    std::string error;
    auto rec = recorder.open("grow-1", &error);
    ASSERT_TRUE(rec) << error;
    for (int t = 0; t < 50; ++t) rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));
    // No flush(), no close(): the writer's own periodic pass must bring the header up to date.
    Wav w;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
        std::this_thread::sleep_for(20ms);
        w = parse_wav(rec->path());
    } while ((!w.valid || w.left.size() < 50u * kFrameSamples) && std::chrono::steady_clock::now() < deadline);
    ASSERT_TRUE(w.valid) << w.why;
    EXPECT_EQ(w.left.size(), 50u * kFrameSamples);
    EXPECT_FALSE(rec->closed());
    EXPECT_EQ(recorder.open_count(), 1u);
    // More audio, then close: the final header counts everything.
    for (int t = 0; t < 10; ++t) rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));
    rec->close();
    recorder.flush();
    w = parse_wav(rec->path());
    ASSERT_TRUE(w.valid) << w.why;
    EXPECT_EQ(w.left.size(), 60u * kFrameSamples);
}

TEST(Recording, DestroyingTheRecorderFinalizesOpenFiles) {
    fs::path dir = fresh_dir("shutdown");
    std::shared_ptr<Recording> rec;
    {
        Recorder recorder(options_for(dir));
        std::string error;
        rec = recorder.open("open-at-exit", &error);
        ASSERT_TRUE(rec) << error;
        for (int t = 0; t < 7; ++t) rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));
    }
    Wav w = parse_wav(rec->path());
    ASSERT_TRUE(w.valid) << w.why;
    EXPECT_EQ(w.left.size(), 7u * kFrameSamples);
    rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));  // the Call outlived the Recorder: harmless
    rec->close();
}

TEST(Recording, FullQueueDropsAndCounts) {
    fs::path dir = fresh_dir("full");
    RecorderOptions o = options_for(dir);
    o.queue_ms = 100;           // 5 ticks
    o.poll_interval = 10s;      // the writer does not drain on its own during the test
    Recorder recorder(o);
    std::string error;
    auto rec = recorder.open("full-1", &error);
    ASSERT_TRUE(rec) << error;
    recorder.flush();  // the writer has made its first pass; it now sleeps for poll_interval
    auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < 8; ++t) rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);  // never blocks
    EXPECT_EQ(rec->queued_frames(), 5u * kFrameSamples);
    EXPECT_EQ(rec->dropped_frames(), 3u * kFrameSamples);
    rec->close();
    recorder.flush();
    Wav w = parse_wav(rec->path());
    ASSERT_TRUE(w.valid) << w.why;
    EXPECT_EQ(w.left.size(), 5u * kFrameSamples);
}

TEST(Recording, UnwritableDirectoryOrBadUidGivesAnError) {
    fs::path base = fresh_dir("bad");
    fs::create_directories(base);
    {
        std::ofstream(base / "file").put('x');
    }
    RecorderOptions o = options_for(base / "file" / "sub");  // a directory below a regular file
    Recorder recorder(o);
    std::string error;
    EXPECT_FALSE(recorder.open("1-1", &error));
    EXPECT_NE(error.find("cannot create"), std::string::npos) << error;
    EXPECT_EQ(recorder.open_count(), 0u);

    Recorder ok(options_for(base / "ok"));
    for (const char* uid : {"", "../evil", "a/b", ".hidden"}) {
        error.clear();
        EXPECT_FALSE(ok.open(uid, &error)) << uid;
        EXPECT_FALSE(error.empty()) << uid;
    }
    // The same uid twice: the first file is never overwritten.
    auto first = ok.open("dup", &error);
    ASSERT_TRUE(first) << error;
    EXPECT_FALSE(ok.open("dup", &error));
    first->close();
}

void write_file(const fs::path& p, std::size_t bytes, std::chrono::hours age) {
    {
        std::ofstream out(p, std::ios::binary);
        std::vector<char> zeros(bytes);
        out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    fs::last_write_time(p, fs::file_time_type::clock::now() - age);
}

TEST(Recording, RetentionDeletesOldFilesButNeverAnOpenOne) {
    fs::path dir = fresh_dir("age");
    fs::create_directories(dir);
    write_file(dir / "old.wav", 1000, std::chrono::hours(24 * 40));
    write_file(dir / "recent.wav", 1000, std::chrono::hours(24 * 2));
    write_file(dir / "old.txt", 1000, std::chrono::hours(24 * 40));  // not a recording: untouched
    RecorderOptions o = options_for(dir);
    o.max_age_days = 30;
    o.retention_interval = 50ms;
    auto recorder = std::make_unique<Recorder>(o);
    // Retention ran at start.
    recorder->flush();
    EXPECT_FALSE(fs::exists(dir / "old.wav"));
    EXPECT_TRUE(fs::exists(dir / "recent.wav"));
    EXPECT_TRUE(fs::exists(dir / "old.txt"));
    EXPECT_EQ(recorder->deleted_count(), 1u);

    // An open recording whose mtime looks ancient is kept; the periodic pass deletes a file that aged meanwhile.
    std::string error;
    auto rec = recorder->open("live", &error);
    ASSERT_TRUE(rec) << error;
    fs::last_write_time(rec->path(), fs::file_time_type::clock::now() - std::chrono::hours(24 * 90));
    fs::last_write_time(dir / "recent.wav", fs::file_time_type::clock::now() - std::chrono::hours(24 * 31));
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (fs::exists(dir / "recent.wav") && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(fs::exists(dir / "recent.wav"));  // by the periodic pass (no flush, no close)
    EXPECT_TRUE(fs::exists(rec->path()));
    recorder->run_retention();
    EXPECT_TRUE(fs::exists(rec->path()));
    // Once closed it is an ordinary old file.
    const std::vector<int16_t> tick(320, 100);
    rec->write(tick, tick);
    rec->close();
    recorder->flush();
    ASSERT_TRUE(fs::exists(rec->path()));
    fs::last_write_time(rec->path(), fs::file_time_type::clock::now() - std::chrono::hours(24 * 90));
    recorder->run_retention();
    EXPECT_FALSE(fs::exists(rec->path()));
    EXPECT_EQ(recorder->deleted_count(), 3u);
}

TEST(Recording, CallWithoutAudioLeavesNoFile) {
    fs::path dir = fresh_dir("empty");
    auto recorder = std::make_unique<Recorder>(options_for(dir));
    std::string error;
    auto rec = recorder->open("never-answered", &error);
    ASSERT_TRUE(rec) << error;
    EXPECT_TRUE(fs::exists(rec->path()));  // created (and valid) at once
    rec->close();
    recorder->flush();
    EXPECT_FALSE(fs::exists(rec->path()));
}

TEST(Recording, RetentionBySizeDeletesOldestFirst) {
    fs::path dir = fresh_dir("size");
    fs::create_directories(dir);
    const std::size_t k400 = 400 * 1024;
    write_file(dir / "a.wav", k400, std::chrono::hours(5));  // oldest
    write_file(dir / "b.wav", k400, std::chrono::hours(4));
    write_file(dir / "c.wav", k400, std::chrono::hours(3));
    write_file(dir / "d.wav", k400, std::chrono::hours(2));
    RecorderOptions o = options_for(dir);
    o.max_total_mb = 1;  // 1 MiB: two 400 KiB files fit, four do not
    Recorder recorder(o);
    recorder.flush();
    EXPECT_FALSE(fs::exists(dir / "a.wav"));
    EXPECT_FALSE(fs::exists(dir / "b.wav"));
    EXPECT_TRUE(fs::exists(dir / "c.wav"));
    EXPECT_TRUE(fs::exists(dir / "d.wav"));

    // An open recording is never deleted, even when it is the oldest file and the total is over the limit.
    std::string error;
    auto rec = recorder.open("big-open", &error);
    ASSERT_TRUE(rec) << error;
    for (int t = 0; t < 250; ++t) rec->write(tone(300, kFrameSamples), tone(700, kFrameSamples));  // ~320 KB
    recorder.flush();
    fs::last_write_time(rec->path(), fs::file_time_type::clock::now() - std::chrono::hours(100));
    recorder.run_retention();
    EXPECT_TRUE(fs::exists(rec->path()));
    EXPECT_FALSE(fs::exists(dir / "c.wav"));  // the oldest closed one goes instead
    EXPECT_TRUE(fs::exists(dir / "d.wav"));
    write_file(dir / "e.wav", k400, std::chrono::hours(1));  // over the limit again
    rec->close();
    recorder.flush();  // closing runs retention: now the (old) closed recording is the oldest and goes
    EXPECT_FALSE(fs::exists(rec->path()));
    EXPECT_TRUE(fs::exists(dir / "d.wav"));
    EXPECT_TRUE(fs::exists(dir / "e.wav"));
}

TEST(Recording, TapResamplesWhatWasSentAndPairsItWithTheReceivedFrame) {
    fs::path dir = fresh_dir("tap");
    Recorder recorder(options_for(dir));
    std::string error;
    auto rec = recorder.open("tap-1", &error);
    ASSERT_TRUE(rec) << error;
    RecordingTap tap(rec);
    constexpr int kTicks = 100;
    for (int t = 0; t < kTicks; ++t) {
        AudioFrame received;
        auto caller = tone(440, kFrameSamples, static_cast<std::size_t>(t) * kFrameSamples);
        std::copy(caller.begin(), caller.end(), received.samples.begin());
        auto sent8k = tone(1000, 160, static_cast<std::size_t>(t) * 160, 8000, 8000);  // PCMU rate
        tap.on_tick(received, sent8k, 8000);
    }
    rec->close();
    recorder.flush();
    Wav w = parse_wav(rec->path());
    ASSERT_TRUE(w.valid) << w.why;
    ASSERT_EQ(w.left.size(), static_cast<std::size_t>(kTicks) * kFrameSamples);  // one frame per tick
    EXPECT_EQ(w.left, tone(440, static_cast<std::size_t>(kTicks) * kFrameSamples));
    // Right: the 8 kHz 1 kHz tone at 16 kHz (band-limited), not the caller's tone.
    std::vector<int16_t> right(w.right.begin() + 1600, w.right.end());  // past the resampler's start-up
    EXPECT_GT(power_at(right, 1000), 1000 * power_at(right, 440));
    EXPECT_GT(power_at(right, 1000), 0.1 * power_at(tone(1000, right.size(), 0, 8000), 1000));
}

// ---- the MediaSession tap, on real loopback sockets (ports 32300-32303: this binary's own range) ----

class CollectingTap final : public MediaTap {
public:
    void on_tick(const AudioFrame& received16k, std::span<const int16_t> out, int sent_rate) override {
        std::lock_guard lk(mu);
        ++ticks;
        if (out.size() != 160 || sent_rate != 8000) ++bad_sizes;
        sent.insert(sent.end(), out.begin(), out.end());
        received.insert(received.end(), received16k.samples.begin(), received16k.samples.end());
    }
    std::mutex mu;
    int ticks = 0;
    int bad_sizes = 0;
    std::vector<int16_t> sent, received;
};

class NullSink final : public MediaSink {
public:
    void on_audio(const AudioFrame&) override { ++frames; }
    void on_dtmf(char) override {}
    void on_media_timeout() override {}
    std::atomic<int> frames{0};
};

TEST(Recording, MediaSessionTapSeesExactlyWhatWasSentAndEveryReceivedFrame) {
    // The far end: a loopback UDP socket that receives our RTP and sends a PCMU tone back.
    int peer = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(peer, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(peer, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(peer, reinterpret_cast<sockaddr*>(&a), &len);
    const uint16_t peer_port = ntohs(a.sin_port);

    PortPool pool("127.0.0.1", 32300, 32303);
    std::string error;
    auto sockets = pool.acquire(&error);
    ASSERT_TRUE(sockets) << error;
    const uint16_t our_port = sockets->rtp_port();
    NullSink sink;
    CollectingTap tap;
    MediaSessionOptions mo;
    mo.timeout_s = 0;
    mo.log_tag = "call=tap";
    auto session = std::make_unique<MediaSession>(std::move(sockets), mo, sink);
    session->set_tap(&tap);
    StreamParams p;
    p.codec = CodecId::kPcmu;
    p.payload_type = 0;
    p.remote_address = "127.0.0.1";
    p.remote_port = peer_port;
    ASSERT_TRUE(session->start(p, &error)) << error;

    // What Parley says: a distinctive never-zero 8 kHz signal, 0.5 s.
    std::vector<int16_t> said(4000);
    for (std::size_t i = 0; i < said.size(); ++i) said[i] = static_cast<int16_t>(1000 + static_cast<int>(i % 500));
    std::this_thread::sleep_for(100ms);
    session->playout().push(said, 8000);

    // What the caller says: 0.5 s of 1 kHz PCMU, paced.
    auto enc = make_encoder(CodecId::kPcmu);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(our_port);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 25; ++i) {
        std::this_thread::sleep_until(t0 + i * 20ms);
        auto pcm = tone(1000, 160, static_cast<std::size_t>(i) * 160, 8000, 8000);
        std::vector<uint8_t> body(160);
        body.resize(enc->encode(pcm, body));
        RtpHeader h;
        h.payload_type = 0;
        h.sequence = static_cast<uint16_t>(100 + i);
        h.timestamp = static_cast<uint32_t>(1000 + i * 160);
        h.ssrc = 0x5151;
        h.marker = i == 0;
        std::array<uint8_t, kRtpMaxPacket> buf;
        std::size_t n = rtp_serialize(h, body, buf);
        ::sendto(peer, buf.data(), n, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    }
    std::this_thread::sleep_for(400ms);
    session->stop();
    ::close(peer);

    std::lock_guard lk(tap.mu);
    EXPECT_EQ(tap.bad_sizes, 0);
    EXPECT_EQ(tap.ticks, sink.frames.load());  // one tap call per delivered frame
    EXPECT_GE(tap.ticks, 40);
    // Parley's side: exactly the pushed samples, contiguous, zeros around them.
    auto first = std::find_if(tap.sent.begin(), tap.sent.end(), [](int16_t v) { return v != 0; });
    ASSERT_NE(first, tap.sent.end());
    const auto at = static_cast<std::size_t>(first - tap.sent.begin());
    ASSERT_GE(tap.sent.size(), at + said.size());
    EXPECT_TRUE(std::equal(said.begin(), said.end(), tap.sent.begin() + static_cast<std::ptrdiff_t>(at)));
    EXPECT_TRUE(std::all_of(tap.sent.begin() + static_cast<std::ptrdiff_t>(at + said.size()), tap.sent.end(),
                            [](int16_t v) { return v == 0; }));
    EXPECT_EQ(at % 160, 0u) << "audio starts on a packet boundary";
    // The caller's side: the tone arrived (decoded, 16 kHz).
    EXPECT_GT(power_at(tap.received, 1000), 1000 * power_at(tap.received, 440));
}

}  // namespace
}  // namespace parley::media
