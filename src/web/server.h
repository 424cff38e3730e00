// server.h — Parley's HTTP server: REST API, server-sent events, /metrics, health checks and the dashboard.
//
// docs/api.md is the contract (routes, JSON shapes, errors). The server uses the cpp-httplib that llama.cpp
// vendors, listens on [http] listen (127.0.0.1:8088 by default), and runs its own threads (a small pool;
// each SSE client holds one while connected). Every /api route needs "Authorization: Bearer <token>" (or
// ?access_token=<token> for EventSource and <audio>, which cannot send headers); /metrics, /healthz,
// /readyz and the dashboard's static files do not. Handlers never block on a call: they read the store
// (its own read connection), ask the Control (which only queues requests) and publish nothing themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "metrics/metrics.h"
#include "store/store.h"

namespace parley::web {

// A call Parley has now (ringing or up), as the runtime sees it.
struct LiveCall {
    std::string uid;
    std::string direction;   // "inbound" | "outbound"
    std::string from, to, line, sip_call_id;
    std::string handler;     // e.g. "conversation"
    std::string state;       // "ringing" | "up"
    store::EpochMs started_at = 0;
    store::EpochMs answered_at = 0;
};

struct Readiness {
    bool models_loaded = false;  // the handler's engines are up (true for handlers without models)
    int lines_total = 0;
    int lines_registered = 0;
    bool ready() const { return models_loaded && lines_registered == lines_total; }
};

// Why a Control request failed: the HTTP status to answer and the message for {"error": ...}.
struct Failure {
    int status = 400;
    std::string message;
};

// What the server asks of the running Parley (implemented in apps/parley). Every method is thread-safe and
// returns promptly (requests are queued to the call manager; nothing waits for a call).
class Control {
public:
    virtual ~Control() = default;
    virtual std::vector<LiveCall> live_calls() = 0;
    // Places a call (POST /api/calls). The uid, or "" and *failure (400 for bad input such as an unknown line,
    // 503 when no call can be placed now).
    virtual std::string originate(const std::string& to, const std::string& line, const std::string& first_message,
                                  Failure* failure) = 0;
    // Hangs up a live call (DELETE /api/calls/{id}). false: no such live call.
    virtual bool hangup(const std::string& uid) = 0;
    // The effective configuration as JSON, secrets removed (docs/api.md "Configuration").
    virtual nlohmann::json config() = 0;
    // Applies and persists a partial configuration (PUT /api/config). On success returns
    // {"applied": [...keys], "restart_required": [...keys], "config": config()}. Otherwise nullopt and *failure:
    // 400 for invalid input (e.g. "agent.vad_threshold: expected 0.05..0.95, got 3"), 409 while another change
    // is being applied.
    virtual std::optional<nlohmann::json> update_config(const nlohmann::json& patch, Failure* failure) = 0;
    virtual Readiness readiness() = 0;
    // Every configured line with its registration state now ("unknown" before the first REGISTER answer).
    virtual std::vector<store::LineRow> lines() = 0;
};

struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8088;        // 0 = any free port (see Server::port())
    std::string token;                // required, >= 16 characters
    int threads = 16;                 // worker threads (SSE clients hold one each)
    int max_sse_clients = 8;          // more get 503
    int sse_heartbeat_s = 15;         // ": ping" comment when idle
};

class Server {
public:
    // Binds and starts serving. nullptr and *error when the address cannot be bound. `db` may be null
    // (no store: /api/calls answers 503). `registry` renders /metrics.
    static std::unique_ptr<Server> start(const ServerOptions& options, Control& control, store::Store* db,
                                         metrics::Registry& registry, std::string* error);
    virtual ~Server() = default;  // stops: closes SSE streams, joins every thread

    virtual std::uint16_t port() const = 0;
    // Sends an event to every SSE client (any thread; never blocks: each client has a bounded queue, a client
    // that falls behind is disconnected). `type`: call_started, call_answered, call_ended, turn, line_status,
    // config_changed. `data` is the JSON documented in docs/api.md.
    virtual void publish(const std::string& type, const nlohmann::json& data) = 0;
    virtual void stop() = 0;  // idempotent

protected:
    Server() = default;
};

// JSON for the API (docs/api.md), shared by the server and the runtime's events.
nlohmann::json call_json(const store::CallRow& c, bool live);
nlohmann::json live_call_json(const LiveCall& c);
nlohmann::json turn_json(const store::TurnRow& t);
nlohmann::json event_json(const store::EventRow& e);
nlohmann::json line_json(const store::LineRow& l);

}  // namespace parley::web
