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
    EXPECT_EQ(store->schema_version(), 1);
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

    auto calls = store->list_calls(10, 0);
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_EQ(store->list_calls(1, 1).size(), 1u);
    EXPECT_EQ(store->list_calls(10, 0, "-2").size(), 1u);
    EXPECT_EQ(store->list_calls(10, 0, "alice").size(), 2u);
    EXPECT_EQ(store->list_calls(10, 0, "%").size(), 0u);  // LIKE wildcards are literal

    auto lines = store->lines();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].status, "failed: 403");
    EXPECT_EQ(store->integrity_check(), "ok");
}

TEST(Store, AppliesNewerMigrationToOlderDatabase) {
    std::string path = fresh_path("upgrade");
    std::string error;
    {
        auto v1 = Store::open(path, &error);
        ASSERT_TRUE(v1) << error;
        v1->call_started(make_call("old-call"));
        v1->flush();
    }
    // The file is at version 1; a test-only list that adds version 2 upgrades it in place.
    Options options;
    options.migrations = default_migrations();
    options.migrations.push_back({2, "ALTER TABLE calls ADD COLUMN recording TEXT NOT NULL DEFAULT '';"
                                     "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"});
    auto v2 = Store::open(path, &error, options);
    ASSERT_TRUE(v2) << error;
    EXPECT_EQ(v2->schema_version(), 2);
    EXPECT_NE(v2->schema_sql().find("recording"), std::string::npos);
    EXPECT_TRUE(v2->get_call("old-call"));  // data kept across the migration
    v2.reset();

    // A failing migration is rolled back as a whole and the open is refused; the file stays at version 2.
    options.migrations.push_back({3, "CREATE TABLE ok_table (x INTEGER); THIS IS NOT SQL;"});
    EXPECT_FALSE(Store::open(path, &error, options));
    EXPECT_NE(error.find("migration 3"), std::string::npos) << error;
    options.migrations.pop_back();
    auto again = Store::open(path, &error, options);
    ASSERT_TRUE(again) << error;
    EXPECT_EQ(again->schema_version(), 2);
    EXPECT_EQ(again->schema_sql().find("ok_table"), std::string::npos);
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
    auto calls = store->list_calls(100, 0);
    EXPECT_EQ(calls.size(), static_cast<std::size_t>(kThreads));
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
