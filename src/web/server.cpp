// server.cpp — Parley's HTTP server (server.h) on cpp-httplib: REST API, SSE, /metrics, health, dashboard.
#include "web/server.h"

#include <cpp-httplib/httplib.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "common/log.h"
#include "web/assets.h"

namespace parley::web {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxBody = 64 * 1024;
constexpr std::size_t kSseQueueMax = 256;  // events waiting for one client; more: it is disconnected
constexpr const char* kHttpRequests = "parley_http_requests_total";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
    send_json(res, status, json{{"error", message}});
}

// Equal strings in time independent of where they differ (the token).
bool constant_time_equal(const std::string& a, const std::string& b) {
    const std::size_t n = std::max(a.size(), b.size());
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

// Every query parameter must be in `allowed` (access_token always is) and given at most once.
bool check_params(const httplib::Request& req, httplib::Response& res, std::initializer_list<std::string_view> allowed) {
    // Only the URL's query counts: httplib also puts a form-encoded body's fields in req.params (curl -d sends
    // a JSON body as application/x-www-form-urlencoded), and bodies are read as JSON whatever their type.
    const auto q = req.target.find('?');
    httplib::Params url_params;
    if (q != std::string::npos) httplib::detail::parse_query_text(req.target.substr(q + 1), url_params);
    for (const auto& param : url_params) {
        const std::string& key = param.first;
        if (key != "access_token" && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            send_error(res, 400, "unknown query parameter: " + key);
            return false;
        }
        if (url_params.count(key) > 1) {
            send_error(res, 400, "query parameter given more than once: " + key);
            return false;
        }
    }
    return true;
}

// An integer query parameter in [lo, hi]; `value` keeps its default when absent. false: 400 sent.
bool int_param(const httplib::Request& req, httplib::Response& res, const std::string& name, std::int64_t lo,
               std::int64_t hi, std::int64_t* value) {
    if (!req.has_param(name)) return true;
    const std::string s = req.get_param_value(name);
    std::int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) {
        send_error(res, 400, name + ": expected an integer, got \"" + s + "\"");
        return false;
    }
    if (v < lo || v > hi) {
        send_error(res, 400, name + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                 ", got " + s);
        return false;
    }
    *value = v;
    return true;
}

// A JSON object body; false: 400 sent.
bool json_body(const httplib::Request& req, httplib::Response& res, json* out) {
    try {
        *out = json::parse(req.body);
    } catch (const json::parse_error& e) {
        send_error(res, 400, std::string("bad JSON: ") + e.what());
        return false;
    }
    if (!out->is_object()) {
        send_error(res, 400, "bad JSON: the body must be a JSON object");
        return false;
    }
    return true;
}

std::size_t utf8_length(const std::string& s) {
    std::size_t n = 0;
    for (const char c : s) {
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
    }
    return n;
}

bool starts_with_ci(const std::string& s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    }
    return true;
}

std::string content_type_for(std::string_view path) {
    const auto dot = path.rfind('.');
    const std::string_view ext = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
    if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
    if (ext == "css") return "text/css; charset=utf-8";
    if (ext == "json" || ext == "map") return "application/json";
    if (ext == "webmanifest") return "application/manifest+json";
    if (ext == "svg") return "image/svg+xml";
    if (ext == "png") return "image/png";
    if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
    if (ext == "gif") return "image/gif";
    if (ext == "ico") return "image/x-icon";
    if (ext == "webp") return "image/webp";
    if (ext == "woff2") return "font/woff2";
    if (ext == "woff") return "font/woff";
    if (ext == "txt") return "text/plain; charset=utf-8";
    if (ext == "wav") return "audio/wav";
    return "application/octet-stream";
}

// One connected /api/events client.
struct SseClient {
    std::deque<std::string> queue;
    bool overflowed = false;
};

class ServerImpl final : public Server {
public:
    ServerImpl(const ServerOptions& options, Control& control, store::Store* db, metrics::Registry& registry)
        : options_(options), control_(control), db_(db), registry_(registry) {}

    ~ServerImpl() override { stop(); }

    bool start(std::string* error) {
        registry_.describe(kHttpRequests, metrics::Type::kCounter, "HTTP requests answered, by status code.");
        const std::size_t threads = static_cast<std::size_t>(std::max(2, options_.threads));
        http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
        http_.set_payload_max_length(kMaxBody);
        // SO_REUSEADDR only: httplib's default SO_REUSEPORT would let a second Parley share (and split) the port.
        http_.set_socket_options([](int sock) {
            int yes = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        });
        http_.set_keep_alive_timeout(5);
        http_.set_read_timeout(5);
        http_.set_write_timeout(5);
        routes();

        int port = 0;
        if (options_.port == 0) {
            port = http_.bind_to_any_port(options_.host);
        } else {
            port = http_.bind_to_port(options_.host, options_.port) ? options_.port : -1;
        }
        if (port <= 0) {
            if (error) *error = "cannot listen on " + options_.host + ":" + std::to_string(options_.port);
            return false;
        }
        port_ = static_cast<std::uint16_t>(port);
        thread_ = std::thread([this] { http_.listen_after_bind(); });
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!http_.is_running() && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (!http_.is_running()) {
            if (error) *error = "the HTTP server did not start on " + options_.host + ":" + std::to_string(port);
            stop();
            return false;
        }
        PLOG_INFO("event=http_listening address={}:{}", options_.host, port_);
        return true;
    }

    std::uint16_t port() const override { return port_; }

    void publish(const std::string& type, const json& data) override {
        std::string frame = "event: " + type + "\ndata: " + dump(data) + "\n\n";
        std::lock_guard lock(sse_mu_);
        if (stopping_) return;
        for (auto& c : sse_clients_) {
            if (c->overflowed) continue;
            if (c->queue.size() >= kSseQueueMax) {
                c->overflowed = true;  // it cannot keep up: disconnect it (EventSource reconnects)
                c->queue.clear();
                continue;
            }
            c->queue.push_back(frame);
        }
        sse_cv_.notify_all();
    }

    void stop() override {
        {
            std::lock_guard lock(sse_mu_);
            if (stopped_) return;
            stopped_ = stopping_ = true;
        }
        sse_cv_.notify_all();
        http_.stop();
        if (thread_.joinable()) thread_.join();
    }

private:
    // --- auth, accounting ---

    bool authorized(const httplib::Request& req) const {
        std::string given;
        const std::string auth = req.get_header_value("Authorization");
        if (starts_with_ci(auth, "bearer ")) {
            given = auth.substr(7);
            while (!given.empty() && given.front() == ' ') given.erase(0, 1);
        } else if (req.has_param("access_token")) {
            given = req.get_param_value("access_token");
        } else {
            return false;
        }
        return constant_time_equal(given, options_.token);
    }

    void log_response(const httplib::Request& req, const httplib::Response& res) {
        registry_.add(kHttpRequests, {{"code", std::to_string(res.status)}});
        if (res.status < 400 || req.path == "/readyz") return;  // not ready is not an error (probes poll it)
        std::string message;
        try {
            const json body = json::parse(res.body);
            if (body.is_object() && body.contains("error") && body["error"].is_string()) message = body["error"];
        } catch (const json::exception&) {
        }
        if (res.status >= 500) {
            PLOG_WARN("event=http_error method={} path={} status={} error=\"{}\"", req.method, req.path, res.status,
                      message);
        } else {
            PLOG_INFO("event=http_error method={} path={} status={} error=\"{}\"", req.method, req.path, res.status,
                      message);
        }
    }

    // --- routes ---

    void routes() {
        http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) { log_response(req, res); });
        http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = std::string("internal error: ") + e.what();
            } catch (...) {
            }
            send_error(res, 500, what);
        });
        // Errors httplib produced itself (no route, body too large, bad request line) get a JSON body too.
        http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
            std::string message;
            switch (res.status) {
                case 404: message = "not found: " + req.path; break;
                case 405: message = "method not allowed"; break;
                case 413: message = "request body over 64 KiB"; break;
                case 416: message = "range not satisfiable"; break;
                default: message = httplib::status_message(res.status); break;
            }
            send_error(res, res.status, message);
            return httplib::Server::HandlerResponse::Handled;
        });
        http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (req.path == "/api" || req.path.rfind("/api/", 0) == 0) {
                if (!authorized(req)) {
                    res.set_header("WWW-Authenticate", "Bearer");
                    send_error(res, 401, req.has_header("Authorization") || req.has_param("access_token")
                                             ? "invalid token"
                                             : "missing token: send Authorization: Bearer <token>");
                    return httplib::Server::HandlerResponse::Handled;
                }
            }
            return httplib::Server::HandlerResponse::Unhandled;
        });

        route("/api/calls", {{"GET", [this](auto& q, auto& r) { list_calls(q, r); }},
                             {"POST", [this](auto& q, auto& r) { originate(q, r); }}});
        route(R"(/api/calls/([^/]+)/recording)", {{"GET", [this](auto& q, auto& r) { recording(q, r); }}});
        route(R"(/api/calls/([^/]+))", {{"GET", [this](auto& q, auto& r) { get_call(q, r); }},
                                        {"DELETE", [this](auto& q, auto& r) { hangup(q, r); }}});
        route("/api/stats/latency", {{"GET", [this](auto& q, auto& r) { latency(q, r); }}});
        route("/api/lines", {{"GET", [this](auto& q, auto& r) { lines(q, r); }}});
        route("/api/config", {{"GET", [this](auto& q, auto& r) { get_config(q, r); }},
                              {"PUT", [this](auto& q, auto& r) { put_config(q, r); }}});
        route("/api/events", {{"GET", [this](auto& q, auto& r) { events(q, r); }}});
        route("/metrics", {{"GET", [this](auto&, auto& r) {
                               r.set_content(registry_.render(), "text/plain; version=0.0.4; charset=utf-8");
                           }}});
        route("/healthz", {{"GET", [](auto&, auto& r) { r.set_content("ok\n", "text/plain"); }}});
        route("/readyz", {{"GET", [this](auto& q, auto& r) { readyz(q, r); }}});
        route(R"(/api(/.*)?)", {});  // anything else under /api: 404 (authenticated above)
        http_.Get(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) { static_file(req, res); });
    }

    using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

    // Registers `pattern` (a regex over the path) for its methods; every other method gets 405, and a pattern
    // with no methods answers 404 to all.
    void route(const std::string& pattern, std::vector<std::pair<std::string, Handler>> handlers) {
        auto find = [handlers](const std::string& m) -> const Handler* {
            for (const auto& [method, h] : handlers) {
                if (method == m) return &h;
            }
            return nullptr;
        };
        const bool none = handlers.empty();
        for (const std::string m : {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
            Handler h;
            if (const Handler* found = find(m)) {
                h = *found;
            } else if (none) {
                h = [](const httplib::Request& req, httplib::Response& res) {
                    send_error(res, 404, "not found: " + req.path);
                };
            } else {
                h = [](const httplib::Request& req, httplib::Response& res) {
                    send_error(res, 405, req.method + " not allowed on " + req.path);
                };
            }
            if (m == "GET") http_.Get(pattern, h);
            if (m == "POST") http_.Post(pattern, h);
            if (m == "PUT") http_.Put(pattern, h);
            if (m == "DELETE") http_.Delete(pattern, h);
            if (m == "PATCH") http_.Patch(pattern, h);
            if (m == "OPTIONS") http_.Options(pattern, h);
        }
    }

    bool need_store(httplib::Response& res) {
        if (db_ != nullptr) return true;
        send_error(res, 503, "no store: set store.path to keep calls");
        return false;
    }

    std::unordered_set<std::string> live_uids() {
        std::unordered_set<std::string> uids;
        for (const auto& c : control_.live_calls()) uids.insert(c.uid);
        return uids;
    }

    void list_calls(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {"limit", "offset", "q", "direction", "line", "since", "until", "status"})) return;
        std::int64_t limit = 50, offset = 0, since = 0, until = 0;
        if (!int_param(req, res, "limit", 1, 500, &limit) || !int_param(req, res, "offset", 0, INT32_MAX, &offset) ||
            !int_param(req, res, "since", 0, INT64_MAX, &since) || !int_param(req, res, "until", 0, INT64_MAX, &until)) {
            return;
        }
        store::CallQuery q;
        q.q = req.get_param_value("q");
        q.direction = req.get_param_value("direction");
        if (!q.direction.empty() && q.direction != "inbound" && q.direction != "outbound") {
            send_error(res, 400, "direction: expected inbound or outbound, got \"" + q.direction + "\"");
            return;
        }
        if (req.has_param("direction") && q.direction.empty()) {
            send_error(res, 400, "direction: expected inbound or outbound, got \"\"");
            return;
        }
        q.line = req.get_param_value("line");
        std::string status = req.get_param_value("status");
        static const std::set<std::string> kStatuses = {"live", "open", "ended", "answered", "missed"};
        if (req.has_param("status") && !kStatuses.count(status)) {
            send_error(res, 400, "status: expected live, open, ended, answered or missed, got \"" + status + "\"");
            return;
        }
        q.since = since;
        q.until = until;
        if (!need_store(res)) return;
        const auto live = live_uids();
        json calls = json::array();
        std::int64_t total = 0;
        if (status == "live") {
            // Live calls have no end recorded: take the open ones and keep those Parley has now.
            q.status = "open";
            q.limit = 1000000;
            q.offset = 0;
            const store::CallPage page = db_->query_calls(q);
            std::vector<const store::CallRow*> rows;
            for (const auto& c : page.calls) {
                if (live.count(c.uid)) rows.push_back(&c);
            }
            total = static_cast<std::int64_t>(rows.size());
            for (std::size_t i = static_cast<std::size_t>(offset); i < rows.size() && calls.size() < static_cast<std::size_t>(limit); ++i) {
                calls.push_back(call_json(*rows[i], true));
            }
        } else {
            q.status = status;
            q.limit = static_cast<int>(limit);
            q.offset = static_cast<int>(offset);
            const store::CallPage page = db_->query_calls(q);
            total = page.total;
            for (const auto& c : page.calls) calls.push_back(call_json(c, live.count(c.uid) > 0));
        }
        send_json(res, 200, json{{"calls", std::move(calls)}, {"total", total}, {"limit", limit}, {"offset", offset}});
    }

    void get_call(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        if (!need_store(res)) return;
        const std::string uid = req.matches[1];
        const auto detail = db_->get_call(uid);
        if (!detail) {
            // A call placed or answered a moment ago may not be committed yet (the store writes on its own
            // thread): a live call is answered from what the runtime knows.
            for (const auto& c : control_.live_calls()) {
                if (c.uid != uid) continue;
                json j = live_call_json(c);
                j["turns"] = json::array();
                j["events"] = json::array();
                send_json(res, 200, j);
                return;
            }
            send_error(res, 404, "no such call: " + uid);
            return;
        }
        json j = call_json(detail->call, live_uids().count(uid) > 0);
        json turns = json::array();
        for (const auto& t : detail->turns) turns.push_back(turn_json(t));
        json events = json::array();
        for (const auto& e : detail->events) events.push_back(event_json(e));
        j["turns"] = std::move(turns);
        j["events"] = std::move(events);
        send_json(res, 200, j);
    }

    void recording(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        if (!need_store(res)) return;
        const std::string uid = req.matches[1];
        const auto detail = db_->get_call(uid);
        if (!detail) {
            send_error(res, 404, "no such call: " + uid);
            return;
        }
        const std::string& path = detail->call.recording;
        const int fd = path.empty() ? -1 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (fd >= 0) ::close(fd);
            send_error(res, 404, "no recording for call " + uid);
            return;
        }
        auto file = std::shared_ptr<int>(new int(fd), [](int* p) {
            ::close(*p);
            delete p;
        });
        res.set_header("Accept-Ranges", "bytes");
        res.set_header("Cache-Control", "no-cache");
        // The size now: a live call's recording keeps growing; a later request sees more.
        res.set_content_provider(
            static_cast<std::size_t>(st.st_size), "audio/wav",
            [file](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                char buf[64 * 1024];
                while (length > 0) {
                    const std::size_t want = std::min(length, sizeof buf);
                    const ssize_t n = ::pread(*file, buf, want, static_cast<off_t>(offset));
                    if (n <= 0) return false;
                    if (!sink.write(buf, static_cast<std::size_t>(n))) return false;
                    offset += static_cast<std::size_t>(n);
                    length -= static_cast<std::size_t>(n);
                }
                return true;
            });
    }

    void originate(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        json body;
        if (!json_body(req, res, &body)) return;
        std::string to, line, first_message;
        for (const auto& [key, value] : body.items()) {
            if (key != "to" && key != "line" && key != "first_message") {
                send_error(res, 400, "unknown field: " + key);
                return;
            }
            if (!value.is_string()) {
                send_error(res, 400, key + ": expected a string");
                return;
            }
        }
        if (!body.contains("to")) {
            send_error(res, 400, "to: required (a sip: or sips: URI)");
            return;
        }
        to = body["to"].get<std::string>();
        if (!(starts_with_ci(to, "sip:") && to.size() > 4) && !(starts_with_ci(to, "sips:") && to.size() > 5)) {
            send_error(res, 400, "to: expected a sip: or sips: URI, got \"" + to + "\"");
            return;
        }
        if (body.contains("line")) line = body["line"].get<std::string>();
        if (body.contains("first_message")) {
            first_message = body["first_message"].get<std::string>();
            if (utf8_length(first_message) > 1000) {
                send_error(res, 400, "first_message: at most 1000 characters");
                return;
            }
        }
        Failure failure{503, ""};
        const std::string uid = control_.originate(to, line, first_message, &failure);
        if (uid.empty()) {
            send_error(res, failure.status, failure.message.empty() ? "the call could not be placed" : failure.message);
            return;
        }
        send_json(res, 201, json{{"id", uid}});
    }

    void hangup(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        const std::string uid = req.matches[1];
        if (!control_.hangup(uid)) {
            send_error(res, 404, "no such live call: " + uid);
            return;
        }
        send_json(res, 202, json{{"id", uid}, {"status", "hanging_up"}});
    }

    void latency(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {"since", "limit"})) return;
        std::int64_t since = store::now_ms() - 24LL * 3600 * 1000, limit = 500;
        if (!int_param(req, res, "since", 0, INT64_MAX, &since) || !int_param(req, res, "limit", 1, 500, &limit)) return;
        if (!need_store(res)) return;
        json points = json::array();
        for (const auto& p : db_->latency(since, static_cast<int>(limit))) {
            points.push_back(json{{"id", p.uid},
                                  {"idx", p.idx},
                                  {"at", p.at > 0 ? json(p.at) : json(nullptr)},
                                  {"voice_to_voice_ms", p.voice_to_voice_ms >= 0 ? json(std::llround(p.voice_to_voice_ms)) : json(nullptr)},
                                  {"overhead_ms", p.overhead_ms >= 0 ? json(std::round(p.overhead_ms * 10) / 10) : json(nullptr)}});
        }
        send_json(res, 200, json{{"points", std::move(points)}});
    }

    void lines(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        json out = json::array();
        for (const auto& l : control_.lines()) out.push_back(line_json(l));  // the runtime's view, store or not
        send_json(res, 200, json{{"lines", std::move(out)}});
    }

    void get_config(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        send_json(res, 200, control_.config());
    }

    void put_config(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        json patch;
        if (!json_body(req, res, &patch)) return;
        Failure failure;
        const auto result = control_.update_config(patch, &failure);
        if (!result) {
            send_error(res, failure.status, failure.message.empty() ? "invalid configuration" : failure.message);
            return;
        }
        send_json(res, 200, *result);
    }

    void readyz(const httplib::Request&, httplib::Response& res) {
        const Readiness r = control_.readiness();
        send_json(res, r.ready() ? 200 : 503,
                  json{{"ready", r.ready()},
                       {"models_loaded", r.models_loaded},
                       {"lines_registered", r.lines_registered},
                       {"lines_total", r.lines_total}});
    }

    void events(const httplib::Request& req, httplib::Response& res) {
        if (!check_params(req, res, {})) return;
        auto client = std::make_shared<SseClient>();
        {
            std::lock_guard lock(sse_mu_);
            if (stopping_) {
                send_error(res, 503, "shutting down");
                return;
            }
            if (static_cast<int>(sse_clients_.size()) >= options_.max_sse_clients) {
                send_error(res, 503, "too many event clients (at most " + std::to_string(options_.max_sse_clients) + ")");
                return;
            }
            sse_clients_.push_back(client);
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Accel-Buffering", "no");
        auto first = std::make_shared<bool>(true);
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, client, first](std::size_t, httplib::DataSink& sink) {
                if (*first) {
                    *first = false;
                    const std::string hello = ": connected\nretry: 3000\n\n";
                    return sink.write(hello.data(), hello.size());
                }
                std::string out;
                {
                    std::unique_lock lock(sse_mu_);
                    const bool woke = sse_cv_.wait_for(lock, std::chrono::seconds(std::max(1, options_.sse_heartbeat_s)),
                                                       [&] { return stopping_ || client->overflowed || !client->queue.empty(); });
                    if (stopping_ || client->overflowed) {
                        lock.unlock();
                        sink.done();
                        return true;
                    }
                    if (!woke) {
                        out = ": ping\n\n";
                    } else {
                        for (auto& f : client->queue) out += f;
                        client->queue.clear();
                    }
                }
                return sink.write(out.data(), out.size());
            },
            [this, client](bool) {
                std::lock_guard lock(sse_mu_);
                sse_clients_.remove(client);
            });
    }

    static void static_file(const httplib::Request& req, httplib::Response& res) {
        std::string_view path = req.path;
        if (path.rfind("/api/", 0) == 0 || path == "/api") {
            send_error(res, 404, "not found: " + req.path);
            return;
        }
        while (!path.empty() && path.front() == '/') path.remove_prefix(1);
        if (path.empty()) path = "index.html";
        const assets::Asset* a = assets::find(path);
        if (a == nullptr) {
            send_error(res, 404, "not found: " + req.path);
            return;
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_content(reinterpret_cast<const char*>(a->data), a->size, content_type_for(path));
    }

    ServerOptions options_;
    Control& control_;
    store::Store* db_;
    metrics::Registry& registry_;
    httplib::Server http_;
    std::thread thread_;
    std::uint16_t port_ = 0;

    std::mutex sse_mu_;
    std::condition_variable sse_cv_;
    std::list<std::shared_ptr<SseClient>> sse_clients_;
    bool stopping_ = false;
    bool stopped_ = false;
};

}  // namespace

std::unique_ptr<Server> Server::start(const ServerOptions& options, Control& control, store::Store* db,
                                      metrics::Registry& registry, std::string* error) {
    if (options.token.size() < 16) {
        if (error) *error = "http token: expected at least 16 characters";
        return nullptr;
    }
    auto server = std::make_unique<ServerImpl>(options, control, db, registry);
    if (!server->start(error)) return nullptr;
    return server;
}

}  // namespace parley::web
