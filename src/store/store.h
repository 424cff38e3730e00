// store.h — Parley's call/turn store: one SQLite database (WAL) written by a dedicated store thread.
//
// Writers (SIP, media and turn threads) only enqueue: every writer call takes a short mutex, appends to a
// bounded queue and returns; nothing waits for the disk. When the queue is full the item is dropped, counted
// (dropped()) and logged by the store thread. The store thread commits what is queued in one transaction per
// batch as it arrives, so a completed turn is durable (against a process crash / kill -9) once the store thread
// has committed it; flush() waits for that.
//
// Calls are identified by `uid`, a text id given by the caller that is unique across restarts (Parley's CallId
// is only unique per process), e.g. "<start-epoch-ms>-<callid>"; it links SIP, media, store and logs.
// Times are milliseconds since the Unix epoch (0 = unknown, stored as NULL). Timings are milliseconds as
// doubles (negative = unknown, stored as NULL). No secrets are ever stored (there is no password column).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parley::store {

using EpochMs = std::int64_t;  // milliseconds since the Unix epoch; 0 = unknown

EpochMs to_epoch_ms(std::chrono::system_clock::time_point t);
EpochMs now_ms();

struct CallRow {
    std::string uid;          // unique across restarts, e.g. "1764030654123-7"
    std::string direction;    // "inbound" | "outbound"
    std::string from_uri;
    std::string to_uri;
    std::string sip_call_id;
    std::string line;         // line name (lines.name), "" when none
    std::string handler;      // call handler name, e.g. "conversation"
    EpochMs started_at = 0;
    EpochMs answered_at = 0;  // read side only (call_answered() sets it)
    EpochMs ended_at = 0;     // read side only (call_ended() sets it)
    std::string end_reason;   // read side only
    std::string recording;    // path of the call's WAV, "" = none
    int turn_count = 0;       // read side only
};

// GET /api/calls: which calls, newest first.
struct CallQuery {
    int limit = 50;
    int offset = 0;
    std::string q;           // substring (case-insensitive) of uid, from/to, SIP Call-ID, line, handler, end
                             // reason, or any of the call's turn texts
    std::string direction;   // "" | "inbound" | "outbound"
    std::string line;        // "" or an exact line name
    EpochMs since = 0;       // started_at >= since (0 = no bound)
    EpochMs until = 0;       // started_at < until (0 = no bound)
    std::string status;      // "" | "open" (not ended) | "ended" | "answered" | "missed" (ended, never answered)
};

struct CallPage {
    std::vector<CallRow> calls;
    std::int64_t total = 0;  // calls matching the query, all pages
};

// One point of the dashboard's latency chart: a turn's voice-to-voice time (first_rtp_ms).
struct LatencyPoint {
    std::string uid;
    int idx = 0;
    EpochMs at = 0;          // the caller's speech end
    double voice_to_voice_ms = -1;
    double overhead_ms = -1;
};

struct TurnRow {
    int idx = 0;                     // 1, 2, … within the call
    std::string trigger;             // "speech", "dtmf", "silence", "time_limit"
    std::string user_text;
    std::string reply_text;
    bool interrupted = false;
    bool early_end = false;
    std::vector<std::string> tools;  // "name(arguments)"; stored as a JSON array
    // Timings in ms after the end of the caller's speech; negative = unknown (NULL).
    double eot_ms = -1;
    double stt_final_ms = -1;
    double stt_compute_ms = -1;
    double llm_first_token_ms = -1;
    double first_sentence_ms = -1;
    double tts_first_audio_ms = -1;
    double first_rtp_ms = -1;
    double overhead_ms = -1;
    EpochMs speech_end_at = 0;
};

struct EventRow {
    EpochMs at = 0;
    std::string kind;
    std::string detail;
};

struct LineRow {
    std::string name;
    std::string registrar;
    std::string user;    // SIP user name; never the password
    std::string status;  // e.g. "registered", "failed: 403"
    EpochMs updated_at = 0;
};

struct CallDetail {
    CallRow call;
    std::vector<TurnRow> turns;    // by idx
    std::vector<EventRow> events;  // by time
};

// One schema step: `sql` runs in one transaction together with recording `version` in schema_version.
// Versions must be increasing; a database is brought from its version to the last one, in order.
struct Migration {
    int version = 0;
    std::string sql;
};

// Parley's migrations (version 1 = lines, calls, turns, events). Add version 2 at the end, never edit one
// that has shipped.
const std::vector<Migration>& default_migrations();

struct Options {
    std::size_t queue_capacity = 4096;  // items waiting for the store thread; more are dropped (counted)
    int busy_timeout_ms = 5000;
    std::vector<Migration> migrations;  // empty: default_migrations() (tests inject their own)
};

class Store {
public:
    // nullptr and *error when the file cannot be opened/created, is not a SQLite database, has a newer schema
    // version than `migrations` knows, or a migration fails (it is rolled back). Never throws.
    static std::unique_ptr<Store> open(const std::string& path, std::string* error, Options options = {});

    virtual ~Store() = default;  // commits everything queued, then stops the store thread
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // --- write side: enqueue only, never block on I/O; safe from any thread ---
    // Each returns true when queued, false when the queue was full and the item was dropped (counted, logged).
    virtual bool call_started(CallRow call) = 0;
    virtual bool call_answered(std::string uid, EpochMs at) = 0;
    virtual bool call_ended(std::string uid, EpochMs at, std::string reason) = 0;
    virtual bool turn(std::string uid, TurnRow turn) = 0;  // uid of a started call
    virtual bool event(std::string uid, std::string kind, std::string detail, EpochMs at = now_ms()) = 0;  // uid "" = not about a call
    virtual bool line_status(LineRow line) = 0;  // insert or update by name

    // Waits until everything queued before this call is committed (a write that fails, e.g. a turn for an unknown
    // uid, is logged and counts as done).
    virtual void flush() = 0;
    virtual std::uint64_t dropped() const = 0;

    // --- read side: safe from any thread, does not wait for the store thread ---
    // Each read leases a connection from a small pool (at most 4 kept idle) and runs its statements on it with no
    // lock held, so reads run side by side and a slow one (a transcript search) does not delay the others. When no
    // connection can be opened the read logs event=store_read_failed and returns what a failed statement gives:
    // empty / nullopt / -1.
    virtual CallPage query_calls(const CallQuery& query) = 0;  // page and total from one snapshot
    // Turns with a voice-to-voice time whose speech ended at or after `since`, oldest first, at most `limit`
    // (the newest ones when there are more).
    virtual std::vector<LatencyPoint> latency(EpochMs since, int limit) = 0;
    virtual std::optional<CallDetail> get_call(const std::string& uid) = 0;  // one snapshot
    virtual std::vector<LineRow> lines() = 0;
    virtual int schema_version() = 0;           // -1 when it cannot be read
    virtual std::string schema_sql() = 0;       // every CREATE statement in the database
    virtual std::string integrity_check() = 0;  // "ok" when healthy

protected:
    Store() = default;
};

}  // namespace parley::store
