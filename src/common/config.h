// config.h — Parley's configuration: a TOML file plus `--set section.key=value` overrides.
//
// load_config() reads the file, applies the overrides, and validates every key: an unknown key, a wrong
// type or an out-of-range value is an error that names the file, the key and what is expected. It never
// throws. Every key and its default is documented in the README ("Configuration").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace parley {

struct SipConfig {
    std::string listen_host = "0.0.0.0";  // from listen = "host:port"
    uint16_t listen_port = 5060;    // 0: any free port
    bool listen_given = false;      // listen was set in the file or with --set
    std::string user_agent = "Parley/0.1";
};

struct MediaConfig {
    uint16_t rtp_port_min = 20000;  // from rtp_ports = "min-max"
    uint16_t rtp_port_max = 29999;
    std::string address;            // advertised in SDP; empty = the SIP listen host (or 127.0.0.1)
    std::vector<std::string> codecs = {"PCMU", "PCMA", "G722"};
    int ptime = 20;                 // ms, for our offers
    int jitter_ms = 60;             // jitter buffer target
    int timeout_s = 30;             // no RTP for this long ends the call with BYE (0 = never)
    bool symmetric_rtp = true;      // latch once onto the real source address (NAT)
};

struct CallConfig {
    std::string handler = "echo";   // echo | playback
    int max_concurrent = 32;
    int answer_delay_ms = 0;        // ring before answering
    int echo_delay_ms = 200;
    std::string playback_file;
    int max_duration_s = 0;         // 0 = unlimited
};

struct LineConfig {
    std::string name;
    std::string registrar;          // sip:host[:port]
    std::string user;
    std::string auth_user;          // empty = user
    std::string password;
    std::string domain;             // AoR domain; empty = registrar host
    std::string transport = "udp";  // udp | tcp
    int expires = 3600;             // seconds
    std::string display_name;
};

struct LogConfig {
    std::string level = "info";     // trace | debug | info | warn | error
};

struct Config {
    std::string source;  // file path, for messages
    SipConfig sip;
    MediaConfig media;
    CallConfig call;
    std::vector<LineConfig> lines;
    LogConfig log;
};

// Loads `path` (empty path = defaults only) and applies `overrides` ("section.key=value",
// "line.N.key=value"). Returns nullopt with *error set to a message such as
// "parley.toml: media.rtp_ports: expected \"min-max\" with even min < max, got \"30000\"".
std::optional<Config> load_config(const std::string& path, const std::vector<std::string>& overrides,
                                  std::string* error);

// A config file with every key at its default and a comment for each: what `parley config` prints.
std::string default_config_text();

}  // namespace parley
