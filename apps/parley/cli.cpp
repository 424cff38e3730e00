// cli.cpp — see cli.h.
#include "cli.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/config.h"
#include "net/http_client.h"

namespace parley::cli {

using nlohmann::json;

namespace {

std::string url_encode(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

struct Result {
    int rc = 0;  // 0 ok, 1 API error, 2 transport
    json body;
};

Result request(const ApiOptions& api, const std::string& method, const std::string& path, const json* body = nullptr) {
    net::HttpRequest req;
    req.url = api.base_url + path;
    req.bearer_token = api.token;
    req.retries = 0;
    req.timeout_ms = 10000;
    if (method == "GET") {
        req.get = true;
    } else if (method != "POST") {
        req.method = method;
    }
    if (body) req.body = body->dump();
    std::string text;
    auto r = net::perform_collect(req, &text, CancelToken());
    Result out;
    if (r.status == 0) {
        std::fprintf(stderr, "parley: cannot reach Parley at %s: %s\n", api.base_url.c_str(), r.error.c_str());
        out.rc = 2;
        return out;
    }
    if (!r.ok) {
        auto err = json::parse(r.error_body, nullptr, false);
        std::string msg = !err.is_discarded() && err.is_object() && err.contains("error") && err["error"].is_string()
                              ? err["error"].get<std::string>()
                              : r.error_body;
        std::fprintf(stderr, "parley: %ld: %s\n", r.status, msg.c_str());
        out.rc = r.status == 401 ? 2 : 1;
        return out;
    }
    out.body = json::parse(text, nullptr, false);
    if (out.body.is_discarded()) {
        std::fprintf(stderr, "parley: the API answered something that is not JSON\n");
        out.rc = 1;
    }
    return out;
}

std::string when(const json& ms) {
    if (!ms.is_number()) return "-";
    std::time_t t = static_cast<std::time_t>(ms.get<int64_t>() / 1000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::string str(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return "-";
    if (j[key].is_string()) return j[key].get<std::string>().empty() ? "-" : j[key].get<std::string>();
    return j[key].dump();
}

std::string ms(const json& timing, const char* key) {
    if (!timing.contains(key) || !timing[key].is_number()) return "-";
    return fmt::format("{:.0f}", timing[key].get<double>());
}

std::string clip(std::string s, size_t n) {
    if (s.size() > n) s = s.substr(0, n - 1) + "~";
    return s;
}

}  // namespace

std::string read_token_file(const std::string& path) {
    std::ifstream in(path);
    std::string token;
    if (!in || !std::getline(in, token) || token.size() < 16) return "";
    return token;
}

bool resolve(ApiOptions& api, const std::string& config_path, const std::vector<std::string>& sets,
             std::string* error) {
    if (api.base_url.empty())
        if (const char* e = std::getenv("PARLEY_API")) api.base_url = e;
    if (api.token.empty())
        if (const char* e = std::getenv("PARLEY_TOKEN")) api.token = e;
    if (!api.base_url.empty() && !api.token.empty()) return true;
    auto cfg = load_config(config_path, sets, error);
    if (!cfg) return false;
    if (api.base_url.empty()) {
        std::string host = cfg->http.listen_host;
        if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
        if (host.find(':') != std::string::npos) host = "[" + host + "]";
        api.base_url = fmt::format("http://{}:{}", host, cfg->http.listen_port);
    }
    while (!api.base_url.empty() && api.base_url.back() == '/') api.base_url.pop_back();
    if (api.token.empty()) api.token = cfg->http.token;
    if (api.token.empty()) api.token = read_token_file(cfg->http.token_file);
    if (api.token.empty()) {
        *error = fmt::format("no API token: give --token, set PARLEY_TOKEN, or run where {} is readable",
                             cfg->http.token_file);
        return false;
    }
    return true;
}

int calls(const ApiOptions& api, const CallsQuery& q) {
    std::string path = fmt::format("/api/calls?limit={}&offset={}", q.limit, q.offset);
    if (!q.q.empty()) path += "&q=" + url_encode(q.q);
    if (!q.status.empty()) path += "&status=" + url_encode(q.status);
    if (!q.direction.empty()) path += "&direction=" + url_encode(q.direction);
    auto r = request(api, "GET", path);
    if (r.rc) return r.rc;
    if (api.json) {
        std::printf("%s\n", r.body.dump(2).c_str());
        return 0;
    }
    std::printf("%-22s %-19s %-8s %-28s %-24s %8s %5s  %s\n", "ID", "STARTED", "DIR", "FROM", "TO", "SECONDS",
                "TURNS", "END");
    for (const auto& c : r.body["calls"]) {
        std::string dur = c["duration_s"].is_number() ? fmt::format("{:.1f}", c["duration_s"].get<double>()) : "-";
        std::string end = c.value("live", false) ? "(live)" : str(c, "end_reason");
        std::printf("%-22s %-19s %-8s %-28s %-24s %8s %5s  %s\n", str(c, "id").c_str(), when(c["started_at"]).c_str(),
                    str(c, "direction").c_str(), clip(str(c, "from"), 28).c_str(), clip(str(c, "to"), 24).c_str(),
                    dur.c_str(), str(c, "turns").c_str(), end.c_str());
    }
    std::printf("%zu of %s calls\n", r.body["calls"].size(), r.body["total"].dump().c_str());
    return 0;
}

int show(const ApiOptions& api, const std::string& id) {
    auto r = request(api, "GET", "/api/calls/" + url_encode(id));
    if (r.rc) return r.rc;
    const auto& c = r.body;
    if (api.json) {
        std::printf("%s\n", c.dump(2).c_str());
        return 0;
    }
    std::printf("call %s  %s%s\n", str(c, "id").c_str(), str(c, "direction").c_str(),
                c.value("live", false) ? "  (live)" : "");
    std::printf("  from %s\n  to   %s\n  line %s   SIP Call-ID %s\n", str(c, "from").c_str(), str(c, "to").c_str(),
                str(c, "line").c_str(), str(c, "sip_call_id").c_str());
    std::printf("  started %s  answered %s  ended %s  (%s)\n", when(c["started_at"]).c_str(),
                when(c["answered_at"]).c_str(), when(c["ended_at"]).c_str(), str(c, "end_reason").c_str());
    if (c.value("recording", false))
        std::printf("  recording: %s/api/calls/%s/recording\n", api.base_url.c_str(), str(c, "id").c_str());
    for (const auto& t : c["turns"]) {
        std::printf("\n  #%s %s\n", str(t, "idx").c_str(), str(t, "trigger").c_str());
        std::printf("    caller: %s\n", str(t, "user").c_str());
        std::printf("    parley: %s%s\n", str(t, "reply").c_str(), t.value("interrupted", false) ? "  [interrupted]" : "");
        const auto& tm = t["timing"];
        std::printf("    voice-to-voice %s ms (end of turn %s, stt %s, llm first token %s, first clause %s, "
                    "tts %s; overhead %s)\n",
                    ms(tm, "voice_to_voice_ms").c_str(), ms(tm, "eot_ms").c_str(), ms(tm, "stt_final_ms").c_str(),
                    ms(tm, "llm_first_token_ms").c_str(), ms(tm, "first_sentence_ms").c_str(),
                    ms(tm, "tts_first_audio_ms").c_str(), ms(tm, "overhead_ms").c_str());
    }
    if (!c["events"].empty()) std::printf("\n  events:\n");
    for (const auto& e : c["events"])
        std::printf("    %s  %s  %s\n", when(e["at"]).c_str(), str(e, "kind").c_str(), str(e, "detail").c_str());
    return 0;
}

int call(const ApiOptions& api, const std::string& uri, const std::string& line, const std::string& message) {
    json body = {{"to", uri}};
    if (!line.empty()) body["line"] = line;
    if (!message.empty()) body["first_message"] = message;
    auto r = request(api, "POST", "/api/calls", &body);
    if (r.rc) return r.rc;
    if (api.json) {
        std::printf("%s\n", r.body.dump(2).c_str());
    } else {
        std::printf("%s\n", str(r.body, "id").c_str());
    }
    return 0;
}

int hangup(const ApiOptions& api, const std::string& id) {
    auto r = request(api, "DELETE", "/api/calls/" + url_encode(id));
    if (r.rc) return r.rc;
    std::printf("%s\n", api.json ? r.body.dump(2).c_str() : ("hanging up " + id).c_str());
    return 0;
}

}  // namespace parley::cli
