// ops.h — what operations see of the running Parley: the store, metrics, live events and the API's view of
// live calls. One Ops object observes every call (CallObserver) and every turn (TurnObserver) and fans each
// out: the store (enqueue only), the metrics registry (short lock), the HTTP server's SSE clients (bounded
// queues) and the table of live calls. Nothing here waits for the disk or the network.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/conversation.h"
#include "call/call_manager.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "web/server.h"

namespace parley::app {

class Ops final : public call::CallObserver, public agent::TurnObserver {
public:
    // `db` may be null (no store). `next`: another observer told after (parley dial's watcher).
    Ops(store::Store* db, std::string handler, metrics::Registry& registry, call::CallObserver* next);

    void set_server(web::Server* server) { server_.store(server); }
    void set_lines(const std::vector<LineConfig>& lines);  // the configured lines (for status "unknown")

    // call::CallObserver (control thread)
    void on_call_started(const call::CallInfo& info) override;
    void on_call_answered(const call::CallInfo& info) override;
    void on_call_ended(const call::CallSummary& s) override;
    void on_line_state(const sip::LineStatus& status) override;
    // agent::TurnObserver (a call's turn thread)
    void on_turn(const agent::TurnRecord& t) override;

    // Any thread.
    std::vector<web::LiveCall> live_calls();
    std::optional<call::CallId> live_call_id(const std::string& uid);
    std::pair<int, int> lines_registered();  // registered, total
    std::vector<store::LineRow> lines();      // every configured line, by name, with its state now
    void publish(const std::string& type, const nlohmann::json& data);

private:
    store::CallRow row_of(const call::CallInfo& info) const;
    web::LiveCall live_of(const call::CallInfo& info) const;

    store::Store* db_;
    std::string handler_;
    metrics::Registry& registry_;
    call::CallObserver* next_;
    std::atomic<web::Server*> server_{nullptr};

    std::mutex mu_;
    std::unordered_map<call::CallId, web::LiveCall> live_;      // every call from on_call_started to on_call_ended
    std::map<std::string, store::LineRow> lines_;               // by name: configured, state now
};

// "completed", "missed", "failed" or "transferred" (parley_calls_total's outcome).
std::string call_outcome(const call::CallSummary& s);

}  // namespace parley::app
