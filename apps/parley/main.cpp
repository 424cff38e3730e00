// parley — the Parley telephone agent.
//
//   parley run  --config parley.toml [--set section.key=value ...]   answer (and place) calls until SIGTERM
//   parley calls | show ID | call URI | hangup ID  [--config ...]     the running Parley, through its HTTP API
//   parley dial URI --config parley.toml [--set ...]                  place one call in this process, exit when it ends
//   parley config                                                     print a config file with every default
#include <CLI/CLI.hpp>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <unordered_map>
#include <iostream>
#include <mutex>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "agent/conversation.h"
#include "call/call_manager.h"
#include "cli.h"
#include "common/config.h"
#include "common/config_json.h"
#include "common/log.h"
#include "engine_gauges.h"
#include "media/recording.h"
#include "metrics/metrics.h"
#include "metrics/parley_metrics.h"
#include "net/nat.h"
#include "ops.h"
#include "sip/sip_stack.h"
#include "store/store.h"
#include "web/server.h"

namespace {

using namespace parley;

// Waits for SIGINT/SIGTERM in the main thread (blocked in every other thread) or for `done`.
class SignalWaiter {
public:
    SignalWaiter() {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        sigaddset(&set_, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any thread starts: all inherit the mask
        std::signal(SIGPIPE, SIG_IGN);
    }
    // Returns the signal number, or 0 when `done()` became true, or -1 on timeout. SIGHUP calls `on_hup`.
    int wait(const std::function<bool()>& done, std::chrono::seconds timeout,
             const std::function<void()>& on_hup = {}) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return -1;
            timespec ts{0, 100 * 1000 * 1000};
            int sig = sigtimedwait(&set_, nullptr, &ts);
            if (sig == SIGHUP) {
                if (on_hup) on_hup();
                else PLOG_INFO("event=sighup action=ignored");
                continue;
            }
            if (sig > 0) return sig;
        }
        return 0;
    }

private:
    sigset_t set_;
};

class EndWatcher final : public call::CallObserver {
public:
    void on_call_ended(const call::CallSummary& s) override {
        std::lock_guard lk(mu_);
        ended_ = true;
        last_ = s;
    }
    bool ended() {
        std::lock_guard lk(mu_);
        return ended_;
    }
    call::CallSummary last() {
        std::lock_guard lk(mu_);
        return last_;
    }

private:
    std::mutex mu_;
    bool ended_ = false;
    call::CallSummary last_;
};

bool is_test_model(const std::string& path) { return path.find("tiny-random") != std::string::npos; }

// The overrides written by PUT /api/config ([http] overrides_file): a JSON patch applied over the config file.
nlohmann::json read_overrides(const std::string& path, std::string* error) {
    if (path.empty() || !std::filesystem::exists(path)) return nlohmann::json::object();
    std::ifstream in(path);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        *error = path + ": not a JSON object (written by PUT /api/config; fix or delete it)";
        return nullptr;
    }
    return j;
}

bool write_private_file(const std::string& path, const std::string& text, std::string* error) {
    std::error_code ec;
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = tmp + ": " + std::strerror(errno);
        return false;
    }
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        *error = path + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

// The config file + --set + a patch of API settings (validated as the file is: patch_to_overrides, load_config).
std::optional<Config> load_with_patch(const std::string& path, const std::vector<std::string>& sets, const Config& base,
                                      const nlohmann::json& patch, std::string* error) {
    auto overrides = patch_to_overrides(patch, base, error);
    if (!overrides) return std::nullopt;
    auto all = sets;
    all.insert(all.end(), overrides->begin(), overrides->end());
    return load_config(path, all, error);
}

// The config file + --set + the API's overrides file. `base_out`: without the overrides; `saved_out`: the
// overrides file's patch.
std::optional<Config> load_full(const std::string& path, const std::vector<std::string>& sets, Config* base_out,
                                nlohmann::json* saved_out, std::string* error) {
    auto base = load_config(path, sets, error);
    if (!base) return std::nullopt;
    auto saved = read_overrides(base->http.overrides_file, error);
    if (saved.is_null()) return std::nullopt;
    auto cfg = load_with_patch(path, sets, *base, saved, error);
    if (!cfg) return std::nullopt;
    if (base_out) *base_out = std::move(*base);
    if (saved_out) *saved_out = std::move(saved);
    return cfg;
}

// [http] token, or the one in token_file, or a new one written there (0600) and printed once.
std::string http_token(const HttpConfig& http, std::string* error) {
    if (!http.token.empty()) return http.token;
    if (auto saved = cli::read_token_file(http.token_file); !saved.empty()) return saved;
    std::random_device rd;
    std::string t;
    static const char* hex = "0123456789abcdef";
    for (int i = 0; i < 32; ++i) {
        unsigned b = rd() & 0xff;
        t.push_back(hex[b >> 4]);
        t.push_back(hex[b & 15]);
    }
    if (!write_private_file(http.token_file, t + "\n", error)) return "";
    std::fprintf(stderr,
                 "\n  HTTP API token (shown once; saved to %s, mode 0600):\n\n      %s\n\n"
                 "  The dashboard asks for it; the CLI (parley calls, show, call, hangup) reads the file.\n\n",
                 http.token_file.c_str(), t.c_str());
    PLOG_INFO("event=http_token_generated file={}", http.token_file);
    return t;
}

struct Runtime;

// What the HTTP API asks of the running Parley.
class ApiControl final : public web::Control {
public:
    explicit ApiControl(Runtime& rt) : rt_(rt) {}
    std::vector<web::LiveCall> live_calls() override;
    std::string originate(const std::string& to, const std::string& line, const std::string& first_message,
                          web::Failure* failure) override;
    bool hangup(const std::string& uid) override;
    nlohmann::json config() override;
    std::optional<nlohmann::json> update_config(const nlohmann::json& patch, web::Failure* failure) override;
    web::Readiness readiness() override;
    std::vector<store::LineRow> lines() override;

private:
    Runtime& rt_;
};

struct Runtime {
    std::string config_path;
    std::vector<std::string> sets;
    std::mutex config_mu;  // config (read by the API, replaced by reloads); reloads run one at a time
    std::mutex reload_mu;
    Config config;
    agent::Engines engines;
    std::shared_ptr<app::EngineDepths> depths = std::make_shared<app::EngineDepths>();
    metrics::Registry registry;
    std::unique_ptr<store::Store> db;
    std::unique_ptr<app::Ops> ops;
    std::unique_ptr<media::Recorder> recorder;
    agent::ConversationFactory* conversation = nullptr;
    std::unique_ptr<call::HandlerFactory> handlers;
    std::unique_ptr<net::NatAddresses> nat;     // NAT policy: outlives calls and sip (declared before them)
    std::unique_ptr<net::StunRefresher> stun;
    std::atomic<sip::SipStack*> nat_sip{nullptr};  // what STUN's change callback re-registers, once started
    std::unique_ptr<call::CallManager> calls;
    std::unique_ptr<sip::SipStack> sip;
    std::unique_ptr<ApiControl> control;
    std::unique_ptr<web::Server> http;
    std::atomic<bool> models_loaded{false};

    Config current() {
        std::lock_guard lk(config_mu);
        return config;
    }

    bool start(call::CallObserver* observer, bool serve_http) {
        std::string err;
        if (!config.store.path.empty()) {
            std::error_code ec;
            auto dir = std::filesystem::path(config.store.path).parent_path();
            if (!dir.empty()) std::filesystem::create_directories(dir, ec);
            // Transcripts are personal data: a new database is readable by its owner only (SQLite gives its
            // -wal and -shm files the database file's mode).
            if (int fd = ::open(config.store.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); fd >= 0)
                ::close(fd);
            db = store::Store::open(config.store.path, &err);
            if (!db) {
                PLOG_ERROR("event=startup_failed error=\"store: {}\"", err);
                return false;
            }
        }
        metrics::describe_parley(registry);
        ops = std::make_unique<app::Ops>(db.get(), config.call.handler, registry, observer);
        ops->set_lines(config.lines);
        registry.add_collector([this](metrics::Registry& r) {
            r.set("parley_engine_queue_depth", {{"engine", "stt"}}, depths->stt.load());
            r.set("parley_engine_queue_depth", {{"engine", "llm"}}, depths->llm.load());
            r.set("parley_engine_queue_depth", {{"engine", "tts"}}, depths->tts.load());
            if (db) {
                const double dropped = static_cast<double>(db->dropped());
                const double have = r.value("parley_store_dropped_total");
                if (dropped > have) r.add("parley_store_dropped_total", {}, dropped - have);
            }
        });
        recorder = std::make_unique<media::Recorder>(config.recording);
        if (config.call.handler == "conversation") {
            if (!start_engines(config, engines, &err)) {
                PLOG_ERROR("event=startup_failed error=\"{}\"", err);
                return false;
            }
            auto f = agent::make_conversation_factory(config, engines, ops.get(), &err);
            conversation = f.get();
            handlers = std::move(f);
        } else {
            handlers = call::make_handler_factory(config.call, &err);
        }
        if (!handlers) {
            PLOG_ERROR("event=startup_failed error=\"{}\"", err);
            return false;
        }
        models_loaded = true;
        calls = std::make_unique<call::CallManager>(config, *handlers, ops.get());
        calls->set_recorder(recorder.get());
        start_nat();
        calls->set_nat(nat.get());
        sip::SipStackOptions so;
        so.nat = nat.get();
        so.listen_host = config.sip.listen_host;
        so.listen_port = config.sip.listen_port;
        so.user_agent = config.sip.user_agent;
        so.lines = config.lines;
        so.tls = config.sip.tls;
        sip = sip::SipStack::start(so, *calls, &err);
        if (!sip) {
            PLOG_ERROR("event=startup_failed error=\"{}\"", err);
            return false;
        }
        calls->attach(*sip);
        nat_sip = sip.get();
        if (serve_http && config.http.enabled) {
            std::string token = http_token(config.http, &err);
            if (token.empty()) {
                PLOG_ERROR("event=startup_failed error=\"http token: {}\"", err);
                return false;
            }
            web::ServerOptions wo;
            wo.host = config.http.listen_host;
            wo.port = config.http.listen_port;
            wo.token = token;
            control = std::make_unique<ApiControl>(*this);
            http = web::Server::start(wo, *control, db.get(), registry, &err);
            if (!http) {
                PLOG_ERROR("event=startup_failed error=\"http: {}\"", err);
                return false;
            }
            ops->set_server(http.get());
            PLOG_INFO("event=http_ready url=http://{}:{}/ api=http://{}:{}/api", wo.host, http->port(), wo.host,
                      http->port());
        }
        return true;
    }

    bool start_engines(const Config& cfg, agent::Engines& out, std::string* err) {
        const bool test_models = (cfg.stt.engine == "embedded" && is_test_model(cfg.stt.model)) ||
                                 (cfg.llm.engine == "embedded" && is_test_model(cfg.llm.model));
        if (test_models) {
            PLOG_WARN("event=test_models_in_use");
            PLOG_WARN("*****************************************************************************");
            PLOG_WARN("*  RUNNING ON GENERATED TEST MODELS (random weights): the greeting and the   *");
            PLOG_WARN("*  speech are real, but transcripts and replies are NONSENSE. For a real     *");
            PLOG_WARN("*  agent run scripts/fetch-models and set [stt] model and [llm] model.       *");
            PLOG_WARN("*****************************************************************************");
        }
        auto stt = stt::create(cfg.stt, err);
        if (!stt) return false;
        auto llm = llm::create(cfg.llm, err, agent::tools_for(cfg.agent));
        if (!llm) return false;
        auto tts = tts::create(cfg.tts, err);
        if (!tts) return false;
        PLOG_INFO("event=engines_ready stt=\"{}\" llm=\"{}\" tts=\"{}\"", stt->describe(), llm->describe(),
                  tts->describe());
        out = {std::make_shared<app::CountingStt>(std::move(stt), depths),
               std::make_shared<app::CountingLlm>(std::move(llm), depths),
               std::make_shared<app::CountingTts>(std::move(tts), depths)};
        return true;
    }

    // Applies a new configuration to new calls (SIGHUP, PUT /api/config): [agent], and the engines whose
    // section changed (re-created; calls in progress keep the old ones until they end). SIP, lines, media,
    // call limits, recordings and HTTP need a restart. false and *error: nothing changed.
    bool apply(const Config& cfg, std::string* error) {
        Config old = current();
        if (conversation) {
            nlohmann::json jo = config_to_json(old), jn = config_to_json(cfg);
            agent::Engines next = engines;
            bool changed_engines = false;
            // config_to_json has no secrets: a changed api_key alone must count as a change too.
            if (old.stt.remote.api_key != cfg.stt.remote.api_key) jn["stt"]["api_key_changed"] = true;
            if (old.llm.remote.api_key != cfg.llm.remote.api_key) jn["llm"]["api_key_changed"] = true;
            if (old.tts.remote.api_key != cfg.tts.remote.api_key) jn["tts"]["api_key_changed"] = true;
            if (jo["stt"] != jn["stt"] || jo["llm"] != jn["llm"] || jo["tts"] != jn["tts"] ||
                jo["agent"]["tools"] != jn["agent"]["tools"] || jo["agent"]["transfer_target"] != jn["agent"]["transfer_target"]) {
                // Only the engines whose section changed are re-created (the LLM also when the tools change).
                agent::Engines fresh;
                if (!start_engines(cfg, fresh, error)) return false;
                if (jo["stt"] != jn["stt"]) next.stt = fresh.stt;
                if (jo["llm"] != jn["llm"] || jo["agent"]["tools"] != jn["agent"]["tools"] ||
                    jo["agent"]["transfer_target"] != jn["agent"]["transfer_target"])
                    next.llm = fresh.llm;
                if (jo["tts"] != jn["tts"]) next.tts = fresh.tts;
                changed_engines = true;
            }
            if (!conversation->reconfigure(cfg, error, changed_engines ? &next : nullptr)) return false;
            engines = next;
        }
        std::lock_guard lk(config_mu);
        // Only what took effect is kept: the rest shows in GET /api/config once Parley restarts.
        config.agent = cfg.agent;
        if (conversation) {
            config.stt = cfg.stt;
            config.llm = cfg.llm;
            config.tts = cfg.tts;
        }
        return true;
    }

    // SIGHUP: re-read the config file and the API's overrides. Waits for a PUT being applied (the main thread
    // is the only one that ever waits on reload_mu; the API refuses instead).
    void reload() {
        std::lock_guard rl(reload_mu);
        std::string err;
        auto cfg = load_full(config_path, sets, nullptr, nullptr, &err);
        if (!cfg) {
            PLOG_ERROR("event=reload_failed error=\"{}\"", err);
            return;
        }
        if (!apply(*cfg, &err)) {
            PLOG_ERROR("event=reload_failed error=\"{}\"", err);
            return;
        }
        PLOG_INFO("event=reloaded source=sighup greeting=\"{}\"", cfg->agent.greeting);
        if (ops) ops->publish("config_changed", {{"source", "sighup"}});
    }

    // NAT (docs/nat.md): the policy object, and STUN discovery before the SIP stack starts, so that the
    // first REGISTER already carries the external address (bounded: 3 s, then rport/the next STUN round).
    void start_nat() {
        net::NatAddresses::Options no;
        no.sip_external = config.sip.external_address;
        no.media_external = config.media.external_address;
        no.local_networks = config.sip.local_networks;
        nat = std::make_unique<net::NatAddresses>(no);
        if (config.sip.external_address.empty() && !config.sip.stun_server.empty()) {
            stun = std::make_unique<net::StunRefresher>(*nat, config.sip.stun_server, config.sip.stun_interval_s,
                                                        [this] {
                                                            if (auto* s = nat_sip.load()) s->refresh_nat();
                                                        });
            if (!stun->wait_first(3000))
                PLOG_WARN("event=nat_stun_pending server={} (registering with the local address for now)",
                          config.sip.stun_server);
        }
        PLOG_INFO("event=nat_config sip_external={} media_external={} stun={} local_networks={}",
                  config.sip.external_address.empty() ? (stun ? "stun" : "rport") : config.sip.external_address,
                  config.media.external_address.empty() ? "sip" : config.media.external_address,
                  config.sip.stun_server.empty() ? "off" : config.sip.stun_server, nat->describe_local_networks());
    }

    // Hang up calls (bounded), un-register and stop SIP, then free whatever is left.
    void shutdown() {
        nat_sip = nullptr;
        stun.reset();  // joined before the SIP stack it may poke goes away
        if (http) http->stop();
        if (ops) ops->set_server(nullptr);
        if (calls && sip) {
            calls->hangup_all("shutdown");
            if (!calls->wait_idle(std::chrono::seconds(2)))
                PLOG_WARN("event=shutdown_calls_left count={}", calls->active_calls());
        }
        if (sip) sip->stop();
        if (calls) calls->stop();
        http.reset();
        sip.reset();
        calls.reset();
        nat.reset();
        handlers.reset();  // the conversation factory (and its observers' users) before the store
        conversation = nullptr;
        recorder.reset();  // closes and finalizes every recording
        if (db) db->flush();
    }
};

std::vector<web::LiveCall> ApiControl::live_calls() { return rt_.ops->live_calls(); }

std::string ApiControl::originate(const std::string& to, const std::string& line, const std::string& first_message,
                                  web::Failure* failure) {
    Config cfg = rt_.current();
    if (!line.empty() && std::none_of(cfg.lines.begin(), cfg.lines.end(), [&](auto& l) { return l.name == line; })) {
        *failure = {400, "line: no line named \"" + line + "\""};
        return "";
    }
    if (rt_.calls->active_calls() >= static_cast<size_t>(cfg.call.max_concurrent)) {
        *failure = {503, "call limit reached (call.max_concurrent)"};
        return "";
    }
    std::unique_ptr<call::CallHandler> handler;
    if (!first_message.empty()) {
        if (!rt_.conversation) {
            *failure = {400, "first_message: needs call.handler = \"conversation\""};
            return "";
        }
        std::string err;
        handler = rt_.conversation->create_with_greeting(first_message, &err);
        if (!handler) {
            *failure = {503, "first_message: " + err};
            return "";
        }
    }
    std::string uid, err;
    if (!rt_.calls->originate(to, line, std::move(handler), &uid, &err)) {  // `to` was checked by the server
        *failure = {503, err};
        return "";
    }
    PLOG_INFO("event=api_originate uid={} to={} line={}", uid, to, line.empty() ? "-" : line);
    return uid;
}

bool ApiControl::hangup(const std::string& uid) {
    auto id = rt_.ops->live_call_id(uid);
    if (!id) return false;
    PLOG_INFO("event=api_hangup call={} uid={}", *id, uid);
    rt_.calls->request_hangup(*id, "api_hangup");
    return true;
}

nlohmann::json ApiControl::config() { return config_to_json(rt_.current()); }

std::optional<nlohmann::json> ApiControl::update_config(const nlohmann::json& patch, web::Failure* failure) {
    // One change at a time. A PUT arriving while another one (or a SIGHUP reload) is loading an engine is refused
    // at once rather than left waiting behind it.
    std::unique_lock rl(rt_.reload_mu, std::try_to_lock);
    if (!rl.owns_lock()) {
        *failure = {409, "another configuration change is being applied; try again"};
        return std::nullopt;
    }
    std::string err;
    Config base;
    nlohmann::json next;
    if (!load_full(rt_.config_path, rt_.sets, &base, &next, &err)) {
        *failure = {409, "the configuration on disk does not load: " + err};
        return std::nullopt;
    }
    // The patch alone first, so that a message names the key it got wrong; then over what was saved before.
    if (!patch_to_overrides(patch, base, &err)) {
        *failure = {400, err};
        return std::nullopt;
    }
    merge_patch(next, patch);
    auto cfg = load_with_patch(rt_.config_path, rt_.sets, base, next, &err);
    if (!cfg) {
        // load_config's messages start with the file name: the API caller wants the key.
        auto pos = err.find(": ");
        *failure = {400, pos == std::string::npos ? err : err.substr(pos + 2)};
        return std::nullopt;
    }
    if (!rt_.apply(*cfg, &err)) {  // e.g. a model file that does not load: the new settings were not usable
        *failure = {400, err};
        return std::nullopt;
    }
    if (!write_private_file(rt_.current().http.overrides_file, next.dump(2) + "\n", &err))
        PLOG_ERROR("event=config_persist_failed error=\"{}\"", err);
    auto keys = patch_keys(patch);
    auto restart = restart_keys(keys);
    nlohmann::json applied = nlohmann::json::array();
    for (auto& k : keys)
        if (std::find(restart.begin(), restart.end(), k) == restart.end()) applied.push_back(k);
    nlohmann::json result = {{"applied", applied}, {"restart_required", restart}};
    PLOG_INFO("event=reloaded source=api applied={} restart_required={}", applied.dump(),
              nlohmann::json(restart).dump());
    rt_.ops->publish("config_changed", result);
    result["config"] = config();
    return result;
}

std::vector<store::LineRow> ApiControl::lines() { return rt_.ops->lines(); }

web::Readiness ApiControl::readiness() {
    web::Readiness r;
    r.models_loaded = rt_.models_loaded.load();
    auto [registered, total] = rt_.ops->lines_registered();
    r.lines_registered = registered;
    r.lines_total = total;
    return r;
}

bool load(const std::string& path, const std::vector<std::string>& sets, Config& out) {
    std::string err;
    auto cfg = load_full(path, sets, nullptr, nullptr, &err);
    if (!cfg) {
        std::fprintf(stderr, "parley: config error: %s\n", err.c_str());
        return false;
    }
    out = *cfg;
    if (!log_init(out.log.level)) {
        std::fprintf(stderr, "parley: bad log level\n");
        return false;
    }
    return true;
}

int cmd_run(const std::string& path, const std::vector<std::string>& sets, SignalWaiter& signals) {
    Runtime rt;
    rt.config_path = path;
    rt.sets = sets;
    if (!load(path, sets, rt.config)) return 2;
    if (!rt.start(nullptr, true)) {
        rt.shutdown();
        return 1;
    }
    PLOG_INFO("event=ready sip={}:{} handler={} rtp_ports={}-{} max_concurrent={} lines={} http={}",
              rt.config.sip.listen_host, rt.config.sip.listen_port, rt.config.call.handler,
              rt.config.media.rtp_port_min, rt.config.media.rtp_port_max, rt.config.call.max_concurrent,
              rt.config.lines.size(), rt.http ? rt.config.http.listen_host + ":" + std::to_string(rt.http->port()) : "off");
    int sig = signals.wait([] { return false; }, std::chrono::hours(24 * 365 * 10), [&] { rt.reload(); });
    PLOG_INFO("event=shutdown signal={}", sig);
    rt.shutdown();
    PLOG_INFO("event=stopped");
    return 0;
}

// parley dial: a one-shot caller without the HTTP server (scripts and tests); `parley call` goes through the
// API of the running Parley.
int cmd_dial(const std::string& uri, const std::string& line, int timeout_s, const std::string& path,
             std::vector<std::string> sets, SignalWaiter& signals) {
    // A one-shot caller must not collide with a running agent on 5060: unless the config says where to
    // listen, take any free port.
    Runtime rt;
    rt.config_path = path;
    rt.sets = sets;
    if (!load(path, sets, rt.config)) return 2;
    if (!rt.config.sip.listen_given) rt.config.sip.listen_port = 0;
    if (!rt.config.sip.listen_given && rt.config.sip.tls.listen.empty()) rt.config.sip.tls.listen_port = 0;  // auto TLS too
    EndWatcher watcher;
    if (!rt.start(&watcher, false)) {
        rt.shutdown();
        return 1;
    }
    std::string err;
    auto id = rt.calls->originate(uri, line, &err);
    if (!id) {
        PLOG_ERROR("event=call_failed error=\"{}\"", err);
        rt.shutdown();
        return 1;
    }
    int sig = signals.wait([&] { return watcher.ended(); }, std::chrono::seconds(timeout_s));
    if (sig != 0) PLOG_INFO("event=call_interrupted signal={}", sig);
    rt.shutdown();
    auto s = watcher.last();
    bool ok = watcher.ended() && s.answered && s.info.end_reason.rfind("failed", 0) != 0;
    std::printf("call=%llu answered=%s reason=%s sip_status=%d duration_s=%.2f\n",
                static_cast<unsigned long long>(id), s.answered ? "yes" : "no", s.info.end_reason.c_str(),
                s.info.sip_status, s.duration_s);
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    SignalWaiter signals;
    CLI::App app{"Parley: a self-hosted real-time AI telephone agent"};
    app.require_subcommand(1);

    std::string config_path;
    std::vector<std::string> sets;
    auto* run = app.add_subcommand("run", "Register the configured lines and answer calls until SIGTERM");
    run->add_option("-c,--config", config_path, "TOML config file")->check(CLI::ExistingFile);
    run->add_option("--set", sets, "Override a config key: section.key=value, line.N.key=value");

    std::string uri, line;
    int timeout_s = 3600;
    auto* dial = app.add_subcommand("dial", "Place one call in this process (no HTTP server); exit when it ends");
    dial->add_option("uri", uri, "sip: URI to call")->required();
    dial->add_option("-c,--config", config_path, "TOML config file")->check(CLI::ExistingFile);
    dial->add_option("--set", sets, "Override a config key: section.key=value, line.N.key=value");
    dial->add_option("--line", line, "Name of the [[line]] whose account places the call");
    dial->add_option("--timeout", timeout_s, "Give up after this many seconds")->check(CLI::Range(1, 86400));

    // The API client commands: they talk to the running Parley's HTTP API.
    cli::ApiOptions api;
    auto api_opts = [&](CLI::App* c) {
        c->add_option("-c,--config", config_path, "Config file of the running Parley (for [http] listen and the token)")
            ->check(CLI::ExistingFile);
        c->add_option("--set", sets, "Override a config key: section.key=value");
        c->add_option("--api", api.base_url, "Base URL of the running Parley, e.g. http://127.0.0.1:8088");
        c->add_option("--token", api.token, "API token (default: [http] token, or the [http] token_file)");
        c->add_flag("--json", api.json, "Print the API's JSON instead of a table");
    };
    cli::CallsQuery cq;
    auto* calls = app.add_subcommand("calls", "List calls (newest first) from the running Parley");
    api_opts(calls);
    calls->add_option("-n,--limit", cq.limit, "How many")->check(CLI::Range(1, 500));
    calls->add_option("--offset", cq.offset, "Skip this many")->check(CLI::NonNegativeNumber);
    calls->add_option("-q,--search", cq.q, "Text in the caller, callee, line or transcript");
    calls->add_option("--status", cq.status, "live, open, ended, answered or missed");
    calls->add_option("--direction", cq.direction, "inbound or outbound");
    std::string id;
    auto* show = app.add_subcommand("show", "Show one call: its turns with timings, and its events");
    api_opts(show);
    show->add_option("id", id, "Call id (from parley calls)")->required();
    std::string message;
    auto* call = app.add_subcommand("call", "Ask the running Parley to call a number (POST /api/calls)");
    api_opts(call);
    call->add_option("uri", uri, "sip: URI to call")->required();
    call->add_option("--line", line, "Name of the [[line]] whose account places the call");
    call->add_option("-m,--message", message, "What Parley says first when answered (default: the greeting)");
    auto* hangup = app.add_subcommand("hangup", "Hang up a live call");
    api_opts(hangup);
    hangup->add_option("id", id, "Call id")->required();

    auto* cfg = app.add_subcommand("config", "Print a config file with every key at its default");

    CLI11_PARSE(app, argc, argv);
    if (*cfg) {
        std::cout << default_config_text();
        return 0;
    }
    if (*run) return cmd_run(config_path, sets, signals);
    if (*dial) return cmd_dial(uri, line, timeout_s, config_path, sets, signals);
    if (*calls || *show || *call || *hangup) {
        std::string err;
        if (!cli::resolve(api, config_path, sets, &err)) {
            std::fprintf(stderr, "parley: %s\n", err.c_str());
            return 2;
        }
        if (*calls) return cli::calls(api, cq);
        if (*show) return cli::show(api, id);
        if (*call) return cli::call(api, uri, line, message);
        return cli::hangup(api, id);
    }
    return 2;
}
