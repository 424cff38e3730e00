// config.cpp — TOML loading, --set overrides and validation (see config.h).
#include "common/config.h"
#include "common/ip.h"

#include <toml++/toml.h>

#include <charconv>
#include <cstdlib>
#include <fmt/format.h>
#include <set>
#include <sstream>

namespace parley {
namespace {

std::string describe(const toml::node& n) {
    if (auto s = n.value_exact<std::string>()) return fmt::format("the string \"{}\"", *s);
    if (auto i = n.value_exact<int64_t>()) return fmt::format("the integer {}", *i);
    if (auto b = n.value_exact<bool>()) return *b ? "true" : "false";
    if (n.is_floating_point()) return "a float";
    if (n.is_array()) return "an array";
    if (n.is_table()) return "a table";
    return "a date/time";
}

// Reads one table against a fixed set of keys. Values set with --set arrive as strings; numeric and
// boolean keys accept those (and only those) as text.
class TableReader {
public:
    TableReader(const toml::table* table, std::string prefix, const std::set<std::string>& from_cli,
                std::string& error)
        : table_(table), prefix_(std::move(prefix)), from_cli_(from_cli), error_(error) {}

    bool ok() const { return error_.empty(); }

    void str(const char* key, std::string& out) {
        const toml::node* n = find(key);
        if (!n) return;
        if (auto v = n->value<std::string>()) {
            out = *v;
        } else if (auto i = n->value<int64_t>(); i && from_cli(key)) {
            out = std::to_string(*i);
        } else {
            fail(key, "a string", n);
        }
    }

    void integer(const char* key, int& out, int64_t min, int64_t max) {
        const toml::node* n = find(key);
        if (!n) return;
        int64_t v = 0;
        if (auto i = n->value_exact<int64_t>()) {
            v = *i;
        } else if (auto s = n->value_exact<std::string>(); s && from_cli(key)) {
            auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
            if (ec != std::errc() || p != s->data() + s->size()) return fail(key, "an integer", n);
        } else {
            return fail(key, "an integer", n);
        }
        if (v < min || v > max) {
            return set_error(key, fmt::format("expected an integer from {} to {}, got {}", min, max, v));
        }
        out = static_cast<int>(v);
    }

    void boolean(const char* key, bool& out) {
        const toml::node* n = find(key);
        if (!n) return;
        if (auto b = n->value_exact<bool>()) {
            out = *b;
        } else if (auto s = n->value_exact<std::string>(); s && from_cli(key) && (*s == "true" || *s == "false")) {
            out = *s == "true";
        } else {
            fail(key, "true or false", n);
        }
    }

    void number(const char* key, double& out, double min, double max) {
        const toml::node* n = find(key);
        if (!n) return;
        double v = 0;
        if (auto d = n->value<double>()) {
            v = *d;
        } else if (auto s = n->value_exact<std::string>(); s && from_cli(key)) {
            char* end = nullptr;
            v = std::strtod(s->c_str(), &end);
            if (end == s->c_str() || *end) return fail(key, "a number", n);
        } else {
            return fail(key, "a number", n);
        }
        if (v < min || v > max) return set_error(key, fmt::format("expected a number from {} to {}, got {}", min, max, v));
        out = v;
    }

    void str_list(const char* key, std::vector<std::string>& out) {
        const toml::node* n = find(key);
        if (!n) return;
        std::vector<std::string> result;
        if (auto arr = n->as_array()) {
            for (auto& el : *arr) {
                auto v = el.value<std::string>();
                if (!v) return fail(key, "an array of strings", n);
                result.push_back(*v);
            }
        } else if (auto s = n->value<std::string>(); s && from_cli(key)) {
            std::stringstream ss(*s);  // --set media.codecs=PCMU,G722
            for (std::string item; std::getline(ss, item, ',');)
                if (!item.empty()) result.push_back(item);
        } else {
            return fail(key, "an array of strings", n);
        }
        out = std::move(result);
    }

    // Any key in the table we were not asked about is an error: a typo must not be silently ignored.
    void reject_unknown() {
        if (!table_ || !ok()) return;
        for (auto& [k, v] : *table_) {
            if (!seen_.count(std::string(k.str()))) {
                set_error(std::string(k.str()), "unknown key");
                return;
            }
        }
    }

    void set_error(const std::string& key, const std::string& what) {
        if (error_.empty()) error_ = fmt::format("{}{}: {}", prefix_, key, what);
    }

private:
    const toml::node* find(const char* key) {
        seen_.insert(key);
        if (!table_ || !ok()) return nullptr;
        return table_->get(key);
    }
    bool from_cli(const char* key) const { return from_cli_.count(prefix_ + key) > 0; }
    void fail(const char* key, const char* expected, const toml::node* n) {
        set_error(key, fmt::format("expected {}, got {}", expected, describe(*n)));
    }

    const toml::table* table_;
    std::string prefix_;
    const std::set<std::string>& from_cli_;
    std::string& error_;
    std::set<std::string> seen_;
};

bool parse_port(std::string_view s, uint16_t& out) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
    out = static_cast<uint16_t>(v);
    return true;
}

bool is_index(std::string_view s) {
    return !s.empty() && s.size() < 4 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// Applies "a.b=value" / "line.N.key=value" to `root` as a string value.
bool apply_override(toml::table& root, const std::string& item, std::set<std::string>& from_cli,
                    std::string& error) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
        error = fmt::format("--set {}: expected section.key=value", item);
        return false;
    }
    std::string path = item.substr(0, eq);
    std::string value = item.substr(eq + 1);
    std::vector<std::string> parts;
    std::stringstream ss(path);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    if (parts.size() == 2 && parts[0] != "line") {
        auto* section = root.get(parts[0]);
        if (!section) section = root.insert(parts[0], toml::table{}).first->second.as_table();
        if (!section->is_table()) {
            error = fmt::format("--set {}: {} is not a section", item, parts[0]);
            return false;
        }
        section->as_table()->insert_or_assign(parts[1], value);
        from_cli.insert(path);
        return true;
    }
    if (parts.size() == 3 && parts[0] == "line" && is_index(parts[1])) {
        size_t idx = std::stoul(parts[1]);
        auto* node = root.get("line");
        if (!node) node = root.insert("line", toml::array{}).first->second.as_array();
        auto* arr = node->as_array();
        if (!arr) {
            error = fmt::format("--set {}: line must be an array of tables ([[line]])", item);
            return false;
        }
        if (idx > arr->size()) {
            error = fmt::format("--set {}: there are {} lines; the next one is line.{}", item, arr->size(),
                                arr->size());
            return false;
        }
        if (idx == arr->size()) arr->push_back(toml::table{});
        auto* tbl = (*arr)[idx].as_table();
        if (!tbl) {
            error = fmt::format("--set {}: line.{} is not a table", item, idx);
            return false;
        }
        tbl->insert_or_assign(parts[2], value);
        from_cli.insert(fmt::format("line.{}.{}", idx, parts[2]));
        return true;
    }
    error = fmt::format("--set {}: expected section.key=value or line.N.key=value", item);
    return false;
}

bool split_host_port(const std::string& s, std::string& host, uint16_t& port) {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    host = s.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    std::string_view p = std::string_view(s).substr(colon + 1);
    if (p == "0") {
        port = 0;
        return true;
    }
    return parse_port(p, port);
}

// ---- NAT keys (docs/nat.md) ----
// media.srtp and [[line]] srtp (docs/srtp.md).
bool is_srtp_mode(const std::string& s) { return s == "off" || s == "optional" || s == "required"; }

// A host name or an IP literal, as it may appear in a SIP URI / SDP.
bool is_host(const std::string& s) {
    if (s.empty() || s.size() > 253) return false;
    if (is_ip_literal(s)) return true;
    return s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
               std::string::npos &&
           s.front() != '-' && s.front() != '.';
}

void read_sip_nat(TableReader& r, SipConfig& sip) {
    r.str("external_address", sip.external_address);
    r.str_list("local_networks", sip.local_networks);
    r.str("stun_server", sip.stun_server);
    r.integer("stun_interval_s", sip.stun_interval_s, 0, 86400);
}

bool check_sip_nat(const SipConfig& sip, std::string& error) {
    if (!sip.external_address.empty() && !is_host(sip.external_address)) {
        error = fmt::format("sip.external_address: expected an IP address or host name (or \"\" to discover), "
                            "got \"{}\"", sip.external_address);
        return false;
    }
    for (auto& n : sip.local_networks) {
        if (!Cidr::parse(n)) {
            error = fmt::format("sip.local_networks: expected CIDRs like \"192.168.0.0/16\", got \"{}\"", n);
            return false;
        }
    }
    if (!sip.stun_server.empty()) {
        std::string host = sip.stun_server;
        uint16_t port = 0;
        if (host.find(':') != std::string::npos && !split_host_port(sip.stun_server, host, port)) host.clear();
        if (!is_host(host) || (sip.stun_server.find(':') != std::string::npos && port == 0)) {
            error = fmt::format("sip.stun_server: expected \"host\" or \"host:port\" (IPv4), got \"{}\"",
                                sip.stun_server);
            return false;
        }
    }
    return true;
}

// ---- SIP over TLS (sip.tls_* keys, [[line]] transport = "tls") -----------------------------------

void read_sip_tls_keys(TableReader& r, SipTlsConfig& tls) {
    r.str("tls_listen", tls.listen);
    r.str("tls_cert", tls.cert);
    r.str("tls_key", tls.key);
    r.str("tls_ca_file", tls.ca_file);
    r.str("tls_dir", tls.dir);
}

// After the lines are read: where the TLS listener goes (or that there is none), and whether the lines
// can have what they ask for. Returns "" or the error message.
std::string resolve_sip_tls(Config& cfg) {
    SipTlsConfig& tls = cfg.sip.tls;
    bool tls_line = false;
    for (auto& l : cfg.lines) tls_line = tls_line || l.transport == "tls";
    if (tls.listen == "off") {
        tls.listen_host.clear();
        for (size_t i = 0; i < cfg.lines.size(); ++i)
            if (cfg.lines[i].transport == "tls")
                return fmt::format("line.{}.transport: \"tls\" needs SIP over TLS, but sip.tls_listen = \"off\"", i);
    } else if (tls.listen.empty()) {
        if (tls_line || !tls.cert.empty()) {
            tls.listen_host = cfg.sip.listen_host;
            if (cfg.sip.listen_port == 65535)
                return "sip.tls_listen: cannot default to sip.listen's port + 1 (65535): set it";
            tls.listen_port = cfg.sip.listen_port == 0 ? 0 : static_cast<uint16_t>(cfg.sip.listen_port + 1);
        }
    } else if (!split_host_port(tls.listen, tls.listen_host, tls.listen_port)) {
        return fmt::format("sip.tls_listen: expected \"host:port\", \"off\" or \"\" (auto), got \"{}\"", tls.listen);
    }
    if (!tls.enabled()) return "";
    if (tls.ca_file.empty()) return "sip.tls_ca_file: required for SIP over TLS (the CAs that verify peers)";
    if (!tls.key.empty() && tls.cert.empty()) return "sip.tls_key: set without sip.tls_cert";
    if (tls.dir.empty()) return "sip.tls_dir: must not be empty";
    return "";
}

}  // namespace

std::optional<Config> load_config(const std::string& path, const std::vector<std::string>& overrides,
                                  std::string* error_out) {
    std::string error;
    auto fail = [&](const std::string& msg) -> std::optional<Config> {
        if (error_out) *error_out = (path.empty() ? std::string("(defaults)") : path) + ": " + msg;
        return std::nullopt;
    };

    toml::table root;
    if (!path.empty()) {
        try {
            root = toml::parse_file(path);
        } catch (const toml::parse_error& e) {
            const auto& src = e.source();
            if (!src.begin) return fail(std::string(e.description()));
            return fail(fmt::format("line {} column {}: {}", src.begin.line, src.begin.column, e.description()));
        }
    }

    std::set<std::string> from_cli;
    for (const auto& o : overrides) {
        if (!apply_override(root, o, from_cli, error)) return fail(error);
    }

    Config cfg;
    cfg.source = path;
    static const std::set<std::string> kSections = {"sip", "media", "call", "line", "log", "stt", "llm", "tts", "agent", "store", "recording", "http"};
    for (auto& [k, v] : root) {
        if (!kSections.count(std::string(k.str())))
            return fail(fmt::format("{}: unknown section (expected one of sip, media, call, line, stt, llm, tts, agent, store, recording, http, log)", k.str()));
        if (k.str() != "line" && !v.is_table()) return fail(fmt::format("{}: expected a [{}] table", k.str(), k.str()));
    }

    {
        TableReader r(root["sip"].as_table(), "sip.", from_cli, error);
        std::string listen = cfg.sip.listen_host + ":" + std::to_string(cfg.sip.listen_port);
        r.str("listen", listen);
        cfg.sip.listen_given = root["sip"]["listen"].node() != nullptr;
        r.str("user_agent", cfg.sip.user_agent);
        read_sip_nat(r, cfg.sip);
        read_sip_tls_keys(r, cfg.sip.tls);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        if (!check_sip_nat(cfg.sip, error)) return fail(error);
        if (!split_host_port(listen, cfg.sip.listen_host, cfg.sip.listen_port))
            return fail(fmt::format("sip.listen: expected \"host:port\", got \"{}\"", listen));
    }
    {
        TableReader r(root["media"].as_table(), "media.", from_cli, error);
        std::string ports = fmt::format("{}-{}", cfg.media.rtp_port_min, cfg.media.rtp_port_max);
        r.str("rtp_ports", ports);
        r.str("address", cfg.media.address);
        r.str_list("codecs", cfg.media.codecs);
        r.integer("ptime", cfg.media.ptime, 10, 60);
        r.integer("jitter_ms", cfg.media.jitter_ms, 0, 1000);
        r.integer("timeout_s", cfg.media.timeout_s, 0, 3600);
        r.boolean("symmetric_rtp", cfg.media.symmetric_rtp);
        r.str("external_address", cfg.media.external_address);
        // ---- SRTP (docs/srtp.md) ----
        r.str("srtp", cfg.media.srtp);
        r.boolean("srtp_insecure_signalling", cfg.media.srtp_insecure_signalling);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        auto dash = ports.find('-');
        uint16_t lo = 0, hi = 0;
        if (dash == std::string::npos || !parse_port(std::string_view(ports).substr(0, dash), lo) ||
            !parse_port(std::string_view(ports).substr(dash + 1), hi) || lo >= hi || hi - lo < 3)
            return fail(fmt::format("media.rtp_ports: expected \"min-max\" with min < max and room for two "
                                    "RTP/RTCP pairs, got \"{}\"", ports));
        cfg.media.rtp_port_min = lo;
        cfg.media.rtp_port_max = hi;
        if (cfg.media.ptime % 10 != 0) return fail("media.ptime: expected 10, 20, 30, 40, 50 or 60");
        static const std::set<std::string> kCodecs = {"PCMU", "PCMA", "G722"};
        if (!is_srtp_mode(cfg.media.srtp))
            return fail(fmt::format("media.srtp: expected \"off\", \"optional\" or \"required\", got \"{}\"",
                                    cfg.media.srtp));
        if (cfg.media.codecs.empty()) return fail("media.codecs: expected at least one of PCMU, PCMA, G722");
        for (auto& c : cfg.media.codecs)
            if (!kCodecs.count(c))
                return fail(fmt::format("media.codecs: unknown codec \"{}\" (expected PCMU, PCMA or G722)", c));
    }
    {
        TableReader r(root["call"].as_table(), "call.", from_cli, error);
        r.str("handler", cfg.call.handler);
        r.integer("max_concurrent", cfg.call.max_concurrent, 1, 10000);
        r.integer("answer_delay_ms", cfg.call.answer_delay_ms, 0, 60000);
        r.integer("echo_delay_ms", cfg.call.echo_delay_ms, 0, 5000);
        r.str("playback_file", cfg.call.playback_file);
        r.integer("max_duration_s", cfg.call.max_duration_s, 0, 86400);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        if (cfg.call.handler != "echo" && cfg.call.handler != "playback" && cfg.call.handler != "conversation")
            return fail(fmt::format("call.handler: expected \"echo\", \"playback\" or \"conversation\", got \"{}\"",
                                    cfg.call.handler));
        if (cfg.call.handler == "playback" && cfg.call.playback_file.empty())
            return fail("call.playback_file: required when call.handler = \"playback\"");
    }
    {
        TableReader r(root["log"].as_table(), "log.", from_cli, error);
        r.str("level", cfg.log.level);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
        if (!kLevels.count(cfg.log.level))
            return fail(fmt::format("log.level: expected trace, debug, info, warn or error, got \"{}\"",
                                    cfg.log.level));
    }
    auto read_remote = [&](TableReader& r, RemoteConfig& rc) {
        r.str("base_url", rc.base_url);
        r.str("api_key", rc.api_key);
        r.str("remote_model", rc.model);
        r.integer("connect_timeout_ms", rc.connect_timeout_ms, 100, 60000);
        r.integer("timeout_ms", rc.timeout_ms, 100, 600000);
        r.integer("retries", rc.retries, 0, 10);
    };
    auto check_engine = [&](const char* section, const std::string& engine, const RemoteConfig& rc) -> bool {
        if (engine != "embedded" && engine != "openai") {
            error = fmt::format("{}.engine: expected \"embedded\" or \"openai\", got \"{}\"", section, engine);
            return false;
        }
        if (engine == "openai" && rc.base_url.rfind("http://", 0) != 0 && rc.base_url.rfind("https://", 0) != 0) {
            error = fmt::format("{}.base_url: required with engine = \"openai\" (http://host:port/v1), got \"{}\"",
                                section, rc.base_url);
            return false;
        }
        return true;
    };
    {
        TableReader r(root["stt"].as_table(), "stt.", from_cli, error);
        r.str("engine", cfg.stt.engine);
        r.str("model", cfg.stt.model);
        r.str("vad_model", cfg.stt.vad_model);
        r.str("language", cfg.stt.language);
        r.str("prompt", cfg.stt.prompt);
        r.integer("threads", cfg.stt.threads, 1, 256);
        r.integer("workers", cfg.stt.workers, 1, 256);
        r.boolean("fit_window", cfg.stt.fit_window);
        read_remote(r, cfg.stt.remote);
        r.reject_unknown();
        if (!r.ok() || !check_engine("stt", cfg.stt.engine, cfg.stt.remote)) return fail(error);
    }
    {
        TableReader r(root["llm"].as_table(), "llm.", from_cli, error);
        r.str("engine", cfg.llm.engine);
        r.str("model", cfg.llm.model);
        r.str("system_prompt", cfg.llm.system_prompt);
        r.integer("context", cfg.llm.context, 256, 1 << 20);
        r.integer("max_sequences", cfg.llm.max_sequences, 1, 256);
        r.integer("threads", cfg.llm.threads, 1, 256);
        r.integer("max_tokens", cfg.llm.max_tokens, 1, 32768);
        r.number("temperature", cfg.llm.temperature, 0.0, 5.0);
        r.number("top_p", cfg.llm.top_p, 0.0, 1.0);
        r.integer("top_k", cfg.llm.top_k, 0, 1000);
        r.integer("seed", cfg.llm.seed, 0, 2147483647);
        read_remote(r, cfg.llm.remote);
        r.reject_unknown();
        if (!r.ok() || !check_engine("llm", cfg.llm.engine, cfg.llm.remote)) return fail(error);
    }
    {
        TableReader r(root["tts"].as_table(), "tts.", from_cli, error);
        r.str("engine", cfg.tts.engine);
        r.str("voice", cfg.tts.voice);
        r.integer("rate_wpm", cfg.tts.rate_wpm, 80, 450);
        r.str("remote_voice", cfg.tts.remote_voice);
        r.integer("remote_sample_rate", cfg.tts.remote_sample_rate, 8000, 48000);
        read_remote(r, cfg.tts.remote);
        r.reject_unknown();
        if (!r.ok() || !check_engine("tts", cfg.tts.engine, cfg.tts.remote)) return fail(error);
    }
    {
        AgentConfig& a = cfg.agent;
        TableReader r(root["agent"].as_table(), "agent.", from_cli, error);
        r.str("greeting", a.greeting);
        r.str("goodbye", a.goodbye);
        r.number("vad_threshold", a.vad_threshold, 0.05, 0.95);
        r.integer("min_speech_ms", a.min_speech_ms, 0, 5000);
        r.integer("end_of_turn_short_ms", a.end_of_turn_short_ms, 60, 5000);
        r.integer("end_of_turn_long_ms", a.end_of_turn_long_ms, 100, 10000);
        r.integer("max_utterance_s", a.max_utterance_s, 2, 120);
        r.boolean("barge_in", a.barge_in);
        r.integer("barge_in_min_ms", a.barge_in_min_ms, 20, 5000);
        r.boolean("echo_canceller", a.echo_canceller);
        r.integer("silence_prompt_s", a.silence_prompt_s, 0, 3600);
        r.str("silence_prompt", a.silence_prompt);
        r.integer("silence_prompts_max", a.silence_prompts_max, 0, 100);
        r.str_list("tools", a.tools);
        r.str("transfer_target", a.transfer_target);
        r.str_list("dtmf_actions", a.dtmf_actions);
        r.integer("dtmf_timeout_ms", a.dtmf_timeout_ms, 100, 60000);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        if (a.end_of_turn_long_ms < a.end_of_turn_short_ms)
            return fail(fmt::format("agent.end_of_turn_long_ms: expected at least end_of_turn_short_ms ({}), got {}",
                                    a.end_of_turn_short_ms, a.end_of_turn_long_ms));
        static const std::set<std::string> kTools = {"hang_up", "transfer", "send_dtmf"};
        for (auto& t : a.tools)
            if (!kTools.count(t))
                return fail(fmt::format("agent.tools: unknown tool \"{}\" (expected hang_up, transfer, send_dtmf)", t));
        if (!a.transfer_target.empty() && a.transfer_target.rfind("sip:", 0) != 0)
            return fail(fmt::format("agent.transfer_target: expected a sip: URI, got \"{}\"", a.transfer_target));
        for (auto& act : a.dtmf_actions) {
            static const std::string kDigits = "0123456789*#ABCD";
            if (act.size() < 3 || act[1] != '=' || kDigits.find(act[0]) == std::string::npos ||
                (act.substr(2) != "hang_up" && act.substr(2) != "transfer"))
                return fail(fmt::format("agent.dtmf_actions: expected \"DIGIT=hang_up\" or \"DIGIT=transfer\", got \"{}\"", act));
            if (act.substr(2) == "transfer" && a.transfer_target.empty())
                return fail(fmt::format("agent.dtmf_actions: \"{}\" needs agent.transfer_target", act));
        }
    }
    {
        TableReader r(root["store"].as_table(), "store.", from_cli, error);
        r.str("path", cfg.store.path);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
    }
    {
        TableReader r(root["recording"].as_table(), "recording.", from_cli, error);
        r.str("dir", cfg.recording.dir);
        r.boolean("without_line", cfg.recording.without_line);
        r.integer("max_age_days", cfg.recording.max_age_days, 0, 36500);
        r.integer("max_total_mb", cfg.recording.max_total_mb, 0, 100000000);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        if (cfg.recording.dir.empty()) return fail("recording.dir: must not be empty");
    }
    {
        TableReader r(root["http"].as_table(), "http.", from_cli, error);
        std::string listen = cfg.http.listen_host + ":" + std::to_string(cfg.http.listen_port);
        r.str("listen", listen);
        r.str("token", cfg.http.token);
        r.str("token_file", cfg.http.token_file);
        r.str("overrides_file", cfg.http.overrides_file);
        r.reject_unknown();
        if (!r.ok()) return fail(error);
        if (listen.empty() || listen == "off") {
            cfg.http.enabled = false;
        } else if (!split_host_port(listen, cfg.http.listen_host, cfg.http.listen_port)) {
            return fail(fmt::format("http.listen: expected \"host:port\" or \"off\", got \"{}\"", listen));
        }
        if (!cfg.http.token.empty() && cfg.http.token.size() < 16)
            return fail("http.token: expected at least 16 characters (or empty: generated into http.token_file)");
        if (cfg.http.token.empty() && cfg.http.token_file.empty())
            return fail("http.token_file: required when http.token is empty");
    }
    if (auto* node = root.get("line")) {
        auto* arr = node->as_array();
        if (!arr) return fail("line: expected [[line]] tables");
        std::set<std::string> names;
        for (size_t i = 0; i < arr->size(); ++i) {
            auto* tbl = (*arr)[i].as_table();
            if (!tbl) return fail(fmt::format("line.{}: expected a table", i));
            LineConfig line;
            TableReader r(tbl, fmt::format("line.{}.", i), from_cli, error);
            r.str("name", line.name);
            r.str("registrar", line.registrar);
            r.str("user", line.user);
            r.str("auth_user", line.auth_user);
            r.str("password", line.password);
            r.str("domain", line.domain);
            r.str("transport", line.transport);
            r.integer("expires", line.expires, 10, 86400);
            r.str("display_name", line.display_name);
            r.boolean("record", line.record);
            r.integer("keepalive_s", line.keepalive_s, 0, 3600);
            r.str("srtp", line.srtp);  // SRTP (docs/srtp.md)
            r.reject_unknown();
            if (!r.ok()) return fail(error);
            if (line.name.empty()) line.name = fmt::format("line{}", i);
            if (!names.insert(line.name).second)
                return fail(fmt::format("line.{}.name: \"{}\" is used by two lines", i, line.name));
            if (line.registrar.rfind("sip:", 0) != 0 && line.registrar.rfind("sips:", 0) != 0)
                return fail(fmt::format("line.{}.registrar: expected a sip: or sips: URI, got \"{}\"", i,
                                        line.registrar));
            if (line.user.empty()) return fail(fmt::format("line.{}.user: required", i));
            if (line.transport != "udp" && line.transport != "tcp" && line.transport != "tls")
                return fail(fmt::format("line.{}.transport: expected \"udp\", \"tcp\" or \"tls\", got \"{}\"", i,
                                        line.transport));
            if (line.registrar.rfind("sips:", 0) == 0) {  // sips: is TLS all the way; anything else is a contradiction
                if (line.transport != "tls" && tbl->contains("transport"))
                    return fail(fmt::format("line.{}.transport: a sips: registrar needs \"tls\", got \"{}\"", i,
                                            line.transport));
                line.transport = "tls";
            }
            if (!line.srtp.empty() && !is_srtp_mode(line.srtp))
                return fail(fmt::format("line.{}.srtp: expected \"off\", \"optional\" or \"required\" (or \"\" for "
                                        "media.srtp), got \"{}\"", i, line.srtp));
            if (line.auth_user.empty()) line.auth_user = line.user;
            cfg.lines.push_back(std::move(line));
        }
    }
    if (std::string tls_error = resolve_sip_tls(cfg); !tls_error.empty()) return fail(tls_error);
    if (cfg.media.address.empty())
        cfg.media.address = cfg.sip.listen_host == "0.0.0.0" ? "" : cfg.sip.listen_host;
    if (!cfg.media.external_address.empty() && !is_ip_literal(cfg.media.external_address))
        return fail(fmt::format("media.external_address: expected an IP address (or \"\" = sip's external "
                                "address), got \"{}\"", cfg.media.external_address));
    return cfg;
}

std::string default_config_text() {
    return R"(# Parley configuration. Every key is optional; shown here with its default.
[sip]
listen = "0.0.0.0:5060"          # UDP and TCP, host:port
user_agent = "Parley/0.1"
external_address = ""            # NAT: address in Contact/Via for peers outside local_networks; "" = discover
local_networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"]  # peers here get the local address
stun_server = ""                 # NAT: "host[:port]" of a STUN server to discover the external address; "" = off
stun_interval_s = 60             # STUN again this often (0 = only at start)
# SIP over TLS (docs/tls.md): used by [[line]]s with transport = "tls" or a sips: registrar.
tls_listen = ""                  # host:port of the TLS listener; "" = when a line uses TLS (or tls_cert is
                                 # set): sip.listen's host, port + 1 (5061); "off" = no TLS
tls_cert = ""                    # PEM certificate for the listener and as client certificate; "" = a
                                 # self-signed one made at start (logged), never sent unless a peer asks
tls_key = ""                     # PEM private key of tls_cert; "" = in the tls_cert file
tls_ca_file = "/etc/ssl/certs/ca-certificates.crt"   # CAs that verify peers (system store by default)
tls_dir = "var/tls"              # private (0700) directory where the files for sofia-sip are assembled

[media]
rtp_ports = "20000-29999"        # RTP on even ports, RTCP on the next odd one
address = ""                     # IP advertised in SDP; empty = the SIP listen host, or the host's address
codecs = ["PCMU", "PCMA", "G722"]  # offered in this order; incoming offers keep the caller's order
ptime = 20                       # ms per packet in our offers (we follow the caller's a=ptime)
jitter_ms = 60                   # jitter buffer target
timeout_s = 30                   # no RTP for this long ends the call with BYE (0 = never)
symmetric_rtp = true             # latch once onto the real source of RTP (NAT), logged
external_address = ""            # NAT: SDP address for peers outside sip.local_networks; "" = sip's external one
srtp = "off"                     # off | optional | required: SRTP with SDES keys (docs/srtp.md)
srtp_insecure_signalling = false # allow SDES keys over signalling that is not TLS (they travel in clear)

[call]
handler = "echo"                 # echo | playback | conversation
max_concurrent = 32              # further INVITEs get 486 Busy Here
answer_delay_ms = 0              # ring (180) this long before answering
echo_delay_ms = 200              # echo handler: delay before the caller hears itself
playback_file = ""               # playback handler: WAV to play, then hang up
max_duration_s = 0               # hang up after this long (0 = unlimited; conversation says goodbye first)

[stt]
engine = "embedded"              # embedded (whisper.cpp) | openai (POST {base_url}/audio/transcriptions)
model = ""                       # whisper ggml model (embedded); scripts/fetch-models puts one in models/
vad_model = ""                   # Silero VAD, whisper.cpp ggml format
language = "en"                  # or "auto"
prompt = ""                      # initial prompt: names and words callers will say
threads = 2                      # threads per decode
workers = 2                      # decodes at once (one whisper_state each)
fit_window = true                # size the encoder to the utterance, not whisper's full 30 s window
# base_url = "http://127.0.0.1:8081/v1"   # engine = "openai"
# api_key = ""
# remote_model = "whisper-1"
# connect_timeout_ms = 2000
# timeout_ms = 20000
# retries = 2

[llm]
engine = "embedded"              # embedded (llama.cpp) | openai (POST {base_url}/chat/completions, streamed)
model = ""                       # GGUF chat model (embedded)
system_prompt = "You are Parley, a friendly telephone assistant. Answer in one or two short spoken sentences."
context = 4096                   # tokens shared by all calls
max_sequences = 8                # calls generating at once
threads = 2
max_tokens = 200
temperature = 0.7                # 0 = greedy
top_p = 0.9
top_k = 40
seed = 0                         # 0 = random

[tts]
engine = "embedded"              # embedded (espeak-ng) | openai (POST {base_url}/audio/speech, raw PCM)
voice = "en-us"
rate_wpm = 170
remote_voice = "alloy"
remote_sample_rate = 24000

[agent]                           # used when call.handler = "conversation" (docs/conversation.md)
greeting = "Hello, this is Parley. How can I help you?"   # "" = wait for the caller
goodbye = "Thank you for calling. Goodbye."
vad_threshold = 0.5               # Silero speech probability
min_speech_ms = 120               # shorter sounds are not an utterance
end_of_turn_short_ms = 250        # pause: speculative transcript; a complete sentence ends the turn
end_of_turn_long_ms = 900         # pause that ends the turn whatever was said
max_utterance_s = 30
barge_in = true                   # caller speech stops Parley mid-sentence
barge_in_min_ms = 200
echo_canceller = true             # WebRTC AEC against our own playout, before the VAD
silence_prompt_s = 10             # 0 = never prompt
silence_prompt = "Are you still there?"
silence_prompts_max = 2           # then goodbye and hang up
tools = ["hang_up", "transfer", "send_dtmf"]
transfer_target = ""              # sip: URI; empty = no transfer tool
dtmf_actions = []                 # e.g. ["0=transfer", "#=hang_up"]; other digits go to the model
dtmf_timeout_ms = 1500            # digits are sent as one "[keypad 1 2]" after this pause or '#'

[store]
path = ""                         # SQLite file for calls, turns, events ("" = store nothing)

[recording]                       # stereo WAV per call: caller left, Parley right, 16 kHz
dir = "var/recordings"
without_line = false              # record calls not on a [[line]] (each line has its own record = ...)
max_age_days = 30                 # delete older recordings (0 = keep)
max_total_mb = 2048               # delete the oldest beyond this (0 = no limit)

[http]                            # REST API, live events, /metrics, /healthz, /readyz, dashboard
listen = "127.0.0.1:8088"         # "off" = no HTTP server
token = ""                        # bearer token for /api; "" = generated once into token_file and printed
token_file = "var/http-token"     # mode 0600; the CLI (parley calls, show, call, hangup) reads it
overrides_file = "var/api-config.json"   # settings changed with PUT /api/config (applied over this file)

[log]
level = "info"                   # trace | debug | info | warn | error

# One [[line]] per SIP account to register (none: Parley only answers calls sent to it directly).
# [[line]]
# name = "office"
# registrar = "sip:pbx.example.com"   # sip:host[:port]
# user = "1001"
# auth_user = ""                      # default: user
# password = "secret"
# domain = ""                         # AoR domain; default: registrar host
# transport = "udp"                   # udp | tcp | tls (registrar = "sips:..." means tls)
# expires = 3600
# display_name = ""
# record = false                      # recordings of this line's calls ([recording])
# keepalive_s = 15                    # OPTIONS to the registrar this often (keeps a NAT binding open); 0 = off
# srtp = ""                           # off | optional | required; "" = media.srtp
)";
}

}  // namespace parley
