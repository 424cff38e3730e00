// The libcurl client against an in-test cpp-httplib server on 127.0.0.1: streaming, inactivity timeout,
// bounded retries, cancellation, bearer auth, multipart, a stream cut mid-reply.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "net/http_client.h"
#include "test_http_server.h"

using namespace std::chrono_literals;
using parley::CancelToken;
using parley::net::HttpRequest;
using parley::net::perform;
using parley::net::perform_collect;
using parley::testing::nap;
using parley::testing::TestHttpServer;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

HttpRequest request(const std::string& url) {
    HttpRequest r;
    r.url = url;
    r.body = "{}";
    r.connect_timeout_ms = 1000;
    r.timeout_ms = 3000;
    r.retries = 0;
    return r;
}

// Streams `chunks` pieces "chunk-N;" every `gap_ms`; after that, stalls (stall_ms) or cuts the connection.
void add_stream(TestHttpServer& s, const std::string& path, int chunks, int gap_ms, bool cut_after = false,
                int stall_ms = 0) {
    s.server.Post(path, [&s, chunks, gap_ms, cut_after, stall_ms](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/plain", [&s, chunks, gap_ms, cut_after, stall_ms](
                                                           size_t, httplib::DataSink& sink) {
            for (int i = 0; i < chunks; ++i) {
                const std::string piece = "chunk-" + std::to_string(i) + ";";
                if (!sink.write(piece.data(), piece.size())) return false;
                if (!nap(gap_ms, s.stopping)) return false;
            }
            if (cut_after) return false;  // closes the connection without the terminating chunk
            if (stall_ms > 0 && !nap(stall_ms, s.stopping)) return false;
            sink.done();
            return true;
        });
    });
}

}  // namespace

TEST(HttpClient, StreamsChunksAsTheyArrive) {
    TestHttpServer s;
    add_stream(s, "/stream", 5, 60);
    ASSERT_TRUE(s.start());
    std::vector<std::pair<std::string, double>> got;
    const auto t0 = Clock::now();
    const auto r = perform(request(s.url("/stream")), [&](std::string_view c) {
        got.emplace_back(std::string(c), ms_since(t0));
        return true;
    }, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 200);
    std::string all;
    for (auto& g : got) all += g.first;
    EXPECT_EQ(all, "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;");
    ASSERT_GE(got.size(), 3u);  // delivered incrementally, not as one body at the end
    EXPECT_LT(got.front().second + 150, got.back().second);
}

TEST(HttpClient, InactivityTimeoutFiresWithinBound) {
    TestHttpServer s;
    add_stream(s, "/stall", 2, 10, false, 5000);
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/stall"));
    req.timeout_ms = 300;
    req.retries = 2;  // a timeout after data is never retried
    std::string body;
    const auto t0 = Clock::now();
    const auto r = perform_collect(req, &body, CancelToken{});
    const double ms = ms_since(t0);
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.error, "no data for 300 ms from " + s.url());
    EXPECT_EQ(body, "chunk-0;chunk-1;");
    EXPECT_EQ(r.attempts, 1);
    EXPECT_GE(ms, 300);
    EXPECT_LT(ms, 1300);  // generous: a shared 2-core machine
}

TEST(HttpClient, SlowFirstByteAlsoTimesOut) {
    TestHttpServer s;
    s.server.Post("/slow", [&s](const httplib::Request&, httplib::Response& res) {
        nap(3000, s.stopping);
        res.set_content("late", "text/plain");
    });
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/slow"));
    req.timeout_ms = 200;
    const auto t0 = Clock::now();
    std::string body;
    const auto r = perform_collect(req, &body, CancelToken{});
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.timed_out);
    EXPECT_LT(ms_since(t0), 1200);
}

TEST(HttpClient, ConnectionRefusedAfterBoundedRetries) {
    const int port = parley::testing::dead_port();
    auto req = request("http://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions");
    req.retries = 2;
    req.backoff_ms = 50;
    std::string body;
    const auto t0 = Clock::now();
    const auto r = perform_collect(req, &body, CancelToken{});
    const double ms = ms_since(t0);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(r.error, "connect to http://127.0.0.1:" + std::to_string(port) +
                           " failed: Connection refused (after 3 attempts)");
    EXPECT_GE(ms, 50 + 100);  // the backoff happened
    EXPECT_LT(ms, 1500);
}

TEST(HttpClient, ServerErrorRetriedThenSucceeds) {
    TestHttpServer s;
    std::atomic<int> calls{0};
    s.server.Post("/flaky", [&](const httplib::Request&, httplib::Response& res) {
        if (++calls <= 2) {
            res.status = 503;
            res.set_content("{\"error\":\"loading model\"}", "application/json");
        } else {
            res.set_content("fine", "text/plain");
        }
    });
    s.server.Post("/bad", [&](const httplib::Request&, httplib::Response& res) {
        res.status = 400;
        res.set_content("{\"error\":\"bad request\"}", "application/json");
    });
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/flaky"));
    req.retries = 2;
    req.backoff_ms = 10;
    std::string body;
    auto r = perform_collect(req, &body, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(body, "fine");
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(calls.load(), 3);

    // 4xx is not retried, and the body is in the error.
    r = perform_collect(request(s.url("/bad")), &body, CancelToken{});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_NE(r.error.find("HTTP 400"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("bad request"), std::string::npos) << r.error;
    EXPECT_TRUE(body.empty());
}

TEST(HttpClient, CancellationStopsLongStreamPromptly) {
    TestHttpServer s;
    add_stream(s, "/long", 100000, 10);
    ASSERT_TRUE(s.start());
    CancelToken token;
    std::atomic<int> chunks{0};
    Clock::time_point cancelled_at;
    std::thread canceller([&] {
        while (chunks.load() < 5) std::this_thread::sleep_for(1ms);
        cancelled_at = Clock::now();
        token.cancel();
    });
    const auto r = perform(request(s.url("/long")), [&](std::string_view) {
        ++chunks;
        return true;
    }, token);
    const auto returned = Clock::now();
    canceller.join();
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.cancelled);
    EXPECT_EQ(r.error, "cancelled");
    const double ms = std::chrono::duration<double, std::milli>(returned - cancelled_at).count();
    EXPECT_LT(ms, 300);  // one 20 ms poll, plus scheduling slack
}

TEST(HttpClient, CancelWhileWaitingForFirstByte) {
    TestHttpServer s;
    s.server.Post("/slow", [&s](const httplib::Request&, httplib::Response& res) {
        nap(3000, s.stopping);
        res.set_content("late", "text/plain");
    });
    ASSERT_TRUE(s.start());
    CancelToken token;
    std::thread canceller([&] {
        std::this_thread::sleep_for(100ms);
        token.cancel();
    });
    const auto t0 = Clock::now();
    std::string body;
    const auto r = perform_collect(request(s.url("/slow")), &body, token);
    canceller.join();
    EXPECT_TRUE(r.cancelled);
    EXPECT_LT(ms_since(t0), 600);
}

TEST(HttpClient, CallbackReturningFalseStops) {
    TestHttpServer s;
    add_stream(s, "/long", 100000, 5);
    ASSERT_TRUE(s.start());
    int n = 0;
    const auto r = perform(request(s.url("/long")), [&](std::string_view) { return ++n < 3; }, CancelToken{});
    EXPECT_TRUE(r.cancelled);
    EXPECT_EQ(n, 3);
}

TEST(HttpClient, StreamCutMidReplyIsAnError) {
    TestHttpServer s;
    add_stream(s, "/cut", 3, 10, true);
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/cut"));
    req.retries = 2;
    std::string body;
    const auto r = perform_collect(req, &body, CancelToken{});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.attempts, 1);  // data was delivered: never retried
    EXPECT_NE(r.error.find("server closed the stream mid-reply"), std::string::npos) << r.error;
    EXPECT_EQ(body, "chunk-0;chunk-1;chunk-2;");
}

TEST(HttpClient, BearerAndBodySent) {
    TestHttpServer s;
    std::string auth, content_type, got_body;
    s.server.Post("/echo", [&](const httplib::Request& req, httplib::Response& res) {
        auth = req.get_header_value("Authorization");
        content_type = req.get_header_value("Content-Type");
        got_body = req.body;
        res.set_content("ok", "text/plain");
    });
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/echo"));
    req.bearer_token = "sk-test-123";
    req.body = "{\"x\":1}";
    std::string body;
    auto r = perform_collect(req, &body, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(auth, "Bearer sk-test-123");
    EXPECT_EQ(content_type, "application/json");
    EXPECT_EQ(got_body, "{\"x\":1}");

    req.bearer_token.clear();
    r = perform_collect(req, &body, CancelToken{});
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(auth, "");
}

TEST(HttpClient, MultipartUpload) {
    TestHttpServer s;
    std::string file, filename, model;
    s.server.Post("/upload", [&](const httplib::Request& req, httplib::Response& res) {
        if (req.form.has_file("file")) {
            const auto f = req.form.get_file("file");
            file = f.content;
            filename = f.filename;
        }
        model = req.form.get_field("model");
        res.set_content("{\"text\":\"ok\"}", "application/json");
    });
    ASSERT_TRUE(s.start());
    auto req = request(s.url("/upload"));
    std::string blob(70000, '\0');
    for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7);
    req.multipart = {{"file", blob, "a.wav", "audio/wav"}, {"model", "whisper-1", "", ""}};
    std::string body;
    const auto r = perform_collect(req, &body, CancelToken{});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(file, blob);
    EXPECT_EQ(filename, "a.wav");
    EXPECT_EQ(model, "whisper-1");
}

TEST(HttpClient, ManyThreadsAtOnce) {
    TestHttpServer s;
    add_stream(s, "/stream", 4, 5);
    ASSERT_TRUE(s.start());
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&] {
            std::string body;
            if (perform_collect(request(s.url("/stream")), &body, CancelToken{}).ok && body.size() == 32) ++ok;
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 8);
}
