// server_test.cpp — the HTTP server (src/web) end to end: a real Server on a free port, a fake Control, a real
// Store on a temp file and cpp-httplib's client. Auth, pagination, validation, recordings with Range, SSE,
// /metrics, health checks, shutdown with connected SSE clients.
#include "web/server.h"

#include <cpp-httplib/httplib.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace {

using nlohmann::json;
using namespace parley;

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";

class FakeControl : public web::Control {
public:
    std::mutex mu;
    std::vector<web::LiveCall> live;
    std::vector<std::string> originated;  // "to|line|first_message"
    std::vector<std::string> hung_up;
    std::vector<json> patches;
    web::Failure originate_failure{0, ""};  // status 0 = succeed
    std::vector<store::LineRow> line_rows = {{"office", "sip:pbx", "1001", "registered", 5000},
                                             {"spare", "sip:pbx2", "2002", "unknown", 0}};
    web::Readiness ready{true, 1, 1};
    json config_json = json{{"agent", {{"greeting", "hi"}}},
                            {"lines", json::array({json{{"name", "office"}, {"registrar", "sip:pbx"}, {"user", "1001"},
                                                        {"password_set", true}},
                                                   json{{"name", "spare"}, {"registrar", "sip:pbx2"}, {"user", "2002"},
                                                        {"password_set", false}}})}};

    std::vector<web::LiveCall> live_calls() override {
        std::lock_guard lock(mu);
        return live;
    }
    std::string originate(const std::string& to, const std::string& line, const std::string& first_message,
                          web::Failure* failure) override {
        std::lock_guard lock(mu);
        if (originate_failure.status != 0) {
            *failure = originate_failure;
            return "";
        }
        originated.push_back(to + "|" + line + "|" + first_message);
        return "1764064800123-42";
    }
    bool hangup(const std::string& uid) override {
        std::lock_guard lock(mu);
        hung_up.push_back(uid);
        for (const auto& c : live) {
            if (c.uid == uid) return true;
        }
        return false;
    }
    json config() override {
        std::lock_guard lock(mu);
        return config_json;
    }
    std::optional<json> update_config(const json& patch, web::Failure* failure) override {
        std::lock_guard lock(mu);
        patches.push_back(patch);
        if (patch.contains("bad")) {
            *failure = {400, "bad: unknown section"};
            return std::nullopt;
        }
        if (patch.contains("busy")) {
            *failure = {409, "another configuration change is being applied; try again"};
            return std::nullopt;
        }
        return json{{"applied", {"agent.greeting"}}, {"restart_required", json::array()}, {"config", {{"x", 1}}}};
    }
    std::vector<store::LineRow> lines() override {
        std::lock_guard lock(mu);
        return line_rows;
    }
    web::Readiness readiness() override {
        std::lock_guard lock(mu);
        return ready;
    }
};

std::string tmp_path(const std::string& name) {
    return std::string(PARLEY_WEB_TMP_DIR) + "/" + name + "-" + std::to_string(::getpid());
}

void write_wav(const std::string& path, std::size_t data_bytes) {
    std::ofstream f(path, std::ios::binary);
    auto u32 = [&](std::uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
    auto u16 = [&](std::uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
    f.write("RIFF", 4);
    u32(static_cast<std::uint32_t>(36 + data_bytes));
    f.write("WAVEfmt ", 8);
    u32(16);
    u16(1);
    u16(2);
    u32(16000);
    u32(16000 * 4);
    u16(4);
    u16(16);
    f.write("data", 4);
    u32(static_cast<std::uint32_t>(data_bytes));
    for (std::size_t i = 0; i < data_bytes; ++i) f.put(static_cast<char>(i & 0xff));
}

class ServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        db_path_ = tmp_path(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".db";
        std::filesystem::remove(db_path_);
        std::string error;
        db_ = store::Store::open(db_path_, &error);
        ASSERT_TRUE(db_) << error;
        start_server();
    }
    void TearDown() override {
        server_.reset();
        db_.reset();
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_path_ + suffix);
        if (!wav_path_.empty()) std::filesystem::remove(wav_path_);
    }
    void start_server() {
        std::string error;
        web::ServerOptions o;
        o.port = 0;
        o.token = kToken;
        o.max_sse_clients = max_sse_;
        o.sse_heartbeat_s = 1;
        server_ = web::Server::start(o, control_, db_.get(), registry_, &error);
        ASSERT_TRUE(server_) << error;
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", server_->port());
        c.set_read_timeout(5);
        return c;
    }
    httplib::Headers auth() const { return {{"Authorization", std::string("Bearer ") + kToken}}; }
    httplib::Result get(const std::string& path) { return client().Get(path, auth()); }

    // `n` calls: uid "c<i>", started_at 1000 + i, alternating direction, every third on line "office".
    void add_calls(int n) {
        for (int i = 0; i < n; ++i) {
            store::CallRow c;
            c.uid = "c" + std::to_string(i);
            c.direction = i % 2 ? "outbound" : "inbound";
            c.from_uri = "sip:from" + std::to_string(i) + "@example.com";
            c.to_uri = "sip:parley@127.0.0.1";
            c.sip_call_id = "sipid" + std::to_string(i);
            c.line = i % 3 == 0 ? "office" : "";
            c.handler = "conversation";
            c.started_at = 1000 + i;
            db_->call_started(c);
        }
        db_->flush();
    }

    std::string db_path_, wav_path_;
    int max_sse_ = 8;
    FakeControl control_;
    metrics::Registry registry_;
    std::unique_ptr<store::Store> db_;
    std::unique_ptr<web::Server> server_;
};

json body_json(const httplib::Result& r) { return json::parse(r->body); }

TEST_F(ServerTest, RejectsMissingOrWrongToken) {
    auto r = client().Get("/api/calls");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
    EXPECT_TRUE(body_json(r).contains("error"));
    r = client().Get("/api/calls", httplib::Headers{{"Authorization", "Bearer wrong-token-wrong-token-wrong-tok"}});
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
    r = client().Get(std::string("/api/calls?access_token=") + kToken + "x");
    EXPECT_EQ(r->status, 401);
    r = client().Get("/api/nothing");  // unknown routes under /api need the token too
    EXPECT_EQ(r->status, 401);
}

TEST_F(ServerTest, AcceptsHeaderOrQueryToken) {
    auto r = get("/api/calls");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    r = client().Get(std::string("/api/calls?access_token=") + kToken);
    EXPECT_EQ(r->status, 200) << r->body;
}

TEST_F(ServerTest, PaginatesWithoutOverlap) {
    add_calls(7);
    auto r1 = get("/api/calls?limit=3&offset=0");
    auto r2 = get("/api/calls?limit=3&offset=3");
    auto r3 = get("/api/calls?limit=3&offset=6");
    ASSERT_TRUE(r1 && r2 && r3);
    const json a = body_json(r1), b = body_json(r2), c = body_json(r3);
    EXPECT_EQ(a["total"], 7);
    EXPECT_EQ(a["limit"], 3);
    EXPECT_EQ(b["offset"], 3);
    ASSERT_EQ(a["calls"].size(), 3u);
    ASSERT_EQ(b["calls"].size(), 3u);
    ASSERT_EQ(c["calls"].size(), 1u);
    std::set<std::string> ids;
    for (const auto* page : {&a, &b, &c}) {
        for (const auto& call : (*page)["calls"]) ids.insert(call["id"]);
    }
    EXPECT_EQ(ids.size(), 7u);
    EXPECT_EQ(a["calls"][0]["id"], "c6");  // newest first
    EXPECT_EQ(a["calls"][0]["live"], false);
    EXPECT_EQ(a["calls"][0]["started_at"], 1006);
    EXPECT_TRUE(a["calls"][0]["ended_at"].is_null());
    EXPECT_TRUE(a["calls"][0]["duration_s"].is_null());
}

TEST_F(ServerTest, FiltersPassThrough) {
    add_calls(9);
    json j = body_json(get("/api/calls?direction=outbound"));
    EXPECT_EQ(j["total"], 4);
    for (const auto& c : j["calls"]) EXPECT_EQ(c["direction"], "outbound");
    j = body_json(get("/api/calls?line=office"));
    EXPECT_EQ(j["total"], 3);
    j = body_json(get("/api/calls?since=1002&until=1005"));
    EXPECT_EQ(j["total"], 3);
    j = body_json(get("/api/calls?q=from7"));
    ASSERT_EQ(j["total"], 1);
    EXPECT_EQ(j["calls"][0]["id"], "c7");
    j = body_json(get("/api/calls?status=open"));
    EXPECT_EQ(j["total"], 9);
    {
        std::lock_guard lock(control_.mu);
        control_.live.push_back(web::LiveCall{"c4", "inbound", "", "", "", "", "", "up", 1004, 0});
    }
    j = body_json(get("/api/calls?status=live"));
    ASSERT_EQ(j["total"], 1);
    EXPECT_EQ(j["calls"][0]["id"], "c4");
    EXPECT_EQ(j["calls"][0]["live"], true);
}

TEST_F(ServerTest, BadParametersAre400NamingTheField) {
    struct Case {
        std::string path, names;
    } cases[] = {{"/api/calls?limit=0", "limit"},      {"/api/calls?limit=501", "limit"},
                 {"/api/calls?limit=abc", "limit"},    {"/api/calls?offset=-1", "offset"},
                 {"/api/calls?since=x", "since"},      {"/api/calls?until=1.5", "until"},
                 {"/api/calls?direction=up", "direction"}, {"/api/calls?status=gone", "status"},
                 {"/api/calls?colour=red", "colour"},  {"/api/calls?limit=1&limit=2", "limit"},
                 {"/api/stats/latency?limit=0", "limit"}, {"/api/lines?x=1", "x"}};
    for (const auto& c : cases) {
        auto r = get(c.path);
        ASSERT_TRUE(r) << c.path;
        EXPECT_EQ(r->status, 400) << c.path;
        const std::string error = body_json(r)["error"];
        EXPECT_NE(error.find(c.names), std::string::npos) << c.path << ": " << error;
    }
}

TEST_F(ServerTest, PostCallValidatesAndReturnsUid) {
    auto post = [&](const std::string& body) { return client().Post("/api/calls", auth(), body, "application/json"); };
    auto r = post(R"({"to": "sip:1001@pbx.example.com", "line": "office", "first_message": "Hello"})");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(body_json(r)["id"], "1764064800123-42");
    ASSERT_EQ(control_.originated.size(), 1u);
    EXPECT_EQ(control_.originated[0], "sip:1001@pbx.example.com|office|Hello");

    struct Case {
        std::string body, names;
    } cases[] = {{"{not json", "JSON"},
                 {"[1,2]", "object"},
                 {R"({"to": "sip:a@b", "colour": "red"})", "colour"},
                 {R"({"to": "tel:+15551234"})", "to"},
                 {R"({"line": "office"})", "to"},
                 {R"({"to": 5})", "to"},
                 {R"({"to": "sip:a@b", "first_message": ")" + std::string(1001, 'x') + "\"}", "first_message"}};
    for (const auto& c : cases) {
        r = post(c.body);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << c.body;
        const std::string error = body_json(r)["error"];
        EXPECT_NE(error.find(c.names), std::string::npos) << c.body << ": " << error;
    }
    EXPECT_EQ(post(R"({"to": "sips:a@b", "first_message": ")" + std::string(1000, 'x') + "\"}")->status, 201);

    control_.originate_failure = {400, "unknown line: nowhere"};
    r = post(R"({"to": "sip:a@b", "line": "nowhere"})");
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(body_json(r)["error"], "unknown line: nowhere");
    control_.originate_failure = {503, "call limit reached"};
    r = post(R"({"to": "sip:a@b"})");
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(body_json(r)["error"], "call limit reached");
    EXPECT_EQ(post(std::string(70 * 1024, ' '))->status, 413);
}

TEST_F(ServerTest, GetCallAndNotFound) {
    add_calls(1);
    store::TurnRow t;
    t.idx = 1;
    t.trigger = "speech";
    t.user_text = "what are your hours";
    t.reply_text = "Nine to five.";
    t.first_rtp_ms = 575.4;
    t.overhead_ms = 9.14;
    t.speech_end_at = 1500;
    db_->call_answered("c0", 1010);
    db_->turn("c0", t);
    db_->call_ended("c0", 31870, "remote_bye");
    db_->flush();
    auto r = get("/api/calls/c0");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    EXPECT_EQ(j["id"], "c0");
    EXPECT_DOUBLE_EQ(j["duration_s"].get<double>(), 30.86);
    EXPECT_EQ(j["end_reason"], "remote_bye");
    ASSERT_EQ(j["turns"].size(), 1u);
    EXPECT_EQ(j["turns"][0]["user"], "what are your hours");
    EXPECT_EQ(j["turns"][0]["timing"]["voice_to_voice_ms"], 575);
    EXPECT_DOUBLE_EQ(j["turns"][0]["timing"]["overhead_ms"].get<double>(), 9.1);
    EXPECT_TRUE(j["turns"][0]["timing"]["eot_ms"].is_null());
    EXPECT_TRUE(j["events"].is_array());

    r = get("/api/calls/nope");
    EXPECT_EQ(r->status, 404);
    EXPECT_TRUE(body_json(r).contains("error"));
    EXPECT_EQ(get("/api/nothing/here")->status, 404);
    EXPECT_EQ(get("/api/calls/nope/recording")->status, 404);
    EXPECT_EQ(get("/api/calls/c0/recording")->status, 404);  // not recorded
    EXPECT_EQ(client().Patch("/api/calls", auth(), "{}", "application/json")->status, 405);

    const json lat = body_json(get("/api/stats/latency?since=0"));
    ASSERT_EQ(lat["points"].size(), 1u);
    EXPECT_EQ(lat["points"][0]["id"], "c0");
    EXPECT_EQ(lat["points"][0]["voice_to_voice_ms"], 575);
}

TEST_F(ServerTest, DeleteHangsUpLiveCalls) {
    {
        std::lock_guard lock(control_.mu);
        control_.live.push_back(web::LiveCall{"1-1", "inbound", "", "", "", "", "", "up", 1, 0});
    }
    auto r = client().Delete("/api/calls/1-1", auth());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(body_json(r), (json{{"id", "1-1"}, {"status", "hanging_up"}}));
    EXPECT_EQ(client().Delete("/api/calls/2-2", auth())->status, 404);
    EXPECT_EQ(control_.hung_up, (std::vector<std::string>{"1-1", "2-2"}));
}

TEST_F(ServerTest, RecordingDownloadWithRange) {
    wav_path_ = tmp_path("rec") + ".wav";
    write_wav(wav_path_, 4000);
    db_->call_started([&] { store::CallRow c; c.uid = "c0"; c.started_at = 1000; c.recording = wav_path_; return c; }());
    db_->flush();
    EXPECT_EQ(body_json(get("/api/calls/c0"))["recording"], true);
    std::ifstream f(wav_path_, std::ios::binary);
    const std::string whole((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());

    auto r = get("/api/calls/c0/recording");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "audio/wav");
    EXPECT_EQ(r->body, whole);

    auto h = auth();
    h.emplace("Range", "bytes=10-109");
    r = client().Get("/api/calls/c0/recording", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->body, whole.substr(10, 100));
    EXPECT_EQ(r->get_header_value("Content-Range"), "bytes 10-109/" + std::to_string(whole.size()));

    r = client().Get(std::string("/api/calls/c0/recording?access_token=") + kToken);  // <audio src=...>
    EXPECT_EQ(r->status, 200);
    std::filesystem::remove(wav_path_);
    EXPECT_EQ(get("/api/calls/c0/recording")->status, 404);
}

TEST_F(ServerTest, LinesListEveryConfiguredLine) {
    const json j = body_json(get("/api/lines"));
    ASSERT_EQ(j["lines"].size(), 2u);
    EXPECT_EQ(j["lines"][0]["name"], "office");
    EXPECT_EQ(j["lines"][0]["registered"], true);
    EXPECT_EQ(j["lines"][0]["updated_at"], 5000);
    EXPECT_EQ(j["lines"][1]["name"], "spare");
    EXPECT_EQ(j["lines"][1]["status"], "unknown");
    EXPECT_EQ(j["lines"][1]["registered"], false);
    EXPECT_EQ(j["lines"][1]["updated_at"], nullptr);
    EXPECT_EQ(j["lines"][1]["user"], "2002");
    // A failed line says why; only "registered" counts as registered.
    control_.line_rows[1].status = "failed: 403 Forbidden";
    const json k = body_json(get("/api/lines"));
    EXPECT_EQ(k["lines"][1]["status"], "failed: 403 Forbidden");
    EXPECT_EQ(k["lines"][1]["registered"], false);
}

TEST_F(ServerTest, ConfigDelegatesToControl) {
    auto r = get("/api/config");
    ASSERT_TRUE(r);
    EXPECT_EQ(body_json(r), control_.config());  // nothing added beyond what the Control returns

    r = client().Put("/api/config", auth(), R"({"agent": {"greeting": "Hi"}})", "application/json");
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_json(r), (json{{"applied", {"agent.greeting"}}, {"restart_required", json::array()},
                                  {"config", {{"x", 1}}}}));
    ASSERT_EQ(control_.patches.size(), 1u);
    EXPECT_EQ(control_.patches[0], (json{{"agent", {{"greeting", "Hi"}}}}));

    r = client().Put("/api/config", auth(), R"({"bad": 1})", "application/json");
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(body_json(r)["error"], "bad: unknown section");
    r = client().Put("/api/config", auth(), R"({"busy": 1})", "application/json");
    EXPECT_EQ(r->status, 409);  // the Control's status goes through as it is
    EXPECT_EQ(client().Put("/api/config", auth(), "[]", "application/json")->status, 400);
    EXPECT_EQ(client().Put("/api/config", auth(), "{", "application/json")->status, 400);
    EXPECT_EQ(client().Put("/api/config", auth(), std::string(65 * 1024, ' '), "application/json")->status, 413);
}

TEST_F(ServerTest, MetricsHealthAndReadiness) {
    registry_.describe("parley_calls_active", metrics::Type::kGauge, "Calls now.");
    registry_.set("parley_calls_active", {}, 3);
    EXPECT_EQ(client().Get("/api/calls")->status, 401);
    auto r = client().Get("/metrics");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_NE(r->body.find("parley_calls_active 3\n"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("# TYPE parley_http_requests_total counter"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("parley_http_requests_total{code=\"401\"} 1"), std::string::npos) << r->body;

    r = client().Get("/healthz");
    EXPECT_EQ(r->status, 200);
    r = client().Get("/readyz");
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_json(r)["ready"], true);
    {
        std::lock_guard lock(control_.mu);
        control_.ready.lines_registered = 0;
    }
    r = client().Get("/readyz");
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(body_json(r), (json{{"ready", false}, {"models_loaded", true}, {"lines_registered", 0},
                                  {"lines_total", 1}}));
}

TEST_F(ServerTest, ServesTheDashboardWithoutToken) {
    auto r = client().Get("/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
    std::ifstream f(std::string(PARLEY_WEB_SOURCE_DIR) + "/index.html", std::ios::binary);
    const std::string index((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(r->body, index);
    EXPECT_EQ(client().Get("/index.html")->body, index);
    EXPECT_EQ(client().Get("/no/such/file.js")->status, 404);
    EXPECT_EQ(client().Get("/../CMakeLists.txt")->status, 404);
}

// Reads an SSE stream on its own thread, collecting what arrives.
class SseReader {
public:
    SseReader(int port, int* status_out = nullptr) : status_out_(status_out) {
        thread_ = std::thread([this, port] {
            httplib::Client c("127.0.0.1", port);
            c.set_read_timeout(10);
            auto r = c.Get(std::string("/api/events?access_token=") + kToken, [this](const char* data, std::size_t n) {
                std::lock_guard lock(mu_);
                text_.append(data, n);
                return !abort_.load();
            });
            std::lock_guard lock(mu_);
            status_ = r ? r->status : -1;
            done_ = true;
        });
    }
    ~SseReader() {
        abort_ = true;
        if (thread_.joinable()) thread_.join();
    }
    bool wait_for(const std::string& needle, int ms = 5000) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (std::chrono::steady_clock::now() < until) {
            {
                std::lock_guard lock(mu_);
                if (text_.find(needle) != std::string::npos) return true;
                if (done_) return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return false;
    }
    std::string text() {
        std::lock_guard lock(mu_);
        return text_;
    }
    bool done() {
        std::lock_guard lock(mu_);
        return done_;
    }
    void join() {
        if (thread_.joinable()) thread_.join();
    }

private:
    int* status_out_;
    std::mutex mu_;
    std::string text_;
    int status_ = 0;
    bool done_ = false;
    std::atomic<bool> abort_{false};
    std::thread thread_;
};

TEST_F(ServerTest, SseDeliversEventsInOrder) {
    SseReader reader(server_->port());
    ASSERT_TRUE(reader.wait_for(": connected"));
    server_->publish("call_started", json{{"id", "1-1"}, {"live", true}});
    server_->publish("call_ended", json{{"id", "1-1"}, {"end_reason", "remote_bye"}});
    ASSERT_TRUE(reader.wait_for("event: call_ended"));
    const std::string text = reader.text();
    const auto a = text.find("event: call_started\ndata: {\"id\":\"1-1\",\"live\":true}\n\n");
    const auto b = text.find("event: call_ended\ndata: {\"end_reason\":\"remote_bye\",\"id\":\"1-1\"}\n\n");
    ASSERT_NE(a, std::string::npos) << text;
    ASSERT_NE(b, std::string::npos) << text;
    EXPECT_LT(a, b);
    EXPECT_TRUE(reader.wait_for(": ping", 3000));  // heartbeat (1 s in this test)
}

TEST_F(ServerTest, SseClientLimitAndPromptShutdown) {
    server_.reset();
    max_sse_ = 1;
    start_server();
    SseReader first(server_->port());
    ASSERT_TRUE(first.wait_for(": connected"));
    auto r = client().Get("/api/events", auth());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_TRUE(body_json(r).contains("error"));

    const auto t0 = std::chrono::steady_clock::now();
    server_.reset();  // with a connected SSE client
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(elapsed, std::chrono::seconds(2));
    first.join();
    EXPECT_TRUE(first.done());
}

TEST_F(ServerTest, StartRefusesShortTokenAndBusyPort) {
    std::string error;
    web::ServerOptions o;
    o.port = 0;
    o.token = "short";
    EXPECT_FALSE(web::Server::start(o, control_, db_.get(), registry_, &error));
    EXPECT_NE(error.find("token"), std::string::npos);
    o.token = kToken;
    o.port = server_->port();
    EXPECT_FALSE(web::Server::start(o, control_, db_.get(), registry_, &error));
    EXPECT_FALSE(error.empty());
}

TEST_F(ServerTest, NoStoreAnswers503) {
    server_.reset();
    std::string error;
    web::ServerOptions o;
    o.port = 0;
    o.token = kToken;
    server_ = web::Server::start(o, control_, nullptr, registry_, &error);
    ASSERT_TRUE(server_) << error;
    EXPECT_EQ(get("/api/calls")->status, 503);
    EXPECT_EQ(get("/api/lines")->status, 200);
}

}  // namespace
