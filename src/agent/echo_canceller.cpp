// echo_canceller.cpp — EchoCanceller over webrtc::AudioProcessing (libwebrtc-audio-processing 0.3).
//
// Settings for a phone line (docs/echo-and-vad.md has the measurements):
//   - AEC (the full AEC, not AECM) with DelayAgnostic: the delay between what we send and its echo is
//     unknown and changes with the caller's jitter buffer, so the AEC estimates it from the signals
//     instead of trusting set_stream_delay_ms() (which it still requires: we report 0);
//   - ExtendedFilter: a longer adaptive filter (128 ms) and a more conservative delay tracker;
//   - our own coarse delay estimate (DelayEstimator below) holding the reverse stream back, because the
//     APM alone cancels only echoes that lag it by up to ~100 ms for the first 15 s of a call;
//   - high-pass filter: removes DC and hum below ~80 Hz that would otherwise disturb the adaptation;
//   - no AGC (neither GainControl nor ExperimentalAgc): it would amplify residual echo and line noise
//     into what Silero VAD sees as speech;
//   - noise suppression off unless asked for (Options).
// Drift compensation is off: both streams run from the same media clock.
#include "agent/echo_canceller.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include "common/log.h"

namespace parley::agent {

namespace {

constexpr int kRate = 16000;
constexpr size_t kChunk = 160;  // 10 ms at 16 kHz: the only frame size the APM accepts

void prepare(webrtc::AudioFrame& f) {
    f.sample_rate_hz_ = kRate;
    f.num_channels_ = 1;
    f.samples_per_channel_ = kChunk;
}

// Coarse echo delay: normalized cross-correlation of the two streams' 2 ms log-energy envelopes, over
// the last 0.5–2 s, at lags 0–400 ms. Envelopes survive what a phone line does to the waveform (codecs,
// band limits, phase) and cost ~200 k multiply-adds per estimate, made every 250 ms.
class DelayEstimator {
public:
    static constexpr size_t kBlock = 32;                        // 2 ms
    static constexpr int kBlockUs = 2000;
    static constexpr size_t kMaxLag = 200;                      // 400 ms
    static constexpr size_t kMinWindow = 250, kMaxWindow = 1000;  // 0.5 s .. 2 s of near blocks
    static constexpr size_t kEvery = 125;                       // estimate every 250 ms
    static constexpr size_t kCap = 2048;                        // ring size (> kMaxWindow + kMaxLag)
    static constexpr float kMinCorrelation = 0.45f;

    DelayEstimator() : far_env_(kCap, kFloorLog), near_env_(kCap, kFloorLog) {}

    void far(std::span<const int16_t> pcm) { accumulate(pcm, far_acc_, far_acc_n_, far_env_, far_blocks_); }
    void near(std::span<const int16_t> pcm) { accumulate(pcm, near_acc_, near_acc_n_, near_env_, near_blocks_); }

    // A new estimate (ms) when one is due and confident, else -1.
    int poll() {
        if (near_blocks_ < kMinWindow || near_blocks_ - last_estimate_at_ < kEvery) return -1;
        last_estimate_at_ = near_blocks_;
        const size_t w = std::min(near_blocks_, kMaxWindow);
        const int64_t n0 = static_cast<int64_t>(near_blocks_) - static_cast<int64_t>(w);  // first near block
        // Only worth it while we were talking in (most of) the window: at least 200 ms of far-end speech.
        size_t active = 0;
        for (size_t i = 0; i < w; ++i) active += far_at(n0 + static_cast<int64_t>(i)) > kActiveLog;
        if (active < 100) return -1;

        double sy = 0, syy = 0;
        for (size_t i = 0; i < w; ++i) {
            const double y = near_at(n0 + static_cast<int64_t>(i));
            sy += y, syy += y * y;
        }
        const double vy = syy - sy * sy / static_cast<double>(w);
        if (vy <= 1e-9) return -1;
        double best = -1;
        size_t best_lag = 0;
        for (size_t lag = 0; lag <= kMaxLag; ++lag) {
            double sx = 0, sxx = 0, sxy = 0;
            const int64_t f0 = n0 - static_cast<int64_t>(lag);
            for (size_t i = 0; i < w; ++i) {
                const double x = far_at(f0 + static_cast<int64_t>(i)), y = near_at(n0 + static_cast<int64_t>(i));
                sx += x, sxx += x * x, sxy += x * y;
            }
            const double vx = sxx - sx * sx / static_cast<double>(w);
            if (vx <= 1e-9) continue;
            const double r = (sxy - sx * sy / static_cast<double>(w)) / std::sqrt(vx * vy);
            if (r > best) best = r, best_lag = lag;
        }
        last_correlation_ = static_cast<float>(best);
        if (best < kMinCorrelation) return -1;
        return static_cast<int>(best_lag) * kBlockUs / 1000;
    }

    float last_correlation() const { return last_correlation_; }

private:
    static constexpr float kFloorLog = 2.0f;   // log10 of mean power 100 (|x| ~ 10, about -70 dBFS)
    static constexpr float kActiveLog = 4.0f;  // log10 of mean power 10^4 (about -50 dBFS)

    static void accumulate(std::span<const int16_t> pcm, double& acc, size_t& acc_n, std::vector<float>& env,
                           size_t& blocks) {
        for (int16_t s : pcm) {
            acc += static_cast<double>(s) * s;
            if (++acc_n == kBlock) {
                env[blocks % kCap] = static_cast<float>(std::log10(acc / kBlock + 100.0));
                ++blocks;
                acc = 0;
                acc_n = 0;
            }
        }
    }
    float far_at(int64_t block) const {
        if (block < 0 || block >= static_cast<int64_t>(far_blocks_) ||
            block + static_cast<int64_t>(kCap) <= static_cast<int64_t>(far_blocks_))
            return kFloorLog;
        return far_env_[static_cast<size_t>(block) % kCap];
    }
    float near_at(int64_t block) const {
        return block < 0 ? kFloorLog : near_env_[static_cast<size_t>(block) % kCap];
    }

    std::vector<float> far_env_, near_env_;
    double far_acc_ = 0, near_acc_ = 0;
    size_t far_acc_n_ = 0, near_acc_n_ = 0;
    size_t far_blocks_ = 0, near_blocks_ = 0;
    size_t last_estimate_at_ = 0;
    float last_correlation_ = 0;
};

std::unique_ptr<webrtc::AudioProcessing> make_apm(const EchoCanceller::Options& options, std::string* error) {
    auto fail = [error](const char* what) {
        if (error) *error = what;
        return nullptr;
    };
    webrtc::Config config;
    config.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(true));
    config.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(true));
    config.Set<webrtc::ExperimentalAgc>(new webrtc::ExperimentalAgc(false));  // its default is "enabled"
    std::unique_ptr<webrtc::AudioProcessing> apm(webrtc::AudioProcessing::Create(config));
    if (!apm) return fail("webrtc::AudioProcessing::Create failed");

    const webrtc::ProcessingConfig stream_config = {{webrtc::StreamConfig(kRate, 1), webrtc::StreamConfig(kRate, 1),
                                                     webrtc::StreamConfig(kRate, 1), webrtc::StreamConfig(kRate, 1)}};
    if (apm->Initialize(stream_config) != webrtc::AudioProcessing::kNoError) return fail("Initialize failed");

    static constexpr webrtc::EchoCancellation::SuppressionLevel kLevels[] = {
        webrtc::EchoCancellation::kLowSuppression, webrtc::EchoCancellation::kModerateSuppression,
        webrtc::EchoCancellation::kHighSuppression};
    webrtc::EchoCancellation* aec = apm->echo_cancellation();
    if (aec->enable_drift_compensation(false) != 0 || aec->set_suppression_level(kLevels[options.suppression]) != 0 ||
        aec->enable_metrics(true) != 0 || aec->enable_delay_logging(true) != 0 || aec->Enable(true) != 0)
        return fail("could not enable the AEC");
    if (apm->high_pass_filter()->Enable(true) != 0) return fail("could not enable the high-pass filter");
    if (apm->gain_control()->Enable(false) != 0) return fail("could not disable AGC");
    if (options.noise_suppression) {
        if (apm->noise_suppression()->set_level(webrtc::NoiseSuppression::kModerate) != 0 ||
            apm->noise_suppression()->Enable(true) != 0)
            return fail("could not enable noise suppression");
    }
    return apm;
}

class WebRtcEchoCanceller final : public EchoCanceller {
public:
    WebRtcEchoCanceller(const Options& options, std::unique_ptr<webrtc::AudioProcessing> apm)
        : options_(options), apm_(std::move(apm)), history_(kHistory, 0) {
        prepare(far_);
        prepare(near_);
    }

    void far_end(std::span<const int16_t> pcm) override {
        for (int16_t s : pcm) history_[static_cast<size_t>(far_total_++ % kHistory)] = s;
        estimator_.far(pcm);
        feed_reverse();
    }

    void process(std::span<int16_t> near) override {
        const size_t whole = near.size() / kChunk * kChunk;
        estimator_.near(near.first(whole));
        realign();
        for (size_t i = 0; i < whole; i += kChunk) {
            std::copy_n(near.data() + i, kChunk, near_.data_);
            prepare(near_);
            // Required whenever the AEC is on; with DelayAgnostic the AEC finds the remaining delay itself.
            apm_->set_stream_delay_ms(0);
            const int rc = apm_->ProcessStream(&near_);
            if (rc != webrtc::AudioProcessing::kNoError) {
                if (!process_failed_) PLOG_WARN("event=aec_process_failed rc={}", rc);
                process_failed_ = true;
                continue;  // leave this chunk as it was
            }
            std::copy_n(near_.data_, kChunk, near.data() + i);
            echo_likely_ = apm_->echo_cancellation()->stream_has_echo();
        }
    }

    bool echo_likely() const override { return echo_likely_; }

    int delay_ms() override {
        int median = -1, std_dev = -1;
        float poor = 0;
        if (apm_->echo_cancellation()->GetDelayMetrics(&median, &std_dev, &poor) != webrtc::AudioProcessing::kNoError ||
            median < 0)
            return estimate_ms_;
        return median + static_cast<int>(pre_delay_ * 1000 / kRate);
    }

    int erle_db() override {
        webrtc::EchoCancellation::Metrics m{};
        if (apm_->echo_cancellation()->GetMetrics(&m) != webrtc::AudioProcessing::kNoError) return 0;
        // The APM reports -100 for "not yet measured".
        return m.echo_return_loss_enhancement.average <= -100 ? 0 : m.echo_return_loss_enhancement.average;
    }

private:
    // The APM converges fast when the echo lags its reverse stream by 0–100 ms, but the delay-agnostic
    // mode only starts moving its far-end buffer after 15 s of audio (kDelayCorrectionStart), so on a
    // 250 ms line it would pass the echo through for the first 15 s of the call. We therefore hold the
    // reverse stream back by `pre_delay_` ourselves, chosen from our own estimate so that the echo lags
    // by about kTargetLagMs, and let the APM (and, later, its own delay tracking) do the rest.
    static constexpr int64_t kHistory = kRate;  // 1 s of far end: more than the longest pre-delay
    static constexpr int kTargetLagMs = 40;
    static constexpr int kGoodLagMinMs = 10, kGoodLagMaxMs = 100;

    void feed_reverse() {
        while (far_total_ - pre_delay_ - fed_ >= static_cast<int64_t>(kChunk)) {
            for (size_t k = 0; k < kChunk; ++k) {
                const int64_t at = fed_ + static_cast<int64_t>(k);
                far_.data_[k] = at < 0 ? 0 : history_[static_cast<size_t>(at % kHistory)];
            }
            fed_ += static_cast<int64_t>(kChunk);
            prepare(far_);
            const int rc = apm_->ProcessReverseStream(&far_);
            if (rc != webrtc::AudioProcessing::kNoError && !reverse_failed_) {
                PLOG_WARN("event=aec_reverse_failed rc={}", rc);
                reverse_failed_ = true;
            }
        }
    }

    void realign() {
        const int est = estimator_.poll();
        if (est < 0) return;
        estimate_ms_ = est;
        const int lag = est - static_cast<int>(pre_delay_ * 1000 / kRate);
        if (lag >= kGoodLagMinMs && lag <= kGoodLagMaxMs) return;  // the APM handles this by itself
        // Needs a second estimate that agrees before moving (one bad correlation must not reset the AEC).
        if (pending_ms_ < 0 || std::abs(pending_ms_ - est) > 8) {
            pending_ms_ = est;
            if (aligned_once_) return;  // the first move is made at once: echo passes through until then
        }
        pending_ms_ = -1;
        std::string error;
        auto apm = make_apm(options_, &error);
        if (!apm) {
            PLOG_WARN("event=aec_realign_failed error=\"{}\"", error);
            return;
        }
        const int64_t pre = static_cast<int64_t>(std::max(0, est - kTargetLagMs)) * kRate / 1000;
        PLOG_DEBUG("event=aec_realign estimate_ms={} pre_delay_ms={} correlation={:.2f}", est, pre * 1000 / kRate,
                   estimator_.last_correlation());
        apm_ = std::move(apm);
        pre_delay_ = pre / static_cast<int64_t>(kChunk) * static_cast<int64_t>(kChunk);
        fed_ = far_total_ - pre_delay_;
        fed_ -= ((fed_ % static_cast<int64_t>(kChunk)) + static_cast<int64_t>(kChunk)) % static_cast<int64_t>(kChunk);
        aligned_once_ = true;
        feed_reverse();
    }

    Options options_;
    std::unique_ptr<webrtc::AudioProcessing> apm_;
    webrtc::AudioFrame far_;
    webrtc::AudioFrame near_;
    std::vector<int16_t> history_;  // the last kHistory far-end samples, indexed by absolute position
    int64_t far_total_ = 0;         // far-end samples received
    int64_t fed_ = 0;               // far-end samples handed to the APM (its reverse stream position)
    int64_t pre_delay_ = 0;         // samples the reverse stream is held back
    DelayEstimator estimator_;
    int estimate_ms_ = -1;
    int pending_ms_ = -1;
    bool aligned_once_ = false;
    bool echo_likely_ = false;
    bool process_failed_ = false;
    bool reverse_failed_ = false;
};

}  // namespace

std::unique_ptr<EchoCanceller> EchoCanceller::create(const Options& options, std::string* error) {
    std::string why = "suppression must be 0, 1 or 2";
    std::unique_ptr<webrtc::AudioProcessing> apm;
    if (options.suppression >= 0 && options.suppression <= 2) apm = make_apm(options, &why);
    if (!apm) {
        if (error) *error = "echo canceller: " + why;
        PLOG_ERROR("event=aec_create_failed error=\"{}\"", why);
        return nullptr;
    }
    return std::make_unique<WebRtcEchoCanceller>(options, std::move(apm));
}

}  // namespace parley::agent
