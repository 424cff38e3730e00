// store.cpp — see store.h. SQLite C API; one write connection owned by the store thread, a small pool of read
// connections for the read side (WAL lets readers and the writer run side by side). No mutex is held while a
// statement runs: the pool's mutex only guards its vector of idle connections.
#include "store/store.h"

#include "common/log.h"

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <variant>

namespace parley::store {

EpochMs to_epoch_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

EpochMs now_ms() { return to_epoch_ms(std::chrono::system_clock::now()); }

const std::vector<Migration>& default_migrations() {
    static const std::vector<Migration> migrations = {
        {1, R"sql(
CREATE TABLE lines (
    name        TEXT PRIMARY KEY,
    registrar   TEXT NOT NULL DEFAULT '',
    user        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL
);
CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    uid         TEXT NOT NULL UNIQUE,
    direction   TEXT NOT NULL DEFAULT '',
    from_uri    TEXT NOT NULL DEFAULT '',
    to_uri      TEXT NOT NULL DEFAULT '',
    sip_call_id TEXT NOT NULL DEFAULT '',
    line        TEXT NOT NULL DEFAULT '',
    handler     TEXT NOT NULL DEFAULT '',
    started_at  INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at    INTEGER,
    end_reason  TEXT
);
CREATE INDEX calls_started_at ON calls(started_at);
CREATE TABLE turns (
    id                 INTEGER PRIMARY KEY,
    call_id            INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    idx                INTEGER NOT NULL,
    "trigger"          TEXT NOT NULL DEFAULT '',
    user_text          TEXT NOT NULL DEFAULT '',
    reply_text         TEXT NOT NULL DEFAULT '',
    interrupted        INTEGER NOT NULL DEFAULT 0,
    early_end          INTEGER NOT NULL DEFAULT 0,
    tools              TEXT NOT NULL DEFAULT '[]',
    eot_ms             REAL,
    stt_final_ms       REAL,
    stt_compute_ms     REAL,
    llm_first_token_ms REAL,
    first_sentence_ms  REAL,
    tts_first_audio_ms REAL,
    first_rtp_ms       REAL,
    overhead_ms        REAL,
    speech_end_at      INTEGER,
    UNIQUE (call_id, idx)
);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    call_id INTEGER REFERENCES calls(id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_call_at ON events(call_id, at);
)sql"},
        // Version 2: the call's recording (a WAV path) and an index for the latency chart. Turn counts and the
        // text search use the UNIQUE(call_id, idx) index of turns; the call list uses calls_started_at.
        {2, R"sql(
ALTER TABLE calls ADD COLUMN recording TEXT;
CREATE INDEX turns_speech_end_at ON turns(speech_end_at);
)sql"},
    };
    return migrations;
}

namespace {

// ---------- small RAII helpers over the C API ----------

struct DbCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

class Stmt {
public:
    Stmt(sqlite3* db, const char* sql) : db_(db) {
        rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
    }
    ~Stmt() { sqlite3_finalize(stmt_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    bool ok() const { return rc_ == SQLITE_OK && stmt_ != nullptr; }
    std::string error() const { return sqlite3_errmsg(db_); }

    Stmt& text(int i, const std::string& s) {
        sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Stmt& integer(int i, std::int64_t v) {
        sqlite3_bind_int64(stmt_, i, v);
        return *this;
    }
    Stmt& time_or_null(int i, EpochMs v) {
        if (v == 0) sqlite3_bind_null(stmt_, i); else sqlite3_bind_int64(stmt_, i, v);
        return *this;
    }
    Stmt& ms_or_null(int i, double v) {
        if (v < 0) sqlite3_bind_null(stmt_, i); else sqlite3_bind_double(stmt_, i, v);
        return *this;
    }
    // SQLITE_ROW, SQLITE_DONE or an error code.
    int step() { return ok() ? sqlite3_step(stmt_) : rc_; }

    std::string col_text(int i) const {
        const unsigned char* p = sqlite3_column_text(stmt_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)))
                 : std::string();
    }
    std::int64_t col_int(int i) const { return sqlite3_column_int64(stmt_, i); }
    double col_ms(int i) const {
        return sqlite3_column_type(stmt_, i) == SQLITE_NULL ? -1.0 : sqlite3_column_double(stmt_, i);
    }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    int rc_ = SQLITE_ERROR;
};

bool exec(sqlite3* db, const std::string& sql, std::string* error) {
    char* msg = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) == SQLITE_OK) return true;
    if (error) *error = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return false;
}

// Opens one connection with Parley's settings. WAL + synchronous=NORMAL: a commit is in the WAL (OS page cache)
// when it returns, so it survives a crash or kill -9 of the process; only a power loss / kernel crash can lose
// the last transactions (never corrupt the database).
Db open_connection(const std::string& path, int busy_timeout_ms, std::string* error) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    Db db(raw);
    if (rc != SQLITE_OK) {
        *error = "cannot open " + path + ": " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
        return nullptr;
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, busy_timeout_ms);
    {
        Stmt wal(raw, "PRAGMA journal_mode=WAL");
        int step = wal.step();
        if (step != SQLITE_ROW) {
            *error = path + ": " + wal.error();
            return nullptr;
        }
        if (wal.col_text(0) != "wal") {
            *error = path + ": cannot switch to WAL mode (journal_mode=" + wal.col_text(0) + ")";
            return nullptr;
        }
    }
    std::string e;
    if (!exec(raw, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", &e)) {
        *error = path + ": " + e;
        return nullptr;
    }
    return db;
}

int read_version(sqlite3* db, std::string* error) {
    Stmt q(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (q.step() != SQLITE_ROW) {
        *error = "cannot read schema_version: " + q.error();
        return -1;
    }
    return static_cast<int>(q.col_int(0));
}

bool migrate(sqlite3* db, const std::vector<Migration>& migrations, std::string* error) {
    std::string e;
    if (!exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
              &e)) {
        *error = "cannot create schema_version: " + e;
        return false;
    }
    int known = 0;
    for (const Migration& m : migrations) {
        if (m.version <= known) {
            *error = "migration versions must increase (" + std::to_string(m.version) + " after " + std::to_string(known) + ")";
            return false;
        }
        known = m.version;
    }
    int current = read_version(db, error);
    if (current < 0) return false;
    if (current > known) {
        *error = "database schema version " + std::to_string(current) + " is newer than this Parley knows (" +
                 std::to_string(known) + "); refusing to open it";
        return false;
    }
    for (const Migration& m : migrations) {
        if (m.version <= current) continue;
        // BEGIN IMMEDIATE takes the write lock first, so two processes never apply the same step twice.
        if (!exec(db, "BEGIN IMMEDIATE", &e)) {
            *error = "migration " + std::to_string(m.version) + ": " + e;
            return false;
        }
        int now = read_version(db, error);
        if (now < 0) {
            exec(db, "ROLLBACK", nullptr);
            return false;
        }
        if (now >= m.version) {
            exec(db, "COMMIT", nullptr);
            continue;
        }
        Stmt record(db, "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)");
        if (!exec(db, m.sql, &e) || record.integer(1, m.version).integer(2, now_ms()).step() != SQLITE_DONE ||
            !exec(db, "COMMIT", &e)) {
            if (e.empty()) e = record.error();
            exec(db, "ROLLBACK", nullptr);
            *error = "migration " + std::to_string(m.version) + " failed (rolled back): " + e;
            return false;
        }
        PLOG_INFO("event=store_migrated version={}", m.version);
    }
    return true;
}

// The columns call_from() reads, in order (kCallColumns of them).
#define CALL_COLUMNS                                                                                          \
    "uid, direction, from_uri, to_uri, sip_call_id, line, handler, started_at, answered_at, ended_at, "       \
    "end_reason, recording, (SELECT COUNT(*) FROM turns WHERE turns.call_id = calls.id)"
constexpr int kCallColumns = 13;

// A LIKE pattern matching `s` anywhere, with % _ and \ in `s` taken literally (used with ESCAPE '\').
std::string like_pattern(const std::string& s) {
    std::string like = "%";
    for (char c : s) {
        if (c == '%' || c == '_' || c == '\\') like += '\\';
        like += c;
    }
    like += '%';
    return like;
}

// ---------- queued items ----------

struct CallStarted { CallRow call; };
struct CallAnswered { std::string uid; EpochMs at; };
struct CallEnded { std::string uid; EpochMs at; std::string reason; };
struct Turn { std::string uid; TurnRow turn; };
struct Event { std::string uid; std::string kind; std::string detail; EpochMs at; };
struct LineStatus { LineRow line; };
using Item = std::variant<CallStarted, CallAnswered, CallEnded, Turn, Event, LineStatus>;

// Read connections. A read leases one (an idle one, or a new one opened outside the lock), runs its statements on
// it without holding any lock, and the lease gives it back; at most kMaxIdle stay open, extras are closed. So a
// slow read (a transcript search) never makes another read wait, and the number of open connections follows the
// number of concurrent reads.
class ReaderPool {
public:
    static constexpr std::size_t kMaxIdle = 4;

    ReaderPool(std::string path, int busy_timeout_ms, Db first)
        : path_(std::move(path)), busy_timeout_ms_(busy_timeout_ms) {
        if (first) idle_.push_back(std::move(first));
    }

    // One connection for the lease's lifetime; get() is nullptr when none could be opened.
    class Lease {
    public:
        Lease(ReaderPool* pool, Db db) : pool_(pool), db_(std::move(db)) {}
        ~Lease() {
            if (db_) pool_->give_back(std::move(db_));
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        sqlite3* get() const { return db_.get(); }

    private:
        ReaderPool* pool_;
        Db db_;
    };

    // `what` names the read for the log line when no connection can be opened (logged once per failed read).
    Lease take(const char* what) {
        {
            std::lock_guard lock(mutex_);
            if (!idle_.empty()) {
                Db db = std::move(idle_.back());
                idle_.pop_back();
                return Lease(this, std::move(db));
            }
        }
        std::string error;
        Db db = open_connection(path_, busy_timeout_ms_, &error);  // I/O: outside the lock
        if (!db) PLOG_WARN("event=store_read_failed what={} error=\"no read connection: {}\"", what, error);
        return Lease(this, std::move(db));
    }

private:
    void give_back(Db db) {
        // A read that returned early inside BEGIN … COMMIT must not hand a snapshot to the next one.
        if (!sqlite3_get_autocommit(db.get())) exec(db.get(), "ROLLBACK", nullptr);
        {
            std::lock_guard lock(mutex_);
            if (idle_.size() < kMaxIdle) {
                idle_.push_back(std::move(db));
                return;
            }
        }
        // `db` is closed here, after the lock is released.
    }

    const std::string path_;
    const int busy_timeout_ms_;
    std::mutex mutex_;       // guards idle_ only; never held across SQLite calls
    std::vector<Db> idle_;
};

class StoreImpl final : public Store {
public:
    StoreImpl(Db writer, Db reader, const std::string& path, int busy_timeout_ms, std::size_t capacity)
        : writer_(std::move(writer)), readers_(path, busy_timeout_ms, std::move(reader)),
          capacity_(capacity ? capacity : 1) {
        thread_ = std::thread([this] { run(); });
    }

    ~StoreImpl() override {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        work_cv_.notify_one();
        thread_.join();
    }

    bool call_started(CallRow call) override { return push(CallStarted{std::move(call)}); }
    bool call_answered(std::string uid, EpochMs at) override { return push(CallAnswered{std::move(uid), at}); }
    bool call_ended(std::string uid, EpochMs at, std::string reason) override {
        return push(CallEnded{std::move(uid), at, std::move(reason)});
    }
    bool turn(std::string uid, TurnRow turn) override { return push(Turn{std::move(uid), std::move(turn)}); }
    bool event(std::string uid, std::string kind, std::string detail, EpochMs at) override {
        return push(Event{std::move(uid), std::move(kind), std::move(detail), at});
    }
    bool line_status(LineRow line) override { return push(LineStatus{std::move(line)}); }

    void flush() override {
        std::unique_lock lock(mutex_);
        std::uint64_t target = enqueued_;
        done_cv_.wait(lock, [&] { return committed_ >= target; });
    }

    std::uint64_t dropped() const override {
        std::lock_guard lock(mutex_);
        return dropped_;
    }

    CallPage query_calls(const CallQuery& query) override {
        CallPage page;
        const ReaderPool::Lease reader = readers_.take("query_calls");
        sqlite3* db = reader.get();
        if (!db) return page;
        // Only bound parameters: nothing from the query is ever part of the SQL text. An unknown status matches
        // nothing (the HTTP layer rejects it before).
        static const char* const kWhere =
            " WHERE (?1 = '' OR uid LIKE ?2 ESCAPE '\\' OR from_uri LIKE ?2 ESCAPE '\\' OR to_uri LIKE ?2 ESCAPE '\\'"
            " OR sip_call_id LIKE ?2 ESCAPE '\\' OR line LIKE ?2 ESCAPE '\\' OR handler LIKE ?2 ESCAPE '\\'"
            " OR COALESCE(end_reason, '') LIKE ?2 ESCAPE '\\'"
            " OR EXISTS (SELECT 1 FROM turns t WHERE t.call_id = calls.id"
            "            AND (t.user_text LIKE ?2 ESCAPE '\\' OR t.reply_text LIKE ?2 ESCAPE '\\')))"
            " AND (?3 = '' OR direction = ?3)"
            " AND (?4 = '' OR line = ?4)"
            " AND (?5 = 0 OR started_at >= ?5)"
            " AND (?6 = 0 OR started_at < ?6)"
            " AND (?7 = ''"
            "      OR (?7 = 'open' AND ended_at IS NULL)"
            "      OR (?7 = 'ended' AND ended_at IS NOT NULL)"
            "      OR (?7 = 'answered' AND answered_at IS NOT NULL)"
            "      OR (?7 = 'missed' AND ended_at IS NOT NULL AND answered_at IS NULL))";
        const std::string like = like_pattern(query.q);
        auto bind = [&](Stmt& s) {
            s.text(1, query.q).text(2, like).text(3, query.direction).text(4, query.line)
                .integer(5, query.since).integer(6, query.until).text(7, query.status);
        };
        // One read transaction: the page and the total are from the same snapshot.
        exec(db, "BEGIN", nullptr);
        struct End {
            sqlite3* db;
            ~End() { exec(db, "COMMIT", nullptr); }
        } end{db};
        {
            Stmt q(db, (std::string("SELECT COUNT(*) FROM calls") + kWhere).c_str());
            bind(q);
            if (q.step() == SQLITE_ROW) page.total = q.col_int(0);
            else PLOG_WARN("event=store_read_failed what=query_calls error=\"{}\"", q.error());
        }
        {
            Stmt q(db, (std::string("SELECT " CALL_COLUMNS " FROM calls") + kWhere +
                        " ORDER BY started_at DESC, id DESC LIMIT ?8 OFFSET ?9").c_str());
            bind(q);
            q.integer(8, query.limit < 0 ? -1 : query.limit).integer(9, query.offset < 0 ? 0 : query.offset);
            int rc;
            while ((rc = q.step()) == SQLITE_ROW) page.calls.push_back(call_from(q));
            if (rc != SQLITE_DONE) PLOG_WARN("event=store_read_failed what=query_calls error=\"{}\"", q.error());
        }
        return page;
    }

    std::vector<LatencyPoint> latency(EpochMs since, int limit) override {
        std::vector<LatencyPoint> out;
        const ReaderPool::Lease reader = readers_.take("latency");
        if (!reader.get()) return out;
        // The newest `limit` turns, handed out oldest first.
        Stmt q(reader.get(),
               "SELECT uid, idx, speech_end_at, first_rtp_ms, overhead_ms FROM ("
               " SELECT c.uid AS uid, t.idx AS idx, t.speech_end_at AS speech_end_at, t.first_rtp_ms AS first_rtp_ms,"
               " t.overhead_ms AS overhead_ms, t.id AS id FROM turns t JOIN calls c ON c.id = t.call_id"
               " WHERE t.first_rtp_ms IS NOT NULL AND t.speech_end_at >= ?1"
               " ORDER BY t.speech_end_at DESC, t.id DESC LIMIT ?2)"
               " ORDER BY speech_end_at, id");
        q.integer(1, since).integer(2, limit < 0 ? -1 : limit);
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
            LatencyPoint p;
            p.uid = q.col_text(0);
            p.idx = static_cast<int>(q.col_int(1));
            p.at = q.col_int(2);
            p.voice_to_voice_ms = q.col_ms(3);
            p.overhead_ms = q.col_ms(4);
            out.push_back(std::move(p));
        }
        if (rc != SQLITE_DONE) PLOG_WARN("event=store_read_failed what=latency error=\"{}\"", q.error());
        return out;
    }

    std::optional<CallDetail> get_call(const std::string& uid) override {
        const ReaderPool::Lease reader = readers_.take("get_call");
        sqlite3* db = reader.get();
        if (!db) return std::nullopt;
        // One read transaction: the call, its turns and events are a consistent snapshot.
        exec(db, "BEGIN", nullptr);
        struct End {
            sqlite3* db;
            ~End() { exec(db, "COMMIT", nullptr); }
        } end{db};
        CallDetail detail;
        std::int64_t id = 0;
        {
            Stmt q(db, "SELECT " CALL_COLUMNS ", id FROM calls WHERE uid = ?");
            q.text(1, uid);
            if (q.step() != SQLITE_ROW) return std::nullopt;
            detail.call = call_from(q);
            id = q.col_int(kCallColumns);
        }
        {
            Stmt q(db, "SELECT idx, \"trigger\", user_text, reply_text, interrupted, early_end, tools, eot_ms, "
                       "stt_final_ms, stt_compute_ms, llm_first_token_ms, first_sentence_ms, tts_first_audio_ms, "
                       "first_rtp_ms, overhead_ms, speech_end_at FROM turns WHERE call_id = ? ORDER BY idx");
            q.integer(1, id);
            while (q.step() == SQLITE_ROW) {
                TurnRow t;
                t.idx = static_cast<int>(q.col_int(0));
                t.trigger = q.col_text(1);
                t.user_text = q.col_text(2);
                t.reply_text = q.col_text(3);
                t.interrupted = q.col_int(4) != 0;
                t.early_end = q.col_int(5) != 0;
                auto tools = nlohmann::json::parse(q.col_text(6), nullptr, false);
                if (tools.is_array())
                    for (const auto& x : tools)
                        if (x.is_string()) t.tools.push_back(x.get<std::string>());
                t.eot_ms = q.col_ms(7);
                t.stt_final_ms = q.col_ms(8);
                t.stt_compute_ms = q.col_ms(9);
                t.llm_first_token_ms = q.col_ms(10);
                t.first_sentence_ms = q.col_ms(11);
                t.tts_first_audio_ms = q.col_ms(12);
                t.first_rtp_ms = q.col_ms(13);
                t.overhead_ms = q.col_ms(14);
                t.speech_end_at = q.col_int(15);
                detail.turns.push_back(std::move(t));
            }
        }
        {
            Stmt q(db, "SELECT at, kind, detail FROM events WHERE call_id = ? ORDER BY at, id");
            q.integer(1, id);
            while (q.step() == SQLITE_ROW) detail.events.push_back({q.col_int(0), q.col_text(1), q.col_text(2)});
        }
        return detail;
    }

    std::vector<LineRow> lines() override {
        std::vector<LineRow> out;
        const ReaderPool::Lease reader = readers_.take("lines");
        if (!reader.get()) return out;
        Stmt q(reader.get(), "SELECT name, registrar, user, status, updated_at FROM lines ORDER BY name");
        while (q.step() == SQLITE_ROW) out.push_back({q.col_text(0), q.col_text(1), q.col_text(2), q.col_text(3), q.col_int(4)});
        return out;
    }

    int schema_version() override {  // -1 when it cannot be read
        const ReaderPool::Lease reader = readers_.take("schema_version");
        if (!reader.get()) return -1;
        std::string e;
        return read_version(reader.get(), &e);
    }

    std::string schema_sql() override {
        std::string out;
        const ReaderPool::Lease reader = readers_.take("schema_sql");
        if (!reader.get()) return out;
        Stmt q(reader.get(), "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name");
        while (q.step() == SQLITE_ROW) out += q.col_text(0) + ";\n";
        return out;
    }

    std::string integrity_check() override {
        std::string out;
        const ReaderPool::Lease reader = readers_.take("integrity_check");
        if (!reader.get()) return "cannot open a read connection";
        Stmt q(reader.get(), "PRAGMA integrity_check");
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) out += (out.empty() ? "" : "\n") + q.col_text(0);
        if (rc != SQLITE_DONE) out += (out.empty() ? "" : "\n") + q.error();
        return out;
    }

private:
    static CallRow call_from(const Stmt& q) {
        CallRow c;
        c.uid = q.col_text(0);
        c.direction = q.col_text(1);
        c.from_uri = q.col_text(2);
        c.to_uri = q.col_text(3);
        c.sip_call_id = q.col_text(4);
        c.line = q.col_text(5);
        c.handler = q.col_text(6);
        c.started_at = q.col_int(7);
        c.answered_at = q.col_int(8);
        c.ended_at = q.col_int(9);
        c.end_reason = q.col_text(10);
        c.recording = q.col_text(11);
        c.turn_count = static_cast<int>(q.col_int(12));
        return c;
    }

    bool push(Item item) {
        {
            std::lock_guard lock(mutex_);
            if (queue_.size() >= capacity_) {
                ++dropped_;  // logged by the store thread (at most once a second): no I/O on the caller's thread
                return false;
            }
            queue_.push_back(std::move(item));
            ++enqueued_;
        }
        work_cv_.notify_one();
        return true;
    }

    void run() {
        std::uint64_t dropped_logged = 0;
        auto last_log = std::chrono::steady_clock::time_point{};
        for (;;) {
            std::deque<Item> batch;
            std::uint64_t dropped_now = 0;
            bool last = false;
            {
                std::unique_lock lock(mutex_);
                // A full queue is never empty, so drops are noticed here after each batch.
                work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                dropped_now = dropped_;
                if (!queue_.empty()) {
                    batch.swap(queue_);  // everything queued so far: one transaction
                } else {
                    last = true;  // stopping and everything queued is committed
                }
            }
            auto now = std::chrono::steady_clock::now();
            if (dropped_now != dropped_logged && (last || now - last_log >= std::chrono::seconds(1))) {
                PLOG_WARN("event=store_queue_full dropped={} total_dropped={} capacity={}", dropped_now - dropped_logged,
                          dropped_now, capacity_);
                dropped_logged = dropped_now;
                last_log = now;
            }
            if (last) return;
            commit(batch);
            {
                std::lock_guard lock(mutex_);
                committed_ += batch.size();
            }
            done_cv_.notify_all();
        }
    }

    // What was queued while the previous batch was being written goes in one transaction: a completed turn is
    // committed within one batch of reaching the queue (under a millisecond when calls are all that write), and
    // a burst costs one commit instead of one per item. A statement that fails (an unknown uid) is logged and
    // rolled back alone; the rest of the batch commits.
    void commit(const std::deque<Item>& batch) {
        sqlite3* db = writer_.get();
        std::string error;
        const bool tx = batch.size() > 1 && exec(db, "BEGIN", &error);
        for (const auto& item : batch) write(item);
        if (tx && !exec(db, "COMMIT", &error)) {
            PLOG_ERROR("event=store_write_failed what=commit items={} error=\"{}\"", batch.size(), error);
            exec(db, "ROLLBACK", nullptr);
        }
    }

    // Each item is one statement (in the batch's transaction, or alone in autocommit mode).
    void write(const Item& item) {
        sqlite3* db = writer_.get();
        const char* what = "";
        std::string uid;
        int rc = SQLITE_DONE;
        std::string error;
        bool matched = true;
        auto finish = [&](Stmt& s) {
            rc = s.step();
            if (rc != SQLITE_DONE) error = s.error();
            else matched = sqlite3_changes(db) > 0;
        };
        if (const auto* c = std::get_if<CallStarted>(&item)) {
            what = "call_started";
            uid = c->call.uid;
            Stmt s(db, "INSERT INTO calls(uid, direction, from_uri, to_uri, sip_call_id, line, handler, started_at, "
                       "recording) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''))");
            const CallRow& r = c->call;
            s.text(1, r.uid).text(2, r.direction).text(3, r.from_uri).text(4, r.to_uri).text(5, r.sip_call_id)
                .text(6, r.line).text(7, r.handler).integer(8, r.started_at ? r.started_at : now_ms())
                .text(9, r.recording);
            finish(s);
        } else if (const auto* a = std::get_if<CallAnswered>(&item)) {
            what = "call_answered";
            uid = a->uid;
            Stmt s(db, "UPDATE calls SET answered_at = ? WHERE uid = ?");
            s.time_or_null(1, a->at).text(2, a->uid);
            finish(s);
        } else if (const auto* e = std::get_if<CallEnded>(&item)) {
            what = "call_ended";
            uid = e->uid;
            Stmt s(db, "UPDATE calls SET ended_at = ?, end_reason = ? WHERE uid = ?");
            s.time_or_null(1, e->at).text(2, e->reason).text(3, e->uid);
            finish(s);
        } else if (const auto* t = std::get_if<Turn>(&item)) {
            what = "turn";
            uid = t->uid;
            const TurnRow& r = t->turn;
            nlohmann::json tools = r.tools;
            Stmt s(db, "INSERT INTO turns(call_id, idx, \"trigger\", user_text, reply_text, interrupted, early_end, "
                       "tools, eot_ms, stt_final_ms, stt_compute_ms, llm_first_token_ms, first_sentence_ms, "
                       "tts_first_audio_ms, first_rtp_ms, overhead_ms, speech_end_at) "
                       "SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17 "
                       "FROM calls WHERE uid = ?1");
            s.text(1, t->uid).integer(2, r.idx).text(3, r.trigger).text(4, r.user_text).text(5, r.reply_text)
                .integer(6, r.interrupted).integer(7, r.early_end).text(8, tools.dump())
                .ms_or_null(9, r.eot_ms).ms_or_null(10, r.stt_final_ms).ms_or_null(11, r.stt_compute_ms)
                .ms_or_null(12, r.llm_first_token_ms).ms_or_null(13, r.first_sentence_ms)
                .ms_or_null(14, r.tts_first_audio_ms).ms_or_null(15, r.first_rtp_ms).ms_or_null(16, r.overhead_ms)
                .time_or_null(17, r.speech_end_at);
            finish(s);
        } else if (const auto* ev = std::get_if<Event>(&item)) {
            what = "event";
            uid = ev->uid;
            // An event about an unknown call is kept, unattached (call_id NULL).
            Stmt s(db, "INSERT INTO events(call_id, at, kind, detail) VALUES ((SELECT id FROM calls WHERE uid = ?), ?, ?, ?)");
            s.text(1, ev->uid).integer(2, ev->at ? ev->at : now_ms()).text(3, ev->kind).text(4, ev->detail);
            finish(s);
        } else if (const auto* l = std::get_if<LineStatus>(&item)) {
            what = "line_status";
            const LineRow& r = l->line;
            Stmt s(db, "INSERT INTO lines(name, registrar, user, status, updated_at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET registrar = excluded.registrar, user = excluded.user, "
                       "status = excluded.status, updated_at = excluded.updated_at");
            s.text(1, r.name).text(2, r.registrar).text(3, r.user).text(4, r.status)
                .integer(5, r.updated_at ? r.updated_at : now_ms());
            finish(s);
        }
        if (rc != SQLITE_DONE)
            PLOG_WARN("event=store_write_failed what={} uid={} error=\"{}\"", what, uid, error);
        else if (!matched)
            PLOG_WARN("event=store_unknown_call what={} uid={}", what, uid);
    }

    Db writer_;           // store thread only
    ReaderPool readers_;  // the read side; see ReaderPool
    const std::size_t capacity_;

    mutable std::mutex mutex_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    std::deque<Item> queue_;
    std::uint64_t enqueued_ = 0;
    std::uint64_t committed_ = 0;
    std::uint64_t dropped_ = 0;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& path, std::string* error, Options options) {
    std::string local;
    if (!error) error = &local;
    const std::vector<Migration>& migrations = options.migrations.empty() ? default_migrations() : options.migrations;
    try {
        Db writer = open_connection(path, options.busy_timeout_ms, error);
        if (!writer) return nullptr;
        if (!migrate(writer.get(), migrations, error)) {
            *error = path + ": " + *error;
            return nullptr;
        }
        Db reader = open_connection(path, options.busy_timeout_ms, error);
        if (!reader) return nullptr;
        PLOG_INFO("event=store_opened path={} schema_version={}", path, migrations.back().version);
        return std::make_unique<StoreImpl>(std::move(writer), std::move(reader), path, options.busy_timeout_ms,
                                           options.queue_capacity);
    } catch (const std::exception& e) {
        *error = path + ": " + e.what();
        return nullptr;
    }
}

}  // namespace parley::store
