// recording.h — call recordings: one stereo WAV per call (caller left, Parley right, 16 kHz, 16-bit).
//
// One Recorder per process owns ONE writer thread for every call's file; media threads never touch the
// disk. A call's media thread hands both sides of each 20 ms tick to Recording::write(), which only copies
// them into the recording's bounded queue (full: dropped and counted, never blocks). The writer thread
// appends the interleaved samples and rewrites the RIFF/data sizes in the header at least once a second and
// at close, so the file is a valid WAV the moment it is created (0 data bytes), while it grows, and after
// a SIGKILL (everything up to the last header update is readable; later samples are on disk too, just not
// counted in the header). Files are created with mode 0600 (they contain personal data).
//
// Retention also runs on the writer thread: at start, every `retention_interval` and after each close it
// deletes *.wav in the directory older than max_age_days (by mtime), then, while the total is over
// max_total_mb, the oldest first; a file still being written is never deleted. See docs/recordings.md.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/audio.h"
#include "media/media_session.h"
#include "media/resampler.h"

namespace parley {
struct RecordingConfig;
}

namespace parley::media {

struct RecorderOptions {
    std::string dir = "var/recordings";  // created (0700) when needed
    int max_age_days = 30;               // 0 = keep forever
    std::int64_t max_total_mb = 2048;    // 0 = no limit
    std::chrono::milliseconds retention_interval{std::chrono::minutes(10)};
    std::chrono::milliseconds header_interval{std::chrono::seconds(1)};  // header sizes rewritten this often
    std::chrono::milliseconds poll_interval{std::chrono::milliseconds(100)};  // writer drains queues this often
    int queue_ms = 5000;  // per recording: audio waiting for the writer thread; more is dropped (counted)

    static RecorderOptions from_config(const RecordingConfig& config);
};

// One call's WAV. Created by Recorder::open(); shared by the Call (which writes and closes it) and the
// Recorder's writer thread.
class Recording {
public:
    ~Recording();
    Recording(const Recording&) = delete;
    Recording& operator=(const Recording&) = delete;

    // Media thread, every 20 ms: both sides of one tick (equal length, normally kFrameSamples). Copies only.
    // After close() it does nothing.
    void write(std::span<const int16_t> caller16k, std::span<const int16_t> parley16k);
    // Call end (any thread, idempotent): no more writes; the writer thread flushes what is queued, finalizes
    // the header and closes the file at its next pass (within poll_interval; Recorder::flush() waits for
    // it). Does no I/O itself and never touches the Recorder, so it is safe even after the Recorder is gone.
    void close();

    const std::string& path() const { return path_; }
    const std::string& uid() const { return uid_; }
    std::uint64_t dropped_frames() const;  // stereo sample frames dropped because the queue was full
    std::uint64_t queued_frames() const;   // accepted by write() so far (written or waiting)
    bool closed() const;

private:
    friend class Recorder;
    Recording(std::string uid, std::string path, int fd, std::size_t capacity_samples);

    const std::string uid_;
    const std::string path_;
    const std::size_t capacity_;  // interleaved samples

    mutable std::mutex mu_;              // short: guards the queue and flags below
    std::vector<int16_t> queue_;         // interleaved L/R, reserved to capacity_
    std::uint64_t dropped_ = 0;
    std::uint64_t queued_ = 0;
    bool closing_ = false;

    // writer thread only
    int fd_ = -1;
    std::uint64_t data_bytes_ = 0;
    std::uint64_t header_bytes_ = 0;  // data size in the header on disk
    std::uint64_t dropped_logged_ = 0;
    std::chrono::steady_clock::time_point header_at_{};
    bool full_logged_ = false;
    bool write_failed_ = false;
    std::vector<int16_t> scratch_;
};

class Recorder {
public:
    explicit Recorder(RecorderOptions options);
    explicit Recorder(const RecordingConfig& config) : Recorder(RecorderOptions::from_config(config)) {}
    // Closes and finalizes every open recording, then stops the writer thread.
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    // Creates <dir>/<uid>.wav (dir created when missing) with a valid empty WAV header. nullptr and *error
    // when the uid is not a plain file name or the file cannot be created. Control thread; does a little
    // I/O (mkdir, open, one 44-byte write).
    std::shared_ptr<Recording> open(const std::string& uid, std::string* error);

    // Waits until everything queued so far is written, headers are up to date and closed recordings are
    // finalized (tests, shutdown).
    void flush();
    // Runs retention now on the writer thread and waits for it (tests; it also runs on its own schedule).
    void run_retention();

    const std::string& dir() const { return options_.dir; }
    std::size_t open_count() const;
    std::uint64_t deleted_count() const;  // files deleted by retention

private:
    friend class Recording;
    void run();
    bool drain(Recording& r, bool force_header, bool stopping);  // true when finalized
    void retention();
    void wake();

    const RecorderOptions options_;
    mutable std::mutex mu_;
    std::condition_variable cv_;       // writer wakes
    std::condition_variable done_cv_;  // flush/run_retention waiters
    std::vector<std::shared_ptr<Recording>> open_;
    std::uint64_t requested_ = 0;  // flush/retention requests
    std::uint64_t served_ = 0;
    bool retention_requested_ = false;
    bool stopping_ = false;
    std::uint64_t deleted_ = 0;
    std::thread thread_;
};

// The MediaTap that feeds a Recording: the caller's 16 kHz frame on the left; what was sent at the codec
// rate, resampled to 16 kHz (speexdsp), on the right. Lives as long as the media thread may call it.
class RecordingTap final : public MediaTap {
public:
    explicit RecordingTap(std::shared_ptr<Recording> recording) : recording_(std::move(recording)) {}
    void on_tick(const AudioFrame& received16k, std::span<const int16_t> sent, int sent_rate) override;
    const std::shared_ptr<Recording>& recording() const { return recording_; }

private:
    std::shared_ptr<Recording> recording_;
    std::unique_ptr<Resampler> resampler_;
    std::vector<int16_t> fifo_;  // 16 kHz Parley side waiting to be paired with a received frame
};

}  // namespace parley::media
