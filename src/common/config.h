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

// SIP over TLS (sofia-sip's TLS transport, OpenSSL). docs/tls.md says what is verified and how.
struct SipTlsConfig {
    std::string listen;             // sip.tls_listen: "host:port", "off", or "" = auto (below)
    std::string listen_host;        // resolved: where the TLS listener binds ("" = no TLS at all)
    uint16_t listen_port = 0;       // resolved (0: any free port)
    std::string cert;               // PEM certificate: the listener's, and our client certificate
    std::string key;                // PEM private key; "" = in `cert`
    std::string ca_file = "/etc/ssl/certs/ca-certificates.crt";  // CAs that verify the peer
    std::string dir = "var/tls";    // private directory (0700) where sofia-sip's cert files are assembled
    bool enabled() const { return !listen_host.empty(); }
};

struct SipConfig {
    std::string listen_host = "0.0.0.0";  // from listen = "host:port"
    uint16_t listen_port = 5060;    // 0: any free port
    bool listen_given = false;      // listen was set in the file or with --set
    std::string user_agent = "Parley/0.1";
    // NAT (docs/nat.md): the address peers outside local_networks see in Contact/Via; "" = discover it
    // (stun_server, and the received/rport of REGISTER responses), or none when nothing is discovered.
    std::string external_address;
    std::vector<std::string> local_networks = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                               "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"};
    std::string stun_server;        // "host[:port]" (3478); "" = no STUN
    int stun_interval_s = 60;       // STUN again this often (0 = only at start)
    SipTlsConfig tls;               // sip.tls_* keys: SIP over TLS (docs/tls.md)
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
    std::string external_address;   // SDP address for peers outside sip.local_networks; "" = sip's external
    // SRTP with SDES keys (docs/srtp.md)
    std::string srtp = "off";       // off | optional | required (a line's srtp overrides it)
    bool srtp_insecure_signalling = false;  // allow SDES keys over signalling that is not TLS
};

struct CallConfig {
    std::string handler = "echo";   // echo | playback | conversation
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
    std::string transport = "udp";  // udp | tcp | tls (a sips: registrar means tls)
    int expires = 3600;             // seconds
    std::string display_name;
    bool record = false;            // stereo WAV of every call on this line ([recording])
    int keepalive_s = 15;           // OPTIONS to the registrar this often while registered (NAT); 0 = off
    std::string srtp;               // off | optional | required; "" = media.srtp (docs/srtp.md)
};

// Speech and language engines. engine = "embedded" (in-process whisper.cpp / llama.cpp / espeak-ng) or
// "openai" (a server speaking the OpenAI-compatible HTTP API at base_url).
struct RemoteConfig {
    std::string base_url;          // e.g. "http://127.0.0.1:8080/v1"
    std::string api_key;           // sent as "Authorization: Bearer ..." when not empty
    std::string model;             // the remote model name
    int connect_timeout_ms = 2000;
    int timeout_ms = 20000;        // whole request (streams: longest silence between chunks)
    int retries = 2;               // bounded retries with backoff for failures before any output
};

struct SttConfig {
    std::string engine = "embedded";
    std::string model;             // whisper ggml model file (embedded)
    std::string vad_model;         // Silero VAD in whisper.cpp's ggml format (embedded)
    std::string language = "en";   // "auto" to detect
    std::string prompt;            // initial prompt (names, jargon)
    int threads = 2;               // per decode
    int workers = 2;               // decodes that may run at once (each has its own whisper_state)
    // Size whisper's encoder to the utterance (audio_ctx = its 20 ms frames plus a margin, stt.h
    // fitted_audio_ctx) instead of always encoding the full 30 s window: at base.en size on 2 cores a 3 s
    // turn costs ~0.3 s instead of ~2.5 s. false = the full window, as whisper-cli does by default.
    bool fit_window = true;
    RemoteConfig remote;
};

struct LlmConfig {
    std::string engine = "embedded";
    std::string model;             // GGUF chat model (embedded)
    std::string system_prompt = "You are Parley, a friendly telephone assistant. Answer in one or two short "
                                "spoken sentences.";
    int context = 4096;            // tokens, shared by all calls' sequences
    int max_sequences = 8;         // calls generating at once (llama sequences)
    int threads = 2;
    int max_tokens = 200;          // per reply
    double temperature = 0.7;      // 0 = greedy
    double top_p = 0.9;
    int top_k = 40;
    int seed = 0;                  // 0 = random
    RemoteConfig remote;
};

struct TtsConfig {
    std::string engine = "embedded";  // embedded = espeak-ng
    std::string voice = "en-us";
    int rate_wpm = 170;
    RemoteConfig remote;              // engine = "openai": POST /audio/speech, response_format pcm
    std::string remote_voice = "alloy";
    int remote_sample_rate = 24000;   // rate of the raw PCM the server returns
};

// The conversation handler (call.handler = "conversation"): turn-taking, barge-in, prompts, tools.
// docs/conversation.md explains each constant and the measurements that chose the defaults.
struct AgentConfig {
    std::string greeting = "Hello, this is Parley. How can I help you?";  // empty = say nothing first
    std::string goodbye = "Thank you for calling. Goodbye.";  // before hang_up, max length, silence
    double vad_threshold = 0.5;     // Silero speech probability that counts as speech
    int min_speech_ms = 120;        // shorter bursts (clicks, coughs) are not an utterance
    int end_of_turn_short_ms = 250; // pause after which a speculative transcript is checked
    int end_of_turn_long_ms = 900;  // pause that ends the turn whatever the text says
    int max_utterance_s = 30;       // a longer monologue is cut into a turn
    bool barge_in = true;           // caller speech while Parley speaks stops Parley
    int barge_in_min_ms = 200;      // speech needed to count as barge-in
    bool echo_canceller = true;     // WebRTC AEC with our playout as reference, before the VAD
    int silence_prompt_s = 10;      // caller silent this long after Parley spoke: prompt (0 = never)
    std::string silence_prompt = "Are you still there?";
    int silence_prompts_max = 2;    // then goodbye and hang up
    std::vector<std::string> tools = {"hang_up", "transfer", "send_dtmf"};  // offered to the model
    std::string transfer_target;    // sip: URI for transfer (empty = transfer tool not offered)
    // DTMF: digits go to the model as "[keypad 1 2 3]" after dtmf_timeout_ms or '#', unless a digit
    // has an action here: "DIGIT=hang_up" or "DIGIT=transfer".
    std::vector<std::string> dtmf_actions;
    int dtmf_timeout_ms = 1500;
};

// Where calls, turns and events are kept (SQLite, WAL). Empty path: nothing is stored.
struct StoreConfig {
    std::string path;               // e.g. "var/parley.db" (config/parley.toml sets it); directories are created
};

// Call recordings: one stereo WAV per call (caller left, Parley right, 16 kHz), written as the call goes.
// Which calls: [[line]] record = true for a line's calls, without_line for calls sent to Parley directly.
struct RecordingConfig {
    std::string dir = "var/recordings";  // created when needed
    bool without_line = false;       // record calls that came to (or left from) no [[line]]
    int max_age_days = 30;           // older recordings are deleted (0 = keep forever)
    int max_total_mb = 2048;         // oldest deleted first beyond this (0 = no limit)
};

// The HTTP server: REST API, server-sent events, /metrics, /healthz, /readyz and the dashboard.
struct HttpConfig {
    std::string listen_host = "127.0.0.1";  // from listen = "host:port"; "" listen = off
    uint16_t listen_port = 8088;    // 0: any free port (logged)
    bool enabled = true;
    std::string token;              // bearer token for /api; empty = generated once into token_file
    std::string token_file = "var/http-token";   // 0600; read by the CLI (parley calls ...)
    std::string overrides_file = "var/api-config.json";  // settings changed with PUT /api/config
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
    SttConfig stt;
    LlmConfig llm;
    TtsConfig tts;
    AgentConfig agent;
    StoreConfig store;
    RecordingConfig recording;
    HttpConfig http;
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
