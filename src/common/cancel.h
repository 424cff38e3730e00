// cancel.h — one cancellation token per conversational turn (barge-in, hangup).
//
// Engines poll it between units of work (a decode step, a sentence, an HTTP chunk) and stop within one
// unit. Copies share state; cancel() is thread-safe and idempotent.
#pragma once

#include <atomic>
#include <memory>

namespace parley {

class CancelToken {
public:
    CancelToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
    void cancel() const { flag_->store(true, std::memory_order_release); }
    bool cancelled() const { return flag_->load(std::memory_order_acquire); }

private:
    std::shared_ptr<std::atomic<bool>> flag_;
};

}  // namespace parley
