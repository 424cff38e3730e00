// parley — the Parley telephone agent.
//
//   parley run  --config parley.toml [--set section.key=value ...]   answer (and place) calls until SIGTERM
//   parley call URI --config parley.toml [--set ...]                  place one call, exit when it ends
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

#include "agent/conversation.h"
#include "call/call_manager.h"
#include "common/config.h"
#include "common/log.h"
#include "sip/sip_stack.h"
#include "store/store.h"

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
    void on_call_answered(const call::CallInfo&) override { answered_ = true; }
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
    std::atomic<bool> answered_{false};
    call::CallSummary last_;
};

// Writes calls and turns to the store (SQLite) as they happen. Every method only enqueues: the store has
// its own thread, so neither the control thread nor a call's turn thread ever waits for the disk.
class StoreSink final : public call::CallObserver, public agent::TurnObserver {
public:
    // `next`: another observer (parley call's watcher) told after the store.
    StoreSink(store::Store& db, std::string handler, call::CallObserver* next)
        : db_(db), handler_(std::move(handler)), next_(next) {}

    void on_call_answered(const call::CallInfo& info) override {
        start(info, true);
        if (next_) next_->on_call_answered(info);
    }

    void on_call_ended(const call::CallSummary& s) override {
        std::string uid = start(s.info, false);
        db_.call_ended(uid, store::to_epoch_ms(s.info.ended), s.info.end_reason);
        {
            std::lock_guard lk(mu_);
            uids_.erase(s.info.id);
        }
        if (next_) next_->on_call_ended(s);
    }

    void on_turn(const agent::TurnRecord& t) override {
        std::string uid;
        {
            std::lock_guard lk(mu_);
            auto it = uids_.find(t.call);
            if (it == uids_.end()) return;
            uid = it->second;
        }
        store::TurnRow r;
        r.idx = t.index;
        r.trigger = t.trigger;
        r.user_text = t.user_text;
        r.reply_text = t.reply_text;
        r.interrupted = t.interrupted;
        r.early_end = t.early_end;
        r.tools = t.tools;
        r.eot_ms = t.timing.eot_wait_ms;
        r.stt_final_ms = t.timing.stt_final_ms;
        r.stt_compute_ms = t.timing.stt_compute_ms;
        r.llm_first_token_ms = t.timing.llm_first_token_ms;
        r.first_sentence_ms = t.timing.first_sentence_ms;
        r.tts_first_audio_ms = t.timing.tts_first_audio_ms;
        r.first_rtp_ms = t.timing.first_rtp_ms;
        r.overhead_ms = t.timing.overhead_ms;
        r.speech_end_at = store::to_epoch_ms(t.speech_end);
        db_.turn(uid, std::move(r));
        for (auto& tool : t.tools) db_.event(uid, "tool_call", tool);
    }

private:
    // The call's uid (one id for SIP, media, store and logs: "<start epoch ms>-<call id>"), inserting the
    // call row the first time it is seen.
    std::string start(const call::CallInfo& info, bool answered) {
        const auto started = store::to_epoch_ms(info.started);
        std::string uid = std::to_string(started) + "-" + std::to_string(info.id);
        {
            std::lock_guard lk(mu_);
            if (!uids_.emplace(info.id, uid).second) return uid;
        }
        store::CallRow row;
        row.uid = uid;
        row.direction = info.outgoing ? "outbound" : "inbound";
        row.from_uri = info.from;
        row.to_uri = info.to;
        row.sip_call_id = info.sip_call_id;
        row.line = info.line;
        row.handler = handler_;
        row.started_at = started;
        db_.call_started(std::move(row));
        if (answered) db_.call_answered(uid, store::to_epoch_ms(info.answered));
        PLOG_INFO("event=call_stored call={} uid={}", info.id, uid);
        return uid;
    }

    store::Store& db_;
    std::string handler_;
    call::CallObserver* next_;
    std::mutex mu_;
    std::unordered_map<call::CallId, std::string> uids_;
};

bool is_test_model(const std::string& path) { return path.find("tiny-random") != std::string::npos; }

struct Runtime {
    Config config;
    agent::Engines engines;
    std::unique_ptr<store::Store> db;
    std::unique_ptr<StoreSink> store_sink;  // calls and turns to the store; without a store, turns are logged only
    agent::ConversationFactory* conversation = nullptr;
    std::unique_ptr<call::HandlerFactory> handlers;
    std::unique_ptr<call::CallManager> calls;
    std::unique_ptr<sip::SipStack> sip;

    bool start(call::CallObserver* observer) {
        std::string err;
        if (!config.store.path.empty()) {
            std::error_code ec;
            auto dir = std::filesystem::path(config.store.path).parent_path();
            if (!dir.empty()) std::filesystem::create_directories(dir, ec);
            db = store::Store::open(config.store.path, &err);
            if (!db) {
                PLOG_ERROR("event=startup_failed error=\"store: {}\"", err);
                return false;
            }
            store_sink = std::make_unique<StoreSink>(*db, config.call.handler, observer);
            observer = store_sink.get();
        }
        if (config.call.handler == "conversation") {
            if (!start_engines(&err)) {
                PLOG_ERROR("event=startup_failed error=\"{}\"", err);
                return false;
            }
            auto f = agent::make_conversation_factory(config, engines, store_sink.get(), &err);
            conversation = f.get();
            handlers = std::move(f);
        } else {
            handlers = call::make_handler_factory(config.call, &err);
        }
        if (!handlers) {
            PLOG_ERROR("event=startup_failed error=\"{}\"", err);
            return false;
        }
        calls = std::make_unique<call::CallManager>(config, *handlers, observer);
        sip::SipStackOptions so;
        so.listen_host = config.sip.listen_host;
        so.listen_port = config.sip.listen_port;
        so.user_agent = config.sip.user_agent;
        so.lines = config.lines;
        sip = sip::SipStack::start(so, *calls, &err);
        if (!sip) {
            PLOG_ERROR("event=startup_failed error=\"{}\"", err);
            return false;
        }
        calls->attach(*sip);
        return true;
    }

    bool start_engines(std::string* err) {
        const bool test_models = (config.stt.engine == "embedded" && is_test_model(config.stt.model)) ||
                                 (config.llm.engine == "embedded" && is_test_model(config.llm.model));
        if (test_models) {
            PLOG_WARN("event=test_models_in_use");
            PLOG_WARN("*****************************************************************************");
            PLOG_WARN("*  RUNNING ON GENERATED TEST MODELS (random weights): the greeting and the   *");
            PLOG_WARN("*  speech are real, but transcripts and replies are NONSENSE. For a real     *");
            PLOG_WARN("*  agent run scripts/fetch-models and set [stt] model and [llm] model.       *");
            PLOG_WARN("*****************************************************************************");
        }
        auto stt = stt::create(config.stt, err);
        if (!stt) return false;
        auto llm = llm::create(config.llm, err, agent::tools_for(config.agent));
        if (!llm) return false;
        auto tts = tts::create(config.tts, err);
        if (!tts) return false;
        PLOG_INFO("event=engines_ready stt=\"{}\" llm=\"{}\" tts=\"{}\"", stt->describe(), llm->describe(),
                  tts->describe());
        engines = {std::move(stt), std::move(llm), std::move(tts)};
        return true;
    }

    // SIGHUP: new calls use the re-read [agent] section (greeting, prompts, turn-taking, DTMF actions).
    // Engines, SIP and media settings need a restart.
    void reload(const std::string& path, const std::vector<std::string>& sets) {
        std::string err;
        auto cfg = load_config(path, sets, &err);
        if (!cfg) {
            PLOG_ERROR("event=reload_failed error=\"{}\"", err);
            return;
        }
        if (!conversation) {
            PLOG_INFO("event=reload action=ignored reason=\"only the conversation handler reloads\"");
            return;
        }
        if (!conversation->reconfigure(*cfg, &err)) {
            PLOG_ERROR("event=reload_failed error=\"{}\"", err);
            return;
        }
        config.agent = cfg->agent;
        PLOG_INFO("event=reloaded section=agent greeting=\"{}\"", cfg->agent.greeting);
    }

    // Hang up calls (bounded), un-register and stop SIP, then free whatever is left.
    void shutdown() {
        if (calls && sip) {
            calls->hangup_all("shutdown");
            if (!calls->wait_idle(std::chrono::seconds(5)))
                PLOG_WARN("event=shutdown_calls_left count={}", calls->active_calls());
        }
        if (sip) sip->stop();
        if (calls) calls->stop();
        sip.reset();
        calls.reset();
        handlers.reset();  // the conversation factory (and its observers' users) before the store
        conversation = nullptr;
        if (db) db->flush();
    }
};

bool load(const std::string& path, const std::vector<std::string>& sets, Config& out) {
    std::string err;
    auto cfg = load_config(path, sets, &err);
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
    if (!load(path, sets, rt.config)) return 2;
    if (!rt.start(nullptr)) return 1;
    PLOG_INFO("event=ready sip={}:{} handler={} rtp_ports={}-{} max_concurrent={} lines={}",
              rt.config.sip.listen_host, rt.config.sip.listen_port, rt.config.call.handler,
              rt.config.media.rtp_port_min, rt.config.media.rtp_port_max, rt.config.call.max_concurrent,
              rt.config.lines.size());
    int sig = signals.wait([] { return false; }, std::chrono::hours(24 * 365 * 10),
                           [&] { rt.reload(path, sets); });
    PLOG_INFO("event=shutdown signal={}", sig);
    rt.shutdown();
    PLOG_INFO("event=stopped");
    return 0;
}

int cmd_call(const std::string& uri, const std::string& line, int timeout_s, const std::string& path,
             std::vector<std::string> sets, SignalWaiter& signals) {
    // A one-shot caller must not collide with a running agent on 5060: unless the config says where to
    // listen, take any free port.
    Runtime rt;
    if (!load(path, sets, rt.config)) return 2;
    if (!rt.config.sip.listen_given) rt.config.sip.listen_port = 0;
    EndWatcher watcher;
    if (!rt.start(&watcher)) return 1;
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
    auto* call = app.add_subcommand("call", "Place one call with the configured handler; exit when it ends");
    call->add_option("uri", uri, "sip: URI to call")->required();
    call->add_option("-c,--config", config_path, "TOML config file")->check(CLI::ExistingFile);
    call->add_option("--set", sets, "Override a config key: section.key=value, line.N.key=value");
    call->add_option("--line", line, "Name of the [[line]] whose account places the call");
    call->add_option("--timeout", timeout_s, "Give up after this many seconds")->check(CLI::Range(1, 86400));

    auto* cfg = app.add_subcommand("config", "Print a config file with every key at its default");

    CLI11_PARSE(app, argc, argv);
    if (*cfg) {
        std::cout << default_config_text();
        return 0;
    }
    if (*run) return cmd_run(config_path, sets, signals);
    if (*call) return cmd_call(uri, line, timeout_s, config_path, sets, signals);
    return 2;
}
