// recording.cpp — see recording.h.
#include "media/recording.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "common/config.h"
#include "common/log.h"

namespace parley::media {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kChannels = 2;
constexpr int kBitsPerSample = 16;
constexpr std::size_t kHeaderBytes = 44;
// The RIFF size field is 32 bits: the data chunk can hold at most this much (about 18.6 hours at 64 kB/s).
constexpr std::uint64_t kMaxDataBytes = 0xFFFFFFFFull - 36 - 3;

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v);
    p[1] = static_cast<std::uint8_t>(v >> 8);
}
void put32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// A canonical 44-byte PCM WAV header: 16 kHz, 16-bit, stereo, `data_bytes` of samples.
std::array<std::uint8_t, kHeaderBytes> wav_header(std::uint32_t data_bytes) {
    std::array<std::uint8_t, kHeaderBytes> h{};
    std::memcpy(&h[0], "RIFF", 4);
    put32(&h[4], 36 + data_bytes);
    std::memcpy(&h[8], "WAVEfmt ", 8);
    put32(&h[16], 16);
    put16(&h[20], 1);  // PCM
    put16(&h[22], kChannels);
    put32(&h[24], kInternalRate);
    put32(&h[28], kInternalRate * kChannels * kBitsPerSample / 8);
    put16(&h[32], kChannels * kBitsPerSample / 8);
    put16(&h[34], kBitsPerSample);
    std::memcpy(&h[36], "data", 4);
    put32(&h[40], data_bytes);
    return h;
}

bool pwrite_all(int fd, const void* data, std::size_t n, off_t offset) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
        ssize_t w = ::pwrite(fd, p, n, offset);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        offset += w;
    }
    return true;
}

// Little-endian interleaved bytes of `samples` (the host is little-endian on every platform Parley runs on;
// this keeps it correct elsewhere too).
void to_le(std::vector<int16_t>& samples) {
    if constexpr (std::endian::native == std::endian::big) {
        for (auto& s : samples) {
            auto u = static_cast<std::uint16_t>(s);
            s = static_cast<int16_t>(static_cast<std::uint16_t>((u >> 8) | (u << 8)));
        }
    }
}

bool valid_uid(const std::string& uid) {
    if (uid.empty() || uid.size() > 128 || uid.front() == '.') return false;
    return std::all_of(uid.begin(), uid.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
               c == '.';
    });
}

}  // namespace

RecorderOptions RecorderOptions::from_config(const RecordingConfig& config) {
    RecorderOptions o;
    o.dir = config.dir;
    o.max_age_days = config.max_age_days;
    o.max_total_mb = config.max_total_mb;
    return o;
}

// ---- Recording -----------------------------------------------------------------------------------

Recording::Recording(std::string uid, std::string path, int fd, std::size_t capacity_samples)
    : uid_(std::move(uid)), path_(std::move(path)), capacity_(std::max<std::size_t>(capacity_samples, 2)), fd_(fd) {
    queue_.reserve(capacity_);
    scratch_.reserve(capacity_);
}

Recording::~Recording() {
    if (fd_ >= 0) ::close(fd_);  // normally closed (finalized) by the writer thread already
}

void Recording::write(std::span<const int16_t> caller16k, std::span<const int16_t> parley16k) {
    const std::size_t n = std::max(caller16k.size(), parley16k.size());
    std::lock_guard lk(mu_);
    if (closing_) return;
    if (queue_.size() + kChannels * n > capacity_) {
        dropped_ += n;  // reported by the writer thread: no I/O here
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        queue_.push_back(i < caller16k.size() ? caller16k[i] : 0);
        queue_.push_back(i < parley16k.size() ? parley16k[i] : 0);
    }
    queued_ += n;
}

void Recording::close() {
    std::lock_guard lk(mu_);
    closing_ = true;
}

std::uint64_t Recording::dropped_frames() const {
    std::lock_guard lk(mu_);
    return dropped_;
}

std::uint64_t Recording::queued_frames() const {
    std::lock_guard lk(mu_);
    return queued_;
}

bool Recording::closed() const {
    std::lock_guard lk(mu_);
    return closing_;
}

// ---- RecordingTap --------------------------------------------------------------------------------

void RecordingTap::on_tick(const AudioFrame& received16k, std::span<const int16_t> sent, int sent_rate) {
    if (sent_rate == kInternalRate) {
        fifo_.insert(fifo_.end(), sent.begin(), sent.end());
    } else if (sent_rate > 0) {
        if (!resampler_ || resampler_->in_rate() != sent_rate)
            resampler_ = std::make_unique<Resampler>(sent_rate, kInternalRate);
        resampler_->process(sent, fifo_);
    }
    std::array<int16_t, kFrameSamples> parley{};
    const std::size_t n = std::min<std::size_t>(fifo_.size(), kFrameSamples);
    std::copy_n(fifo_.begin(), n, parley.begin());
    fifo_.erase(fifo_.begin(), fifo_.begin() + static_cast<std::ptrdiff_t>(n));
    // The resampler hands out whole frames; anything beyond a frame of slack is stale (never grows).
    if (fifo_.size() > static_cast<std::size_t>(kFrameSamples))
        fifo_.erase(fifo_.begin(), fifo_.end() - kFrameSamples);
    recording_->write(received16k.samples, parley);
}

// ---- Recorder ------------------------------------------------------------------------------------

Recorder::Recorder(RecorderOptions options) : options_(std::move(options)) {
    thread_ = std::thread([this] { run(); });
}

Recorder::~Recorder() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

std::shared_ptr<Recording> Recorder::open(const std::string& uid, std::string* error) {
    std::string local;
    if (!error) error = &local;
    if (!valid_uid(uid)) {
        *error = "recording: not a valid call uid for a file name: \"" + uid + "\"";
        return nullptr;
    }
    std::error_code ec;
    const fs::path dir(options_.dir.empty() ? "." : options_.dir);
    if (!fs::is_directory(dir, ec)) {
        if (fs::create_directories(dir, ec)) {
            fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);  // private: personal data
            ec.clear();
        }
        if (ec || !fs::is_directory(dir)) {
            *error = "recording: cannot create directory " + dir.string() + ": " +
                     (ec ? ec.message() : std::string("not a directory"));
            return nullptr;
        }
    }
    const std::string path = (dir / (uid + ".wav")).string();
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "recording: cannot create " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    auto header = wav_header(0);
    if (!pwrite_all(fd, header.data(), header.size(), 0)) {
        *error = "recording: cannot write " + path + ": " + std::strerror(errno);
        ::close(fd);
        ::unlink(path.c_str());
        return nullptr;
    }
    const auto capacity = static_cast<std::size_t>(kInternalRate) * kChannels *
                          static_cast<std::size_t>(std::max(options_.queue_ms, kFrameMs)) / 1000;
    std::shared_ptr<Recording> r(new Recording(uid, path, fd, capacity));
    r->header_at_ = Clock::now();
    {
        std::lock_guard lk(mu_);
        open_.push_back(r);
    }
    PLOG_INFO("event=recording_started uid={} path={}", uid, path);
    return r;
}

void Recorder::flush() {
    std::unique_lock lk(mu_);
    const std::uint64_t target = ++requested_;
    cv_.notify_all();
    done_cv_.wait(lk, [&] { return served_ >= target; });
}

void Recorder::run_retention() {
    std::unique_lock lk(mu_);
    retention_requested_ = true;
    const std::uint64_t target = ++requested_;
    cv_.notify_all();
    done_cv_.wait(lk, [&] { return served_ >= target; });
}

std::size_t Recorder::open_count() const {
    std::lock_guard lk(mu_);
    return open_.size();
}

std::uint64_t Recorder::deleted_count() const {
    std::lock_guard lk(mu_);
    return deleted_;
}

void Recorder::run() {
    retention();
    auto next_retention = Clock::now() + options_.retention_interval;
    const auto poll = std::max(options_.poll_interval, std::chrono::milliseconds(1));
    for (;;) {
        std::vector<std::shared_ptr<Recording>> open;
        std::uint64_t target = 0;
        bool stopping = false, retention_now = false, forced = false;
        {
            std::unique_lock lk(mu_);
            cv_.wait_for(lk, poll, [&] { return stopping_ || requested_ > served_; });
            open = open_;
            target = requested_;
            stopping = stopping_;
            retention_now = retention_requested_;
            retention_requested_ = false;
            forced = requested_ > served_;  // a flush() is waiting: headers now
        }
        bool any_closed = false;
        std::vector<Recording*> finalized;
        for (const auto& r : open) {
            if (drain(*r, forced, stopping)) {
                finalized.push_back(r.get());
                any_closed = true;
            }
        }
        {
            std::lock_guard lk(mu_);
            std::erase_if(open_, [&](const std::shared_ptr<Recording>& r) {
                return std::find(finalized.begin(), finalized.end(), r.get()) != finalized.end();
            });
        }
        const auto now = Clock::now();
        if (!stopping && (any_closed || retention_now || now >= next_retention)) {
            retention();
            if (now >= next_retention) next_retention = now + options_.retention_interval;
        }
        {
            std::lock_guard lk(mu_);
            served_ = std::max(served_, target);
        }
        done_cv_.notify_all();
        if (stopping) return;
    }
}

bool Recorder::drain(Recording& r, bool force_header, bool stopping) {
    bool finalize = false;
    std::uint64_t dropped = 0;
    {
        std::lock_guard lk(r.mu_);
        if (stopping) r.closing_ = true;  // the Recorder is going away: no more writes
        finalize = r.closing_;
        r.queue_.swap(r.scratch_);  // both keep their reserved capacity: no allocation under the lock
        dropped = r.dropped_;
    }
    if (dropped != r.dropped_logged_) {
        PLOG_WARN("event=recording_queue_full uid={} dropped_frames={} total_dropped_frames={}", r.uid_,
                  dropped - r.dropped_logged_, dropped);
        r.dropped_logged_ = dropped;
    }
    if (!r.scratch_.empty() && r.fd_ >= 0 && !r.write_failed_) {
        std::size_t bytes = r.scratch_.size() * sizeof(int16_t);
        if (r.data_bytes_ + bytes > kMaxDataBytes) {
            bytes = static_cast<std::size_t>((kMaxDataBytes - r.data_bytes_) / 4 * 4);
            if (!r.full_logged_) {
                PLOG_WARN("event=recording_too_long uid={} path={} (WAV size limit reached; the rest is not recorded)",
                          r.uid_, r.path_);
                r.full_logged_ = true;
            }
        }
        to_le(r.scratch_);
        if (bytes > 0) {
            if (pwrite_all(r.fd_, r.scratch_.data(), bytes, static_cast<off_t>(kHeaderBytes + r.data_bytes_))) {
                r.data_bytes_ += bytes;
            } else {
                PLOG_WARN("event=recording_write_failed uid={} path={} error=\"{}\"", r.uid_, r.path_,
                          std::strerror(errno));
                r.write_failed_ = true;  // logged once; the header keeps what was written
            }
        }
    }
    r.scratch_.clear();
    const auto now = Clock::now();
    if (r.fd_ >= 0 && r.data_bytes_ != r.header_bytes_ &&
        (finalize || force_header || now - r.header_at_ >= options_.header_interval)) {
        auto header = wav_header(static_cast<std::uint32_t>(r.data_bytes_));
        // Only the two size fields change: RIFF size at 4, data size at 40.
        if (pwrite_all(r.fd_, &header[4], 4, 4) && pwrite_all(r.fd_, &header[40], 4, 40))
            r.header_bytes_ = r.data_bytes_;
        r.header_at_ = now;
    }
    if (!finalize) return false;
    if (r.fd_ >= 0) {
        ::close(r.fd_);
        r.fd_ = -1;
    }
    if (r.data_bytes_ == 0) {
        // A call that was never answered (or had no media): no recording rather than an empty file.
        std::error_code ec;
        std::filesystem::remove(r.path_, ec);
        PLOG_INFO("event=recording_discarded uid={} reason=no_audio", r.uid_);
        return true;
    }
    PLOG_INFO("event=recording_closed uid={} path={} seconds={:.1f} bytes={} dropped_frames={}", r.uid_, r.path_,
              static_cast<double>(r.data_bytes_) / (kInternalRate * kChannels * 2), kHeaderBytes + r.data_bytes_,
              dropped);
    return true;
}

void Recorder::retention() {
    if (options_.max_age_days <= 0 && options_.max_total_mb <= 0) return;
    std::set<std::string> open_names;
    {
        std::lock_guard lk(mu_);
        for (const auto& r : open_) open_names.insert(fs::path(r->path()).filename().string());
    }
    struct File {
        fs::path path;
        fs::file_time_type mtime;
        std::uintmax_t size;
        bool open;
    };
    std::vector<File> files;
    std::error_code ec;
    const fs::path dir(options_.dir.empty() ? "." : options_.dir);
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code fe;
        if (!it->is_regular_file(fe) || it->path().extension() != ".wav") continue;
        File f{it->path(), it->last_write_time(fe), 0, false};
        if (fe) continue;
        f.size = it->file_size(fe);
        if (fe) continue;
        f.open = open_names.count(it->path().filename().string()) > 0;
        files.push_back(std::move(f));
    }
    const auto now = fs::file_time_type::clock::now();
    auto remove = [&](const File& f, const char* reason) {
        std::error_code re;
        if (!fs::remove(f.path, re)) {
            if (re) PLOG_WARN("event=recording_delete_failed path={} error=\"{}\"", f.path.string(), re.message());
            return false;
        }
        const double age_days = std::chrono::duration<double>(now - f.mtime).count() / 86400.0;
        PLOG_INFO("event=recording_deleted path={} reason={} age_days={:.1f} bytes={}", f.path.string(), reason,
                  age_days, f.size);
        std::lock_guard lk(mu_);
        ++deleted_;
        return true;
    };
    std::vector<File> kept;
    if (options_.max_age_days > 0) {
        const auto cutoff = now - std::chrono::hours(24) * options_.max_age_days;
        for (auto& f : files) {
            if (!f.open && f.mtime < cutoff && remove(f, "age")) continue;
            kept.push_back(std::move(f));
        }
    } else {
        kept = std::move(files);
    }
    if (options_.max_total_mb > 0) {
        const auto limit = static_cast<std::uintmax_t>(options_.max_total_mb) * 1024 * 1024;
        std::uintmax_t total = 0;
        for (const auto& f : kept) total += f.size;
        std::sort(kept.begin(), kept.end(), [](const File& a, const File& b) { return a.mtime < b.mtime; });
        for (const auto& f : kept) {
            if (total <= limit) break;
            if (f.open) continue;
            if (remove(f, "size")) total -= f.size;
        }
    }
}

}  // namespace parley::media
