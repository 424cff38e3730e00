// ops_bench — the operations path as an operator sees it: the call/turn store (src/store), the HTTP API,
// /metrics and the SSE event stream (src/web). Plain executable; prints Markdown tables and exits 0.
//
//   build/bin/ops_bench [--calls 10000] [--threads 4] [--log error]
//
// 1. Store writes: N calls x (call_started, call_answered, 4 turns, call_ended) enqueued from 4 threads at
//    once; the cost of each enqueue (writers never wait for the disk), the store thread's commit rate until
//    flush() returns, and the items dropped. Run twice: with a queue that holds the whole burst (the database
//    the read benchmarks use) and with the default queue (4096), to show what an unrealistic burst drops.
// 2. Store reads on that database: newest page, full-text search over every turn, one call, latency chart.
// 3. HTTP: a real web::Server on 127.0.0.1:0 over that store (fake Control), a keep-alive httplib::Client;
//    /metrics with the series apps/parley/ops.cpp describes; SSE fan-out to 8 clients.
// The database lives in a temp dir under /tmp, removed at the end.
#include <cpp-httplib/httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "metrics/metrics.h"
#include "metrics/parley_metrics.h"
#include "store/store.h"
#include "web/server.h"

namespace {

using namespace parley;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
constexpr int kTurnsPerCall = 4;
constexpr const char* kSearchWord = "zanzibar";  // in one turn of every 100th call

double us_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

std::string fmt_us(double us) {
    char b[64];
    if (us < 10) std::snprintf(b, sizeof b, "%.2f µs", us);
    else if (us < 1000) std::snprintf(b, sizeof b, "%.0f µs", us);
    else std::snprintf(b, sizeof b, "%.1f ms", us / 1000);
    return b;
}

std::string fmt_num(double v) {
    const auto n = static_cast<long long>(v + 0.5);
    std::string s = std::to_string(n);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
    return s;
}

void row(const std::string& what, const std::string& a, const std::string& b) {
    std::printf("| %s | %s | %s |\n", what.c_str(), a.c_str(), b.c_str());
}

std::string uid_of(int i) { return "1764000000000-" + std::to_string(i); }

class FakeControl : public web::Control {
public:
    std::vector<web::LiveCall> live_calls() override { return {}; }
    std::string originate(const std::string&, const std::string&, const std::string&, web::Failure* failure) override {
        *failure = {503, "not in the benchmark"};
        return "";
    }
    bool hangup(const std::string&) override { return false; }
    json config() override { return json{{"agent", {{"greeting", "hi"}}}}; }
    std::optional<json> update_config(const json&, web::Failure* failure) override {
        *failure = {409, "read-only"};
        return std::nullopt;
    }
    web::Readiness readiness() override { return web::Readiness{true, 1, 1}; }
    std::vector<store::LineRow> lines() override { return {}; }
};

store::TurnRow make_turn(int call, int idx, store::EpochMs at) {
    static const char* kUser[] = {"I would like to book a table for four people on Friday evening",
                                  "Can you tell me when the office opens tomorrow morning",
                                  "My parcel has not arrived yet and the tracking page shows nothing",
                                  "Please move my appointment to next Tuesday afternoon"};
    static const char* kReply[] = {"Of course. Which time would suit you best on Friday?",
                                   "We open at eight thirty. Is there anything else I can help with?",
                                   "I am sorry to hear that. Could you read me the order number, please?",
                                   "Done: your appointment is now on Tuesday at three. Anything else?"};
    store::TurnRow t;
    t.idx = idx;
    t.trigger = idx == 1 ? "silence" : "speech";
    t.user_text = kUser[(call + idx) % 4];
    if (idx == 2 && call % 100 == 0) t.user_text += std::string(" near ") + kSearchWord;
    t.reply_text = kReply[(call + idx) % 4];
    if (call % 7 == 0 && idx == 3) t.tools = {"lookup_order({\"order\":\"A-12345\"})"};
    t.eot_ms = 250 + (call % 11) * 10;
    t.stt_final_ms = t.eot_ms + 20;
    t.stt_compute_ms = 40;
    t.llm_first_token_ms = t.stt_final_ms + 150;
    t.first_sentence_ms = t.llm_first_token_ms + 120;
    t.tts_first_audio_ms = t.first_sentence_ms + 60;
    t.first_rtp_ms = t.tts_first_audio_ms + 10;
    t.overhead_ms = 9 + (call % 5);
    t.speech_end_at = at;
    return t;
}

struct WriteResult {
    std::vector<double> enqueue_us;
    double commit_s = 0;
    std::uint64_t items = 0, dropped = 0;
};

// N calls from `threads` threads at once; returns when flush() does.
WriteResult write_burst(store::Store& db, int calls, int threads) {
    WriteResult r;
    std::vector<std::vector<double>> per(static_cast<std::size_t>(threads));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> ts;
    const store::EpochMs base = 1764000000000;
    for (int w = 0; w < threads; ++w) {
        ts.emplace_back([&, w] {
            auto& v = per[static_cast<std::size_t>(w)];
            v.reserve(static_cast<std::size_t>(calls / threads + 1) * (3 + kTurnsPerCall));
            ready++;
            while (!go) std::this_thread::yield();
            for (int i = w; i < calls; i += threads) {
                const store::EpochMs t0 = base + static_cast<store::EpochMs>(i) * 1000;
                store::CallRow c;
                c.uid = uid_of(i);
                c.direction = i % 3 == 0 ? "outbound" : "inbound";
                c.from_uri = "sip:+4930" + std::to_string(1000000 + i) + "@pbx.example.com";
                c.to_uri = "sip:1001@pbx.example.com";
                c.sip_call_id = "a84b4c76e66710-" + std::to_string(i) + "@10.0.0.2";
                c.line = i % 2 ? "office" : "sales";
                c.handler = "conversation";
                c.started_at = t0;
                auto timed = [&](auto&& fn) {
                    const auto s = Clock::now();
                    fn();
                    v.push_back(us_since(s));
                };
                timed([&] { db.call_started(std::move(c)); });
                timed([&] { db.call_answered(uid_of(i), t0 + 800); });
                for (int k = 1; k <= kTurnsPerCall; ++k) {
                    store::TurnRow t = make_turn(i, k, t0 + 800 + k * 5000);
                    timed([&] { db.turn(uid_of(i), std::move(t)); });
                }
                timed([&] { db.call_ended(uid_of(i), t0 + 800 + 25000, "remote_bye"); });
            }
        });
    }
    while (ready < threads) std::this_thread::yield();
    const auto t0 = Clock::now();
    go = true;
    for (auto& t : ts) t.join();
    db.flush();
    r.commit_s = std::chrono::duration<double>(Clock::now() - t0).count();
    for (auto& v : per) r.enqueue_us.insert(r.enqueue_us.end(), v.begin(), v.end());
    r.items = r.enqueue_us.size();
    r.dropped = db.dropped();
    return r;
}

template <typename Fn>
std::vector<double> time_n(int n, Fn&& fn) {
    std::vector<double> v;
    v.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const auto s = Clock::now();
        fn(i);
        v.push_back(us_since(s));
    }
    return v;
}

// The series a running Parley has after `calls` calls (same labels as apps/parley/ops.cpp and main.cpp).
void fill_metrics(metrics::Registry& r, int calls) {
    r.set("parley_calls_active", {}, 12);
    for (const char* line : {"office", "sales"}) r.set("parley_line_registered", {{"line", line}}, 1);
    for (const char* e : {"stt", "llm", "tts"}) r.set("parley_engine_queue_depth", {{"engine", e}}, 1);
    r.add("parley_store_dropped_total", {}, 0);
    const char* outcomes[] = {"completed", "missed", "failed", "transferred"};
    const char* stages[] = {"eot", "stt_final", "llm_first_token", "first_sentence", "tts_first_audio", "overhead"};
    for (int i = 0; i < calls; ++i) {
        r.add("parley_calls_total", {{"direction", i % 3 == 0 ? "outbound" : "inbound"}, {"outcome", outcomes[i % 4]}});
        r.add("parley_rtp_packets_received_total", {}, 1250);
        r.add("parley_rtp_packets_lost_total", {}, i % 10 == 0 ? 1 : 0);
        r.observe("parley_rtp_jitter_seconds", {}, 0.001 * (i % 30));
        for (int k = 1; k <= kTurnsPerCall; ++k) {
            r.add("parley_turns_total", {{"trigger", k == 1 ? "silence" : (i % 9 == 0 ? "dtmf" : "speech")}});
            r.observe("parley_voice_to_voice_seconds", {}, 0.6 + 0.01 * (i % 50));
            for (std::size_t s = 0; s < std::size(stages); ++s)
                r.observe("parley_stage_seconds", {{"stage", stages[s]}}, 0.01 * static_cast<double>((i + k) % 60 + 1));
        }
    }
}

// One SSE client on its own thread: counts the events (frames ending in a blank line) after ": connected".
class SseCounter {
public:
    explicit SseCounter(int port) {
        thread_ = std::thread([this, port] {
            httplib::Client c("127.0.0.1", port);
            c.set_read_timeout(30);
            c.Get(std::string("/api/events?access_token=") + kToken, [this](const char* data, std::size_t n) {
                for (std::size_t i = 0; i < n; ++i) {
                    if (data[i] == '\n' && last_nl_) frames_++;
                    last_nl_ = data[i] == '\n';
                }
                return !abort_.load();
            });
            done_ = true;
        });
    }
    ~SseCounter() {
        abort_ = true;
        if (thread_.joinable()) thread_.join();
    }
    bool connected() const { return frames_.load() >= 1; }
    long events() const { return frames_.load() - 1; }  // minus the ": connected" frame
    bool done() const { return done_.load(); }
    void stop() { abort_ = true; }

private:
    std::atomic<long> frames_{0};
    bool last_nl_ = false;
    std::atomic<bool> abort_{false}, done_{false};
    std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
    int calls = 10000, threads = 4;
    std::string log_level = "error";  // the default-queue burst logs every write it loses; the table counts them
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--calls") calls = std::max(100, std::atoi(argv[i + 1]));
        else if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--log") log_level = argv[i + 1];
        else {
            std::fprintf(stderr, "usage: %s [--calls N] [--threads T] [--log LEVEL]\n", argv[0]);
            return 2;
        }
    }
    parley::log_init(log_level);
    char tmpl[] = "/tmp/parley-ops-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
        std::perror("mkdtemp");
        return 1;
    }
    const std::filesystem::path dir = tmpl;
    struct Cleanup {
        std::filesystem::path d;
        ~Cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    } cleanup{dir};

    const std::uint64_t items_per_call = 3 + kTurnsPerCall;
    std::printf("## ops_bench: %d calls x (start, answer, %d turns, end) = %s writes from %d threads\n\n", calls,
                kTurnsPerCall, fmt_num(static_cast<double>(calls) * static_cast<double>(items_per_call)).c_str(),
                threads);

    // --- 1. store writes ---
    std::string error;
    store::Options big;
    big.queue_capacity = static_cast<std::size_t>(calls) * items_per_call + 16;
    auto db = store::Store::open((dir / "parley.db").string(), &error, big);
    if (!db) {
        std::fprintf(stderr, "store: %s\n", error.c_str());
        return 1;
    }
    const WriteResult w = write_burst(*db, calls, threads);

    WriteResult wd;
    {
        auto db2 = store::Store::open((dir / "default-queue.db").string(), &error);
        if (!db2) {
            std::fprintf(stderr, "store: %s\n", error.c_str());
            return 1;
        }
        wd = write_burst(*db2, calls, threads);
    }

    std::printf("| store writes | p50 / p99 (max) enqueue | commit rate, dropped |\n|---|---|---|\n");
    auto write_row = [&](const char* what, const WriteResult& r) {
        row(what, fmt_us(pct(r.enqueue_us, 0.5)) + " / " + fmt_us(pct(r.enqueue_us, 0.99)) + " (" +
                      fmt_us(pct(r.enqueue_us, 1.0)) + ")",
            fmt_num(static_cast<double>(r.items - r.dropped) / r.commit_s) + " items/s committed (" +
                fmt_num(r.commit_s * 1000) + " ms to flush), " + fmt_num(static_cast<double>(r.dropped)) +
                " dropped");
    };
    write_row(("queue holds the burst (" + fmt_num(static_cast<double>(big.queue_capacity)) + ")").c_str(), w);
    write_row("default queue (4,096)", wd);

    // --- 2. store reads ---
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> pick(0, calls - 1);
    std::printf("\n| store reads (%s calls, %s turns) | p50 | p99 |\n|---|---|---|\n", fmt_num(calls).c_str(),
                fmt_num(static_cast<double>(calls) * kTurnsPerCall).c_str());
    std::size_t sink = 0;
    auto read_row = [&](const std::string& what, const std::vector<double>& v) {
        row(what + " (" + std::to_string(v.size()) + "x)", fmt_us(pct(v, 0.5)), fmt_us(pct(v, 0.99)));
    };
    read_row("query_calls newest page, limit 50", time_n(300, [&](int) {
                 store::CallQuery q;
                 sink += db->query_calls(q).calls.size();
             }));
    std::int64_t found = 0;
    read_row(std::string("query_calls q=\"") + kSearchWord + "\" (in turn text), limit 50", time_n(30, [&](int) {
                 store::CallQuery q;
                 q.q = kSearchWord;
                 found = db->query_calls(q).total;
             }));
    read_row("get_call (4 turns)", time_n(1000, [&](int) { sink += db->get_call(uid_of(pick(rng)))->turns.size(); }));
    std::size_t points = 0;
    read_row("latency(since 0, 500)", time_n(100, [&](int) { points = db->latency(0, 500).size(); }));
    std::printf("\n(search matched %lld calls; latency returned %zu points)\n",
                static_cast<long long>(found), points);

    // --- 3. HTTP ---
    FakeControl control;
    metrics::Registry registry;
    metrics::describe_parley(registry);
    fill_metrics(registry, calls);
    web::ServerOptions o;
    o.port = 0;
    o.token = kToken;
    o.sse_heartbeat_s = 3600;  // no ": ping" frames during the run
    auto server = web::Server::start(o, control, db.get(), registry, &error);
    if (!server) {
        std::fprintf(stderr, "server: %s\n", error.c_str());
        return 1;
    }
    const int port = server->port();
    httplib::Client http("127.0.0.1", port);
    http.set_keep_alive(true);
    http.set_read_timeout(10);
    const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
    int failures = 0;
    std::size_t list_bytes = 0, call_bytes = 0, metrics_bytes = 0;
    auto get = [&](const std::string& path, const httplib::Headers& h, std::size_t* bytes) {
        auto r = http.Get(path, h);
        if (!r || r->status != 200) failures++;
        else *bytes = r->body.size();
    };
    std::printf("\n| HTTP (keep-alive, 127.0.0.1) | p50 | p99 |\n|---|---|---|\n");
    const auto list = time_n(300, [&](int) { get("/api/calls?limit=50", auth, &list_bytes); });
    read_row("GET /api/calls?limit=50", list);
    const auto one = time_n(1000, [&](int) { get("/api/calls/" + uid_of(pick(rng)), auth, &call_bytes); });
    read_row("GET /api/calls/{id}", one);
    const auto met = time_n(300, [&](int) { get("/metrics", {}, &metrics_bytes); });
    read_row("GET /metrics", met);

    // SSE fan-out: 8 clients; publish 1000 events, never more than 200 ahead of the slowest client (the server
    // disconnects a client with 256 waiting), and time until every client has every event.
    constexpr int kClients = 8, kEvents = 1000, kWindow = 200;
    std::vector<std::unique_ptr<SseCounter>> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<SseCounter>(port));
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < until &&
           !std::all_of(clients.begin(), clients.end(), [](auto& c) { return c->connected(); }))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto slowest = [&] {
        long m = kEvents;
        for (auto& c : clients) m = std::min(m, c->events());
        return m;
    };
    store::TurnRow t = make_turn(1, 2, store::now_ms());
    json ev = web::turn_json(t);
    ev["id"] = uid_of(1);
    std::vector<double> publish_us;
    publish_us.reserve(kEvents);
    const auto s0 = Clock::now();
    const auto deadline = s0 + std::chrono::seconds(20);
    for (int i = 0; i < kEvents; ++i) {
        while (i - slowest() >= kWindow && Clock::now() < deadline) std::this_thread::yield();
        ev["idx"] = i;
        const auto s = Clock::now();
        server->publish("turn", ev);
        publish_us.push_back(us_since(s));
    }
    while (slowest() < kEvents && Clock::now() < deadline) std::this_thread::yield();
    const double fan_s = std::chrono::duration<double>(Clock::now() - s0).count();
    const long got = slowest();
    read_row("publish() with 8 SSE clients", publish_us);
    std::printf("\n| SSE fan-out | delivered | rate |\n|---|---|---|\n");
    row("8 clients, 1,000 turn events", std::to_string(got) + " / " + std::to_string(kEvents) +
            " events at the slowest client in " + fmt_num(fan_s * 1000) + " ms",
        fmt_num(kEvents / fan_s) + " events/s (" + fmt_num(kEvents * kClients / fan_s) + " deliveries/s)");
    std::printf("\n(HTTP failures: %d; bodies: list %zu B, call %zu B, /metrics %zu B)\n", failures, list_bytes,
                call_bytes, metrics_bytes);

    for (auto& c : clients) c->stop();
    server->stop();
    clients.clear();
    server.reset();
    db.reset();
    (void)sink;
    return failures == 0 && got == kEvents ? 0 : 1;
}
