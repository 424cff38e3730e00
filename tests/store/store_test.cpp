// store_test.cpp — the call/turn store on real SQLite files under the build directory.
#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace parley::store;

namespace {

std::string fresh_path(const std::string& name) {
    fs::path dir = fs::path(PARLEY_STORE_TMP_DIR) / "store_test_files";
    fs::create_directories(dir);
    fs::path p = dir / (name + "-" + std::to_string(::getpid()) + ".db");
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
    return p.string();
}

CallRow make_call(const std::string& uid) {
    CallRow c;
    c.uid = uid;
    c.direction = "inbound";
    c.from_uri = "sip:alice@127.0.0.1";
    c.to_uri = "sip:parley@127.0.0.1";
    c.sip_call_id = "cid-" + uid;
    c.line = "main";
    c.handler = "conversation";
    c.started_at = 1764030654000;
    return c;
}

TurnRow make_turn(int idx) {
    TurnRow t;
    t.idx = idx;
    t.trigger = "speech";
    t.user_text = "question " + std::to_string(idx);
    t.reply_text = "answer " + std::to_string(idx);
    t.tools = {"lookup(\"x\")"};
    t.eot_ms = 210.5;
    t.first_rtp_ms = 640;
    t.speech_end_at = 1764030655000 + idx;
    return t;
}

// query_calls() with only limit/offset/q: the calls of one page, newest first.
std::vector<CallRow> list(Store& store, int limit, int offset, const std::string& q = "") {
    CallQuery query;
    query.limit = limit;
    query.offset = offset;
    query.q = q;
    return store.query_calls(query).calls;
}

// Raw SQL on a file, outside the Store (to build old/odd databases).
void raw_exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
}

}  // namespace

TEST(Store, MigratesEmptyFileToCurrentVersion) {
    std::string path = fresh_path("empty");
    { std::ofstream(path).flush(); }  // a 0-byte file: "version 0"
    ASSERT_TRUE(fs::exists(path));
    std::string error;
    auto store = Store::open(path, &error);
    ASSERT_TRUE(store) << error;
    EXPECT_EQ(store->schema_version(), default_migrations().back().version);
    std::string schema = store->schema_sql();
    for (const char* table : {"schema_version", "lines", "calls", "turns", "events"})
        EXPECT_NE(schema.find(std::string("CREATE TABLE ") + table), std::string::npos) << table;
    store.reset();
    // Reopening applies nothing and keeps the version.
    store = Store::open(path, &error);
    ASSERT_TRUE(store) << error;
    EXPECT_EQ(store->schema_version(), default_migrations().back().version);
}

TEST(Store, RoundTripCallTurnsEventsLines) {
    std::string error;
    auto store = Store::open(fresh_path("roundtrip"), &error);
    ASSERT_TRUE(store) << error;
    store->call_started(make_call("1764030654000-1"));
    store->call_answered("1764030654000-1", 1764030654500);
    store->turn("1764030654000-1", make_turn(1));
    TurnRow second = make_turn(2);
    second.interrupted = true;
    second.tools.clear();
    second.eot_ms = -1;
    store->turn("1764030654000-1", second);
    store->event("1764030654000-1", "dtmf", "digits=12", 1764030656000);
    store->event("", "config_reloaded", "ok", 1764030656001);  // not about a call
    store->call_ended("1764030654000-1", 1764030660000, "caller_hangup");
    store->call_started(make_call("1764030654000-2"));
    store->turn("no-such-call", make_turn(1));  // logged, not stored
    store->line_status({"main", "127.0.0.1:5060", "parley", "registered", 1764030650000});
    store->line_status({"main", "127.0.0.1:5060", "parley", "failed: 403", 1764030651000});
    store->flush();

    auto detail = store->get_call("1764030654000-1");
    ASSERT_TRUE(detail);
    EXPECT_EQ(detail->call.from_uri, "sip:alice@127.0.0.1");
    EXPECT_EQ(detail->call.answered_at, 1764030654500);
    EXPECT_EQ(detail->call.ended_at, 1764030660000);
    EXPECT_EQ(detail->call.end_reason, "caller_hangup");
    ASSERT_EQ(detail->turns.size(), 2u);
    EXPECT_EQ(detail->turns[0].user_text, "question 1");
    EXPECT_EQ(detail->turns[0].tools, std::vector<std::string>{"lookup(\"x\")"});
    EXPECT_DOUBLE_EQ(detail->turns[0].eot_ms, 210.5);
    EXPECT_DOUBLE_EQ(detail->turns[0].first_rtp_ms, 640);
    EXPECT_LT(detail->turns[0].stt_final_ms, 0);  // unknown stays unknown
    EXPECT_TRUE(detail->turns[1].interrupted);
    EXPECT_LT(detail->turns[1].eot_ms, 0);
    ASSERT_EQ(detail->events.size(), 1u);
    EXPECT_EQ(detail->events[0].kind, "dtmf");
    EXPECT_FALSE(store->get_call("no-such-call"));

    auto calls = list(*store, 10, 0);
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_EQ(calls[0].uid, "1764030654000-2");  // same started_at: the later insert first
    auto second_page = list(*store, 1, 1);
    ASSERT_EQ(second_page.size(), 1u);
    EXPECT_EQ(second_page[0].uid, "1764030654000-1");
    EXPECT_EQ(list(*store, 10, 0, "-2").size(), 1u);
    EXPECT_EQ(list(*store, 10, 0, "alice").size(), 2u);
    EXPECT_EQ(list(*store, 10, 0, "%").size(), 0u);  // LIKE wildcards are literal
    EXPECT_EQ(list(*store, 10, 0, "_").size(), 1u);  // only "caller_hangup" (end reason) has a '_'

    auto lines = store->lines();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].status, "failed: 403");
    EXPECT_EQ(store->integrity_check(), "ok");
}

TEST(Store, AppliesNewerMigrationToOlderDatabase) {
    std::string path = fresh_path("upgrade");
    std::string error;
    const int current = default_migrations().back().version;
    {
        auto v = Store::open(path, &error);
        ASSERT_TRUE(v) << error;
        v->call_started(make_call("old-call"));
        v->flush();
    }
    // The file is at the current version; a test-only list that adds the next version upgrades it in place.
    Options options;
    options.migrations = default_migrations();
    options.migrations.push_back({current + 1, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"});
    auto next = Store::open(path, &error, options);
    ASSERT_TRUE(next) << error;
    EXPECT_EQ(next->schema_version(), current + 1);
    EXPECT_NE(next->schema_sql().find("notes"), std::string::npos);
    EXPECT_TRUE(next->get_call("old-call"));  // data kept across the migration
    next.reset();

    // A failing migration is rolled back as a whole and the open is refused; the file stays where it was.
    options.migrations.push_back({current + 2, "CREATE TABLE ok_table (x INTEGER); THIS IS NOT SQL;"});
    EXPECT_FALSE(Store::open(path, &error, options));
    EXPECT_NE(error.find("migration " + std::to_string(current + 2)), std::string::npos) << error;
    options.migrations.pop_back();
    auto again = Store::open(path, &error, options);
    ASSERT_TRUE(again) << error;
    EXPECT_EQ(again->schema_version(), current + 1);
    EXPECT_EQ(again->schema_sql().find("ok_table"), std::string::npos);
}

TEST(Store, MigratesVersion1DatabaseWithDataToVersion2) {
    std::string path = fresh_path("v1to2");
    std::string error;
    {
        Options v1;
        v1.migrations = {default_migrations()[0]};
        auto store = Store::open(path, &error, v1);
        ASSERT_TRUE(store) << error;
        ASSERT_EQ(store->schema_version(), 1);
    }
    // Data as a version-1 Parley wrote it (this build's writers know the version-2 columns).
    raw_exec(path, "INSERT INTO calls(uid, direction, from_uri, to_uri, sip_call_id, line, handler, started_at, "
                   "answered_at, ended_at, end_reason) VALUES ('v1-call', 'inbound', 'sip:a@x', 'sip:p@x', 'cid', "
                   "'main', 'conversation', 1764030654000, 1764030655000, 1764030660000, 'bye');"
                   "INSERT INTO turns(call_id, idx, \"trigger\", user_text, reply_text, first_rtp_ms, speech_end_at) "
                   "SELECT id, 1, 'speech', 'question 1', 'answer 1', 640, 1764030656000 FROM calls WHERE uid = 'v1-call';");
    auto store = Store::open(path, &error);
    ASSERT_TRUE(store) << error;
    EXPECT_EQ(store->schema_version(), 2);
    EXPECT_EQ(store->integrity_check(), "ok");
    EXPECT_NE(store->schema_sql().find("recording TEXT"), std::string::npos);
    EXPECT_NE(store->schema_sql().find("turns_speech_end_at"), std::string::npos);
    auto detail = store->get_call("v1-call");
    ASSERT_TRUE(detail);
    EXPECT_EQ(detail->call.end_reason, "bye");
    EXPECT_EQ(detail->call.recording, "");
    EXPECT_EQ(detail->call.turn_count, 1);
    ASSERT_EQ(detail->turns.size(), 1u);
    EXPECT_EQ(detail->turns[0].user_text, "question 1");
    EXPECT_EQ(store->latency(0, 10).size(), 1u);
    // The new column works on the migrated file.
    CallRow v2 = make_call("v2-call");
    v2.recording = "/var/rec/v2-call.wav";
    store->call_started(v2);
    store->flush();
    EXPECT_EQ(store->get_call("v2-call")->call.recording, "/var/rec/v2-call.wav");
    EXPECT_EQ(store->get_call("v1-call")->call.recording, "");
}

TEST(Store, AppliesMigrationsFromHandWrittenVersionRow) {
    // A database written by hand at "version 1" of a test-only migration list; opening applies only 2.
    std::string path = fresh_path("handwritten");
    raw_exec(path, "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);"
                   "INSERT INTO schema_version VALUES (1, 0);"
                   "CREATE TABLE things (id INTEGER PRIMARY KEY);");
    Options options;
    options.migrations = {{1, "CREATE TABLE things (id INTEGER PRIMARY KEY);"},  // would fail if re-run
                          {2, "ALTER TABLE things ADD COLUMN name TEXT;"}};
    std::string error;
    auto store = Store::open(path, &error, options);
    ASSERT_TRUE(store) << error;
    EXPECT_EQ(store->schema_version(), 2);
    EXPECT_NE(store->schema_sql().find("name TEXT"), std::string::npos);
}

TEST(Store, RefusesNewerSchemaVersion) {
    std::string path = fresh_path("newer");
    std::string error;
    ASSERT_TRUE(Store::open(path, &error)) << error;
    raw_exec(path, "INSERT INTO schema_version VALUES (99, 0);");
    EXPECT_FALSE(Store::open(path, &error));
    EXPECT_NE(error.find("newer"), std::string::npos) << error;
    EXPECT_NE(error.find("99"), std::string::npos) << error;
}

TEST(Store, RefusesGarbageAndUnwritablePaths) {
    std::string path = fresh_path("garbage");
    {
        std::ofstream out(path, std::ios::binary);
        for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919) & 0xff));
    }
    std::string error;
    EXPECT_FALSE(Store::open(path, &error));
    EXPECT_NE(error.find("not a database"), std::string::npos) << error;

    error.clear();
    EXPECT_FALSE(Store::open("/nonexistent-dir-parley/sub/calls.db", &error));
    EXPECT_FALSE(error.empty());

    error.clear();
    EXPECT_FALSE(Store::open(fs::path(path).parent_path().string(), &error));  // a directory
    EXPECT_FALSE(error.empty());
}

TEST(Store, ConcurrentWritersAllCommitted) {
    std::string error;
    auto store = Store::open(fresh_path("concurrent"), &error);
    ASSERT_TRUE(store) << error;
    constexpr int kThreads = 8, kTurns = 50;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&store, t] {
            std::string uid = "call-" + std::to_string(t);
            store->call_started(make_call(uid));
            for (int i = 1; i <= kTurns; ++i) {
                store->turn(uid, make_turn(i));
                if (i % 10 == 0) store->event(uid, "tick", std::to_string(i));
            }
            store->call_ended(uid, now_ms(), "bye");
        });
    }
    for (auto& th : threads) th.join();
    store->flush();
    EXPECT_EQ(store->dropped(), 0u);
    CallQuery all;
    all.limit = 100;
    CallPage page = store->query_calls(all);
    EXPECT_EQ(page.calls.size(), static_cast<std::size_t>(kThreads));
    EXPECT_EQ(page.total, kThreads);
    for (int t = 0; t < kThreads; ++t) {
        auto d = store->get_call("call-" + std::to_string(t));
        ASSERT_TRUE(d);
        ASSERT_EQ(d->turns.size(), static_cast<std::size_t>(kTurns));
        for (int i = 0; i < kTurns; ++i) EXPECT_EQ(d->turns[i].idx, i + 1);
        EXPECT_EQ(d->events.size(), 5u);
        EXPECT_EQ(d->call.end_reason, "bye");
    }
}

TEST(Store, FullQueueDropsAndCounts) {
    Options options;
    options.queue_capacity = 2;
    std::string error;
    auto store = Store::open(fresh_path("overflow"), &error, options);
    ASSERT_TRUE(store) << error;
    store->call_started(make_call("c"));
    store->flush();
    constexpr int kEvents = 2000;
    int accepted = 0;
    for (int i = 0; i < kEvents; ++i) accepted += store->event("c", "e", std::to_string(i)) ? 1 : 0;
    store->flush();
    EXPECT_EQ(static_cast<std::uint64_t>(kEvents - accepted), store->dropped());
    auto d = store->get_call("c");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->events.size() + store->dropped(), static_cast<std::size_t>(kEvents));
}

TEST(Store, KillNineLosesNoCommittedTurn) {
    std::string path = fresh_path("kill9");
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(fds[0]);
        std::string error;
        auto store = Store::open(path, &error);
        if (!store) ::_exit(2);
        store->call_started(make_call("victim"));
        std::atomic<bool> stop{false};
        std::thread noise([&] {  // other writes in flight when the kill lands
            while (!stop) {
                store->event("victim", "noise", std::string(200, 'x'));
                std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        });
        for (int i = 1; i < 1000000; ++i) {
            if (!store->turn("victim", make_turn(i))) continue;  // dropped (queue full): never reported
            store->flush();
            if (::write(fds[1], &i, sizeof i) != static_cast<ssize_t>(sizeof i)) break;
        }
        stop = true;
        noise.join();
        ::_exit(3);
    }
    ::close(fds[1]);
    std::set<int> reported;
    int idx = 0;
    while (reported.size() < 200 && ::read(fds[0], &idx, sizeof idx) == static_cast<ssize_t>(sizeof idx))
        reported.insert(idx);
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
    while (::read(fds[0], &idx, sizeof idx) == static_cast<ssize_t>(sizeof idx)) reported.insert(idx);
    ::close(fds[0]);
    ASSERT_GE(reported.size(), 200u);

    std::string error;
    auto store = Store::open(path, &error);
    ASSERT_TRUE(store) << error;
    EXPECT_EQ(store->integrity_check(), "ok");
    auto d = store->get_call("victim");
    ASSERT_TRUE(d);
    std::set<int> stored;
    for (const auto& t : d->turns) stored.insert(t.idx);
    for (int i : reported) EXPECT_TRUE(stored.count(i)) << "turn " << i << " was reported committed but is missing";
    EXPECT_GE(stored.size(), reported.size());
}

TEST(Store, NoSecretColumns) {
    std::string error;
    auto store = Store::open(fresh_path("secrets"), &error);
    ASSERT_TRUE(store) << error;
    std::string schema = store->schema_sql();
    std::transform(schema.begin(), schema.end(), schema.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const char* word : {"password", "passwd", "secret", "api_key", "auth_token", "access_token"})
        EXPECT_EQ(schema.find(word), std::string::npos) << word << " in schema:\n" << schema;
}

namespace {

// A store with a few calls for the query tests (started_at = base + i seconds, i = 0..).
struct QueryFixture {
    static constexpr EpochMs kBase = 1764030000000;
    std::unique_ptr<Store> store;

    explicit QueryFixture(const std::string& name) {
        std::string error;
        store = Store::open(fresh_path(name), &error);
        EXPECT_TRUE(store) << error;
    }
    void add(const std::string& uid, int i, const std::string& direction, const std::string& line, bool answered,
             bool ended, const std::string& user_text = "", const std::string& end_reason = "bye") {
        CallRow c = make_call(uid);
        c.direction = direction;
        c.line = line;
        c.started_at = kBase + i * 1000;
        store->call_started(c);
        if (answered) store->call_answered(uid, c.started_at + 100);
        if (!user_text.empty()) {
            TurnRow t = make_turn(1);
            t.user_text = user_text;
            store->turn(uid, t);
        }
        if (ended) store->call_ended(uid, c.started_at + 500, end_reason);
    }
    std::vector<std::string> uids(const CallQuery& q, std::int64_t* total = nullptr) {
        CallPage page = store->query_calls(q);
        if (total) *total = page.total;
        std::vector<std::string> out;
        for (const CallRow& c : page.calls) out.push_back(c.uid);
        return out;
    }
};

}  // namespace

TEST(Store, QueryCallsFilters) {
    QueryFixture f("query");
    ASSERT_TRUE(f.store);
    f.add("c0", 0, "inbound", "main", true, true, "I need a PLUMBER today");
    f.add("c1", 1, "outbound", "main", false, true, "", "busy");
    f.add("c2", 2, "inbound", "other", true, false, "discount of 50% please");
    f.add("c3", 3, "inbound", "", false, false, "5000 units");
    f.add("c4", 4, "outbound", "other", true, true);
    f.store->flush();
    using V = std::vector<std::string>;
    std::int64_t total = -1;

    CallQuery all;
    EXPECT_EQ(f.uids(all, &total), (V{"c4", "c3", "c2", "c1", "c0"}));  // newest first
    EXPECT_EQ(total, 5);
    CallQuery q;
    q.direction = "outbound";
    EXPECT_EQ(f.uids(q, &total), (V{"c4", "c1"}));
    EXPECT_EQ(total, 2);
    q = {};
    q.line = "other";
    EXPECT_EQ(f.uids(q), (V{"c4", "c2"}));
    q.line = "oth";  // exact, not a substring
    EXPECT_TRUE(f.uids(q).empty());
    q = {};
    q.since = QueryFixture::kBase + 1000;
    q.until = QueryFixture::kBase + 3000;  // exclusive
    EXPECT_EQ(f.uids(q, &total), (V{"c2", "c1"}));
    EXPECT_EQ(total, 2);
    q = {};
    q.status = "open";
    EXPECT_EQ(f.uids(q), (V{"c3", "c2"}));
    q.status = "ended";
    EXPECT_EQ(f.uids(q), (V{"c4", "c1", "c0"}));
    q.status = "answered";
    EXPECT_EQ(f.uids(q), (V{"c4", "c2", "c0"}));
    q.status = "missed";
    EXPECT_EQ(f.uids(q), (V{"c1"}));
    q.status = "bogus' OR 1=1 --";  // not SQL: matches nothing
    EXPECT_TRUE(f.uids(q).empty());
    // Several filters at once.
    q = {};
    q.direction = "inbound";
    q.status = "answered";
    q.line = "main";
    EXPECT_EQ(f.uids(q), (V{"c0"}));

    // q: a turn's text, case-insensitive.
    q = {};
    q.q = "plumber";
    EXPECT_EQ(f.uids(q, &total), (V{"c0"}));
    EXPECT_EQ(total, 1);
    q.q = "answer 1";  // reply_text of make_turn(1)
    EXPECT_EQ(f.uids(q), (V{"c3", "c2", "c0"}));
    // '%' and '_' are literal: "50%" matches "50% please" and not "5000".
    q.q = "50%";
    EXPECT_EQ(f.uids(q), (V{"c2"}));
    q.q = "5_0";
    EXPECT_TRUE(f.uids(q).empty());
    q.q = "%";
    EXPECT_EQ(f.uids(q), (V{"c2"}));
    // Call fields: end reason, uid, SIP Call-ID.
    q.q = "BUSY";
    EXPECT_EQ(f.uids(q), (V{"c1"}));
    q.q = "cid-c4";
    EXPECT_EQ(f.uids(q), (V{"c4"}));
    q.q = "x' OR '1'='1";
    EXPECT_TRUE(f.uids(q).empty());

    // Rows carry turn_count.
    CallPage page = f.store->query_calls(CallQuery{});
    ASSERT_EQ(page.calls.size(), 5u);
    EXPECT_EQ(page.calls[4].turn_count, 1);  // c0
    EXPECT_EQ(page.calls[0].turn_count, 0);  // c4
}

TEST(Store, QueryCallsPagination) {
    QueryFixture f("pages");
    ASSERT_TRUE(f.store);
    for (int i = 0; i < 7; ++i) f.add("p" + std::to_string(i), i, "inbound", "main", true, true);
    f.store->flush();
    std::set<std::string> seen;
    std::vector<std::string> order;
    for (int offset = 0; offset < 7; offset += 3) {
        CallQuery q;
        q.limit = 3;
        q.offset = offset;
        std::int64_t total = -1;
        auto page = f.uids(q, &total);
        EXPECT_EQ(total, 7) << offset;
        EXPECT_EQ(page.size(), offset == 6 ? 1u : 3u);
        for (const auto& uid : page) {
            EXPECT_TRUE(seen.insert(uid).second) << uid << " on two pages";
            order.push_back(uid);
        }
    }
    EXPECT_EQ(seen.size(), 7u);
    EXPECT_EQ(order.front(), "p6");
    EXPECT_EQ(order.back(), "p0");
    CallQuery past;
    past.limit = 3;
    past.offset = 50;
    std::int64_t total = -1;
    EXPECT_TRUE(f.uids(past, &total).empty());
    EXPECT_EQ(total, 7);
}

TEST(Store, CallRecordingRoundTrip) {
    std::string error;
    auto store = Store::open(fresh_path("recording"), &error);
    ASSERT_TRUE(store) << error;
    // The recording is known when the call starts: CallRow::recording in call_started.
    CallRow r1 = make_call("r1");
    r1.recording = "var/recordings/r1.wav";
    EXPECT_TRUE(store->call_started(r1));
    store->call_started(make_call("r2"));  // not recorded
    CallRow r3 = make_call("r3");
    r3.recording = "var/recordings/r3.wav";
    store->call_started(r3);
    store->flush();
    EXPECT_EQ(store->get_call("r1")->call.recording, "var/recordings/r1.wav");
    EXPECT_EQ(store->get_call("r2")->call.recording, "");
    EXPECT_EQ(store->get_call("r3")->call.recording, "var/recordings/r3.wav");
    auto listed = list(*store, 10, 0);
    ASSERT_EQ(listed.size(), 3u);
    for (const auto& c : listed)
        EXPECT_EQ(c.recording, c.uid == "r1" ? "var/recordings/r1.wav" : c.uid == "r3" ? "var/recordings/r3.wav" : "");
    CallQuery q;
    q.q = "r1";
    auto page = store->query_calls(q);
    ASSERT_EQ(page.calls.size(), 1u);
    EXPECT_EQ(page.calls[0].recording, "var/recordings/r1.wav");
}

TEST(Store, LatencyOldestFirstNewestLimit) {
    std::string error;
    auto store = Store::open(fresh_path("latency"), &error);
    ASSERT_TRUE(store) << error;
    store->call_started(make_call("a"));
    store->call_started(make_call("b"));
    const EpochMs base = 1764031000000;
    // Written out of time order, across two calls; one turn without a voice-to-voice time.
    int order[] = {3, 0, 4, 1, 2, 5};
    for (int i : order) {
        TurnRow t = make_turn(i + 1);
        t.speech_end_at = base + i * 1000;
        t.first_rtp_ms = 500 + i;
        t.overhead_ms = 10 + i;
        if (i == 5) t.first_rtp_ms = -1;
        store->turn(i % 2 ? "b" : "a", t);
    }
    store->flush();
    auto all = store->latency(0, 100);
    ASSERT_EQ(all.size(), 5u);  // the turn without first_rtp_ms is left out
    for (size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(all[i].at, base + static_cast<EpochMs>(i) * 1000);
        EXPECT_DOUBLE_EQ(all[i].voice_to_voice_ms, 500.0 + static_cast<double>(i));
        EXPECT_DOUBLE_EQ(all[i].overhead_ms, 10.0 + static_cast<double>(i));
        EXPECT_EQ(all[i].uid, i % 2 ? "b" : "a");
        EXPECT_EQ(all[i].idx, static_cast<int>(i) + 1);
    }
    auto newest = store->latency(0, 2);  // the newest two, still oldest first
    ASSERT_EQ(newest.size(), 2u);
    EXPECT_EQ(newest[0].at, base + 3000);
    EXPECT_EQ(newest[1].at, base + 4000);
    auto since = store->latency(base + 2000, 100);  // at or after
    ASSERT_EQ(since.size(), 3u);
    EXPECT_EQ(since[0].at, base + 2000);
    EXPECT_TRUE(store->latency(base + 10000, 100).empty());
}

// Reads from many threads at once (more than the pool keeps idle) while the store thread writes: every read gets
// its own connection and a consistent answer; none waits on another's statements.
TEST(Store, ConcurrentReadsUseThePool) {
    std::string error;
    auto store = Store::open(fresh_path("readers"), &error);
    ASSERT_TRUE(store) << error;
    constexpr int kCalls = 20;
    for (int i = 0; i < kCalls; ++i) {
        CallRow c = make_call("r" + std::to_string(i));
        c.started_at = 1764030000000 + i;
        store->call_started(c);
        for (int k = 1; k <= 3; ++k) store->turn(c.uid, make_turn(k));
    }
    store->flush();

    constexpr int kReaders = 12, kRounds = 40;
    std::atomic<bool> stop{false};
    std::thread writer([&] {  // keeps the WAL moving under the readers
        for (int i = 0; !stop; ++i) {
            store->event("r0", "tick", std::to_string(i));
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    std::atomic<int> failures{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < kReaders; ++t) {
        readers.emplace_back([&, t] {
            for (int round = 0; round < kRounds; ++round) {
                CallQuery q;
                q.limit = 5;
                q.q = "answer 2";  // the transcript search: every call has it
                CallPage page = store->query_calls(q);
                if (page.total != kCalls || page.calls.size() != 5u || page.calls[0].uid != "r19") ++failures;
                auto d = store->get_call("r" + std::to_string((t + round) % kCalls));
                if (!d || d->turns.size() != 3u || d->call.turn_count != 3) ++failures;
                if (store->latency(0, 1000).size() != static_cast<std::size_t>(kCalls) * 3) ++failures;
                if (store->schema_version() != default_migrations().back().version) ++failures;
            }
        });
    }
    for (auto& th : readers) th.join();
    stop = true;
    writer.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(store->integrity_check(), "ok");

    // A pooled connection keeps no snapshot between reads: a read that returned early (unknown uid) does not
    // hide later commits from the next read on that connection.
    EXPECT_FALSE(store->get_call("late"));
    store->call_started(make_call("late"));
    store->flush();
    EXPECT_TRUE(store->get_call("late"));
    EXPECT_EQ(list(*store, 100, 0).size(), static_cast<std::size_t>(kCalls) + 1);
}
