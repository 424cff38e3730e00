#include "media/playout.h"

#include <algorithm>
#include <vector>

namespace parley::media {

Playout::Playout(int codec_rate) : codec_rate_(codec_rate) {}

void Playout::push(std::span<const int16_t> pcm, int sample_rate) {
    if (pcm.empty() || sample_rate <= 0) return;
    std::vector<int16_t> converted;
    std::span<const int16_t> out = pcm;
    if (sample_rate != codec_rate_) {
        std::lock_guard lk(producer_mu_);
        auto& rs = resamplers_[sample_rate];
        if (!rs) rs = std::make_unique<Resampler>(sample_rate, codec_rate_);
        converted.reserve(pcm.size() * static_cast<size_t>(codec_rate_) / static_cast<size_t>(sample_rate) + 64);
        rs->process(pcm, converted);
        out = converted;
    }
    std::lock_guard lk(queue_mu_);
    queue_.insert(queue_.end(), out.begin(), out.end());
    pushed_samples_ += out.size();
}

int Playout::flush() {
    size_t dropped;
    {
        std::lock_guard lk(queue_mu_);
        dropped = queue_.size();
        queue_.clear();
        pushed_samples_ = played_samples_;
        if (mark_pos_ > pushed_samples_) mark_pos_ = pushed_samples_;
    }
    {
        std::lock_guard lk(producer_mu_);
        for (auto& [rate, rs] : resamplers_) rs->reset();
    }
    return static_cast<int>(dropped * 1000 / static_cast<size_t>(codec_rate_));
}

size_t Playout::pop(std::span<int16_t> out) {
    std::lock_guard lk(queue_mu_);
    size_t n = std::min(out.size(), queue_.size());
    std::copy_n(queue_.begin(), n, out.begin());
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    if (mark_armed_ && n > 0 && played_samples_ + n > mark_pos_) {
        mark_armed_ = false;
        mark_time_ = std::chrono::steady_clock::now();
    }
    played_samples_ += n;
    if (reference_on_) {
        reference_.insert(reference_.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
        reference_.insert(reference_.end(), out.size() - n, 0);
        const size_t cap = static_cast<size_t>(codec_rate_);
        if (reference_.size() > cap)
            reference_.erase(reference_.begin(), reference_.begin() + static_cast<std::ptrdiff_t>(reference_.size() - cap));
    }
    return n;
}

void Playout::mark() {
    std::lock_guard lk(queue_mu_);
    mark_armed_ = true;
    mark_pos_ = pushed_samples_;
    mark_time_.reset();
}

std::optional<std::chrono::steady_clock::time_point> Playout::take_mark_time() {
    std::lock_guard lk(queue_mu_);
    auto t = mark_time_;
    mark_time_.reset();
    return t;
}

void Playout::enable_reference() {
    std::lock_guard lk(queue_mu_);
    reference_on_ = true;
}

void Playout::take_reference(std::vector<int16_t>& out) {
    std::lock_guard lk(queue_mu_);
    out.insert(out.end(), reference_.begin(), reference_.end());
    reference_.clear();
}

int Playout::queued_ms() const {
    std::lock_guard lk(queue_mu_);
    return static_cast<int>(queue_.size() * 1000 / static_cast<size_t>(codec_rate_));
}

uint64_t Playout::played_ms() const {
    std::lock_guard lk(queue_mu_);
    return played_samples_ * 1000 / static_cast<uint64_t>(codec_rate_);
}

}  // namespace parley::media
