// sip_stack.cpp — sofia-sip NUA on its own su_root thread (see sip_stack.h for the contract).
//
// Everything in Impl below the "SIP thread only" line is touched exclusively by the SIP thread. Other
// threads enqueue closures under `queue_mu_` and poke an eventfd that the su_root loop waits on.
#include "sip/sip_stack.h"

#include <strings.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <netdb.h>

#include <sofia-sip/nta_tag.h>
#include <sofia-sip/nua.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_log.h>
#include <sofia-sip/su_tag.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/url.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <condition_variable>
#include <deque>
#include <fmt/format.h>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/log.h"
#include "net/nat.h"
#include "sip/sip_tls.h"
#include "media/srtp.h"  // redact_sdes_keys: no SDES key in logged SIP messages

extern "C" {
// sofia-sip's per-module log objects (exported by libsofia-sip-ua, not declared in its public headers).
extern su_log_t nta_log[];
extern su_log_t nua_log[];
extern su_log_t tport_log[];
extern su_log_t sresolv_log[];
extern su_log_t nea_log[];
}

namespace parley::sip {

const char* line_state_str(LineState s) {
    switch (s) {
        case LineState::kUnregistered: return "unregistered";
        case LineState::kRegistering: return "registering";
        case LineState::kRegistered: return "registered";
        case LineState::kFailed: return "failed";
    }
    return "?";
}

const char* end_cause_str(EndCause c) {
    switch (c) {
        case EndCause::kRemoteBye: return "bye_remote";
        case EndCause::kLocalBye: return "bye_local";
        case EndCause::kCancelled: return "cancelled";
        case EndCause::kRejected: return "rejected";
        case EndCause::kFailed: return "failed";
        case EndCause::kTimeout: return "timeout";
        case EndCause::kShutdown: return "shutdown";
    }
    return "?";
}

namespace {

std::string url_str(const url_t* url) {
    if (!url) return {};
    char buf[1024];
    isize_t n = url_e(buf, sizeof buf, url);
    if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) return {};
    return std::string(buf, static_cast<size_t>(n));
}

std::string payload_str(const sip_t* sip) {
    if (!sip || !sip->sip_payload || !sip->sip_payload->pl_data) return {};
    return std::string(sip->sip_payload->pl_data, sip->sip_payload->pl_len);
}

// "sip:pbx.example.com:5080;transport=tcp" (or sips:) -> "pbx.example.com"
std::string host_of(const std::string& uri) {
    std::string s = uri.rfind("sip:", 0) == 0 ? uri.substr(4) : uri.rfind("sips:", 0) == 0 ? uri.substr(5) : uri;
    if (auto at = s.find('@'); at != std::string::npos) s = s.substr(at + 1);
    if (!s.empty() && s[0] == '[') return s.substr(0, s.find(']') + 1);
    return s.substr(0, s.find_first_of(":;>"));
}

// A line's address of record: sip:user@domain (the registrar's host when no domain is set).
std::string aor_of(const LineConfig& cfg) {
    return fmt::format("sip:{}@{}", cfg.user, cfg.domain.empty() ? host_of(cfg.registrar) : cfg.domain);
}

// Where a line's REGISTERs and keep-alives go: the registrar URI with the line's transport made explicit
// (a tls line: TLS or nothing, never UDP/TCP in clear).
std::string registrar_target(const LineConfig& cfg) {
    std::string target = cfg.registrar;
    if (cfg.transport == "tcp" && target.find("transport=") == std::string::npos) target += ";transport=tcp";
    if (cfg.transport == "tls") target = tls::force_tls(target);
    return target;
}

constexpr int kMaxBackoffMs = 60000;

// sofia-sip prints diagnostics (e.g. "tport_udp_error: Connection refused") to stderr in fragments;
// collect them into whole lines and log each as one event, at most 20 a second.
void sofia_logger(void*, const char* fmt, va_list ap) {
    static std::mutex mu;
    static std::string line;
    static std::chrono::steady_clock::time_point window;
    static int in_window = 0;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::vector<std::string> complete;  // logged after the lock is released: no lock across the write
    std::vector<std::string> all;       // every line, also those over the rate limit (TLS diagnostics)
    {
        std::lock_guard lk(mu);
        line += buf;
        size_t nl;
        while ((nl = line.find('\n')) != std::string::npos) {
            std::string msg = line.substr(0, nl);
            line.erase(0, nl + 1);
            for (auto& c : msg)
                if (c == '"') c = '\'';
            if (msg.empty()) continue;
            all.push_back(msg);
            auto now = std::chrono::steady_clock::now();
            if (now - window > std::chrono::seconds(1)) {
                window = now;
                in_window = 0;
            }
            if (++in_window <= 20) complete.push_back(std::move(msg));
        }
        if (line.size() > 4096) line.clear();
    }
    for (auto& msg : all) tls::note_diagnostic(msg);  // SIP over TLS: why a connection was refused
    // SRTP: sofia prints whole messages when TPORT_LOG is set; SDES keys in their SDP must not reach the log.
    for (auto& msg : complete) PLOG_WARN("event=sofia_log msg=\"{}\"", media::redact_sdes_keys(msg));
}

void redirect_sofia_logs() {
    for (su_log_t* l : {su_log_default, nta_log, nua_log, tport_log, sresolv_log, nea_log})
        su_log_redirect(l, &sofia_logger, nullptr);
}

}  // namespace

struct SipStack::Impl {
    SipStackOptions options;
    SipEvents& events;

    // ---- shared between threads ----
    std::mutex queue_mu;
    std::deque<std::function<void()>> queue;
    int wake_fd = -1;
    std::atomic<uint64_t> next_id{1};
    mutable std::mutex lines_mu;  // guards line_status (read by lines() from any thread)
    std::vector<LineStatus> line_status;
    std::thread thread;
    std::atomic<bool> stopped{false};
    std::vector<std::string> registrar_ips;  // NAT: per line, resolved by start() before the thread runs

    // ---- SIP thread only ----
    enum class DialogState { kIncoming, kOutgoing, kEstablished, kTerminated };
    struct Dialog {
        DialogId id;
        nua_handle_t* nh;
        DialogState state;
        bool incoming;
        bool offer_in_answer = false;  // incoming INVITE had no SDP: our 2xx is the offer
        bool remote_bye = false, cancelled = false, local_bye = false, rejected = false;
        bool auth_tried = false;
        std::string line;
        std::string contact_user;  // user part for our Contact (the line's user, or the Request-URI user)
        std::string tls_contact;   // our Contact for a sip:...;transport=tls INVITE over TLS (answer_contact)
        std::string local_uri;     // our side of the dialog (To of an incoming INVITE, From of ours): Referred-By
        std::string contact;       // NAT: explicit Contact for this dialog, "" = NUA's own
        int final_status = 0;
        std::string final_phrase;
    };
    struct Line {
        LineConfig cfg;
        size_t index;
        nua_handle_t* nh = nullptr;
        su_timer_t* retry = nullptr;
        bool auth_pending = false;
        bool unregistering = false;
        int backoff_ms = 1000;
        // NAT (see SipStackOptions::nat)
        std::string registrar_ip;       // resolved once at start (the SIP thread never resolves)
        std::string contact;            // the explicit Contact of our REGISTER, "" = NUA's own
        bool nat_reregister = false;    // un-REGISTERing the stale Contact, then REGISTER the new one
        int nat_reregisters = 0;        // in a row (bounded)
        nua_handle_t* ka_nh = nullptr;  // OPTIONS keep-alives
        su_timer_t* ka_timer = nullptr;
        bool ka_failing = false;
        su_timer_t* tls_watch = nullptr;  // SIP over TLS: fails a REGISTER whose connection sofia refused
        std::chrono::steady_clock::time_point attempt_at;
    };
    su_root_t* root = nullptr;
    int wake_index = -1;
    nua_t* nua = nullptr;
    su_timer_t* shutdown_timer = nullptr;
    std::unordered_map<DialogId, std::unique_ptr<Dialog>> dialogs;
    std::vector<std::unique_ptr<Line>> lines;
    // nua_respond() keeps the phrase pointer until the stack processes the response (later in the loop), so
    // phrases must outlive the command that sent them: interned here (a handful of distinct strings).
    std::unordered_set<std::string> phrases;
    const char* intern_phrase(const std::string& p) { return phrases.insert(p).first->c_str(); }
    bool shutting_down = false;
    int unregisters_pending = 0;

    Impl(const SipStackOptions& o, SipEvents& e) : options(o), events(e) {}

    void post(std::function<void()> fn) {
        {
            std::lock_guard lk(queue_mu);
            queue.push_back(std::move(fn));
        }
        uint64_t one = 1;
        ssize_t n = ::write(wake_fd, &one, sizeof one);
        (void)n;  // eventfd write only fails on counter overflow; the loop drains the queue anyway
    }

    // Runs on the SIP thread when wake_fd is readable.
    void drain() {
        uint64_t v;
        ssize_t n = ::read(wake_fd, &v, sizeof v);
        (void)n;
        std::deque<std::function<void()>> work;
        {
            std::lock_guard lk(queue_mu);
            work.swap(queue);
        }
        for (auto& fn : work) fn();
    }

    Dialog* dialog(DialogId id) {
        auto it = dialogs.find(id);
        return it == dialogs.end() ? nullptr : it->second.get();
    }

    Line* line_by_name(const std::string& name) {
        for (auto& l : lines)
            if (l->cfg.name == name) return l.get();
        return nullptr;
    }

    void publish_line(Line& l, LineState state, int status, const char* phrase, int expires) {
        LineStatus copy;
        {
            std::lock_guard lk(lines_mu);
            auto& st = line_status[l.index];
            st.state = state;
            st.last_status = status;
            st.last_phrase = phrase ? phrase : "";
            if (expires >= 0) st.expires = expires;
            if (state == LineState::kFailed) ++st.failures;
            if (state == LineState::kRegistered) st.failures = 0;
            copy = st;
        }
        events.on_line_state(copy);
    }

    // ---------------------------------------------------------------------------------------------
    bool start_nua(std::string* error) {
        root = su_root_create(this);
        if (!root) {
            *error = "su_root_create failed";
            return false;
        }
        su_wait_t wait;
        if (su_wait_create(&wait, wake_fd, SU_WAIT_IN) != 0 ||
            (wake_index = su_root_register(root, &wait, &Impl::on_wake, reinterpret_cast<su_wakeup_arg_t*>(this),
                                           0)) < 0) {
            *error = "cannot register the command queue with su_root";
            return false;
        }
        std::string url = fmt::format("sip:{}:{}", options.listen_host.find(':') != std::string::npos
                                                        ? "[" + options.listen_host + "]"
                                                        : options.listen_host,
                                      options.listen_port ? std::to_string(options.listen_port) : "*");
        url = nat_listen_url(url);
        // SIP over TLS: a sips: listener with the certificate directory; outgoing connections verify the
        // peer's chain (cafile.pem) and that its certificate names the host we connect to.
        std::string sips_url, cert_dir;
        if (options.tls.enabled()) {
            cert_dir = tls::prepare_dir(options.tls, error);
            if (cert_dir.empty()) return false;
            const std::string& th = options.tls.listen_host;
            sips_url = fmt::format("sips:{}:{}", th.find(':') != std::string::npos ? "[" + th + "]" : th,
                                   options.tls.listen_port ? std::to_string(options.tls.listen_port) : "*");
        }
        bool use_tls = !sips_url.empty();
        nua = nua_create(root, &Impl::on_nua_event, reinterpret_cast<nua_magic_t*>(this), NUTAG_URL(url.c_str()),
                         TAG_IF(use_tls, NUTAG_SIPS_URL(sips_url.c_str())),
                         TAG_IF(use_tls, NUTAG_CERTIFICATE_DIR(cert_dir.c_str())),
                         TAG_IF(use_tls, TPTAG_TLS_VERIFY_POLICY(TPTLS_VERIFY_SUBJECTS_OUT)),
                         TAG_IF(use_tls, TPTAG_TLS_VERIFY_DATE(1)), TAG_IF(use_tls, TPTAG_TLS_VERIFY_DEPTH(5)),
                         SIPTAG_USER_AGENT_STR(options.user_agent.c_str()),
                         NUTAG_MEDIA_ENABLE(0),      // SDP is ours (src/sdp), sofia only carries it
                         NUTAG_AUTOANSWER(0), NUTAG_AUTOACK(1), NUTAG_ENABLEINVITE(1),
                         NUTAG_ALLOW("INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, REFER, UPDATE"),
                         NUTAG_OUTBOUND("no-options-keepalive, no-validate, no-natify"),
                         NUTAG_SESSION_TIMER(0),
                         TAG_IF(options.nat != nullptr, NTATAG_CLIENT_RPORT(1)),  // RFC 3581: see nat_*
                         TAG_END());
        if (!nua) {
            *error = use_tls ? fmt::format("cannot listen on {} (UDP and TCP) and {} (TLS): address in use, not "
                                       "local, or the TLS files in {} are not usable (see the sofia_log lines)",
                                       url, sips_url, cert_dir)
                         : fmt::format("cannot listen on {} (UDP and TCP): address in use or not local", url);
            return false;
        }
        if (use_tls) PLOG_INFO("event=sip_tls_listening url={} ca_file={}", sips_url, options.tls.ca_file);
        for (size_t i = 0; i < options.lines.size(); ++i) {
            auto l = std::make_unique<Line>();
            l->cfg = options.lines[i];
            l->index = i;
            l->retry = su_timer_create(su_root_task(root), 0);
            l->ka_timer = su_timer_create(su_root_task(root), 0);
            l->registrar_ip = registrar_ips.size() > i ? registrar_ips[i] : std::string();
            if (l->cfg.transport == "tls") l->tls_watch = su_timer_create(su_root_task(root), 0);
            lines.push_back(std::move(l));
        }
        for (auto& l : lines) register_line(*l);
        return true;
    }

    void register_line(Line& l) {
        const std::string aor = aor_of(l.cfg);
        const std::string registrar = registrar_target(l.cfg);
        if (l.cfg.transport == "tls") {
            // One new TLS registration at a time in its watch window, so that a refusal sofia logs (without
            // saying for which connection) belongs to the attempt in flight: the others wait, 2 s at most each.
            auto now = std::chrono::steady_clock::now();
            for (auto& other : lines) {
                if (other.get() == &l || other->cfg.transport != "tls" || !other->nh) continue;
                if (now - other->attempt_at > std::chrono::milliseconds(kTlsWatchMs + 100)) continue;
                LineState st;
                {
                    std::lock_guard lk(lines_mu);
                    st = line_status[other->index].state;
                }
                if (st != LineState::kRegistering) continue;
                su_timer_set_interval(l.retry, &Impl::on_retry_timer, reinterpret_cast<su_timer_arg_t*>(&l), 200);
                return;
            }
            l.attempt_at = now;
            su_timer_set_interval(l.tls_watch, &Impl::on_tls_watch, reinterpret_cast<su_timer_arg_t*>(&l),
                                  kTlsWatchMs);
        }
        if (!l.nh) {
            std::string to = l.cfg.display_name.empty() ? aor
                                                        : fmt::format("\"{}\" <{}>", l.cfg.display_name, aor);
            l.nh = nua_handle(nua, nullptr, SIPTAG_TO_STR(to.c_str()), SIPTAG_FROM_STR(to.c_str()), TAG_END());
        }
        l.auth_pending = false;
        std::string expires = std::to_string(l.cfg.expires);
        publish_line(l, LineState::kRegistering, 0, "", -1);
        PLOG_INFO("event=line_registering line={} registrar={} aor={} transport={}", l.cfg.name, l.cfg.registrar,
                  aor, l.cfg.transport);
        l.contact = nat_contact(l.registrar_ip.empty() ? host_of(l.cfg.registrar) : l.registrar_ip, l.cfg.name,
                                l.cfg.user, l.cfg.transport);
        if (!l.contact.empty())
            PLOG_INFO("event=nat_contact line={} registrar={} contact=\"{}\"", l.cfg.name, l.cfg.registrar,
                      l.contact);
        nua_register(l.nh, NUTAG_REGISTRAR(registrar.c_str()),
                     TAG_IF(l.contact.empty(), NUTAG_M_USERNAME(l.cfg.user.c_str())),
                     TAG_IF(!l.contact.empty(), SIPTAG_CONTACT_STR(l.contact.c_str())),
                     SIPTAG_EXPIRES_STR(expires.c_str()), TAG_END());
    }

    void schedule_reregister(Line& l) {
        int delay = l.backoff_ms;
        l.backoff_ms = std::min(l.backoff_ms * 2, kMaxBackoffMs);
        PLOG_INFO("event=line_retry line={} in_ms={}", l.cfg.name, delay);
        su_timer_set_interval(l.retry, &Impl::on_retry_timer, reinterpret_cast<su_timer_arg_t*>(&l), delay);
    }

    static void on_retry_timer(su_root_magic_t* magic, su_timer_t*, su_timer_arg_t* arg) {
        auto* self = reinterpret_cast<Impl*>(magic);
        if (self->shutting_down) return;
        self->register_line(*reinterpret_cast<Line*>(arg));
    }

    // SIP over TLS. sofia-sip closes a connection whose certificate it refuses without failing the REGISTER
    // waiting for it: that one would end by timer F (408 after 32 s). kTlsWatchMs after each attempt, a line
    // still waiting whose connection sofia refused (a diagnostic noted since the attempt, for its host or
    // naming none) fails now with that reason: its handle (and the transaction) is destroyed, and it retries
    // with the usual backoff.
    static constexpr int kTlsWatchMs = 2000;
    static void on_tls_watch(su_root_magic_t* magic, su_timer_t*, su_timer_arg_t* arg) {
        auto* self = reinterpret_cast<Impl*>(magic);
        auto& l = *reinterpret_cast<Line*>(arg);
        if (self->shutting_down || l.unregistering || !l.nh) return;
        {
            std::lock_guard lk(self->lines_mu);
            if (self->line_status[l.index].state != LineState::kRegistering) return;
        }
        std::string why = tls::take_diagnostic(host_of(l.cfg.registrar), l.attempt_at, false);
        if (why.empty()) return;  // no refusal seen: the REGISTER is merely slow (timer F still bounds it)
        nua_handle_destroy(l.nh);
        l.nh = nullptr;
        l.auth_pending = false;
        self->fail_line_tls(l, 503, "TLS connection refused", why);
    }

    void fail_line_tls(Line& l, int status, const char* phrase, std::string why) {
        for (auto& c : why)
            if (c == '"') c = '\'';
        std::string ph = fmt::format("{} (TLS: {})", phrase ? phrase : "", why);
        PLOG_WARN("event=line_register_failed line={} status={} phrase=\"{}\" reason=\"TLS: {}\"", l.cfg.name,
                  status, phrase ? phrase : "", why);
        publish_line(l, LineState::kFailed, status, ph.c_str(), 0);
        if (!shutting_down) schedule_reregister(l);
    }

    bool authenticate(nua_handle_t* nh, const sip_t* sip, const LineConfig& cfg) {
        const msg_param_t* params = nullptr;
        const char* scheme = nullptr;
        if (sip && sip->sip_www_authenticate) {
            params = sip->sip_www_authenticate->au_params;
            scheme = sip->sip_www_authenticate->au_scheme;
        } else if (sip && sip->sip_proxy_authenticate) {
            params = sip->sip_proxy_authenticate->au_params;
            scheme = sip->sip_proxy_authenticate->au_scheme;
        }
        if (!params || !scheme) return false;
        const char* realm = msg_params_find(params, "realm=");
        if (!realm) return false;
        // NUTAG_AUTH wants scheme:"realm":user:password; realm from the header keeps its quotes.
        std::string cred = fmt::format("{}:{}:{}:{}", scheme, realm, cfg.auth_user, cfg.password);
        nua_authenticate(nh, NUTAG_AUTH(cred.c_str()), TAG_END());
        return true;
    }

    void on_register_response(Line& l, int status, const char* phrase, const sip_t* sip) {
        if (status < 200) return;
        if ((status == 401 || status == 407) && !l.auth_pending && !l.unregistering) {
            l.auth_pending = true;
            if (authenticate(l.nh, sip, l.cfg)) return;
        }
        if (status >= 200 && status < 300) {
            l.auth_pending = false;
            l.backoff_ms = 1000;
            int expires = l.cfg.expires;
            if (sip && sip->sip_contact && sip->sip_contact->m_expires)
                expires = std::atoi(sip->sip_contact->m_expires);
            else if (sip && sip->sip_expires)
                expires = static_cast<int>(sip->sip_expires->ex_delta);
            if (l.tls_watch) su_timer_reset(l.tls_watch);
            if (nat_check_register_response(l, sip)) return;  // re-registering with the address seen
            PLOG_INFO("event=line_registered line={} status={} expires={} contact=\"{}\"", l.cfg.name, status,
                      expires, l.contact.empty() ? "local" : l.contact);
            publish_line(l, LineState::kRegistered, status, phrase, expires);
            start_keepalive(l);
            return;
        }
        l.auth_pending = false;
        // SIP over TLS: a connection that failed gets a locally made 503 (or 408): say why, if sofia said.
        if (l.cfg.transport == "tls" && (status == 503 || status == 408)) {
            su_timer_reset(l.tls_watch);
            std::string why = tls::take_diagnostic(host_of(l.cfg.registrar), l.attempt_at, true);
            if (why.empty()) why = "no diagnostic from sofia-sip: no connection (refused, unreachable), or the "
                                   "registrar answered this itself";
            return fail_line_tls(l, status, phrase, why);
        }
        PLOG_WARN("event=line_register_failed line={} status={} phrase=\"{}\"", l.cfg.name, status,
                  phrase ? phrase : "");
        publish_line(l, LineState::kFailed, status, phrase, 0);
        if (!shutting_down) schedule_reregister(l);
    }

    void on_unregister_response(Line& l, int status, const char* phrase, const sip_t* sip) {
        if (status < 200) return;
        if (l.nat_reregister && !l.unregistering) {
            if ((status == 401 || status == 407) && !l.auth_pending) {
                l.auth_pending = true;
                if (authenticate(l.nh, sip, l.cfg)) return;
            }
            // Whatever the answer (the stale binding expires anyway), register the new Contact.
            l.nat_reregister = false;
            PLOG_INFO("event=nat_stale_contact_removed line={} status={}", l.cfg.name, status);
            if (!shutting_down) register_line(l);
            return;
        }
        if (!l.unregistering) {
            // NUA un-REGISTERs by itself after a failed refresh; the line is in its retry cycle, and its
            // state (failed, retrying) has been published already.
            PLOG_DEBUG("event=line_auto_unregister line={} status={}", l.cfg.name, status);
            return;
        }
        if ((status == 401 || status == 407) && !l.auth_pending) {
            l.auth_pending = true;
            if (authenticate(l.nh, sip, l.cfg)) return;
        }
        PLOG_INFO("event=line_unregistered line={} status={}", l.cfg.name, status);
        publish_line(l, LineState::kUnregistered, status, phrase, 0);
        if (l.unregistering) {
            l.unregistering = false;
            if (--unregisters_pending == 0 && shutting_down) finish_shutdown();
        }
    }

    // ---------------------------------------------------------------------------------------------
    static int on_wake(su_root_magic_t* magic, su_wait_t*, su_wakeup_arg_t*) {
        reinterpret_cast<Impl*>(magic)->drain();
        return 0;
    }

    static void on_nua_event(nua_event_t event, int status, const char* phrase, nua_t*, nua_magic_t* magic,
                             nua_handle_t* nh, nua_hmagic_t* hmagic, const sip_t* sip, tagi_t tags[]) {
        reinterpret_cast<Impl*>(magic)->handle_event(event, status, phrase, nh, hmagic, sip, tags);
    }

    void handle_event(nua_event_t event, int status, const char* phrase, nua_handle_t* nh, nua_hmagic_t* hmagic,
                      const sip_t* sip, tagi_t tags[]) {
        Line* line = nullptr;
        for (auto& l : lines)
            if (nh && l->nh == nh) line = l.get();
        Dialog* d = line ? nullptr : reinterpret_cast<Dialog*>(hmagic);

        switch (event) {
            case nua_r_register:
                if (line) on_register_response(*line, status, phrase, sip);
                return;
            case nua_r_unregister:
                if (line) on_unregister_response(*line, status, phrase, sip);
                return;
            case nua_r_options:
                for (auto& l : lines)
                    if (nh && l->ka_nh == nh) on_keepalive_response(*l, status, phrase);
                return;
            case nua_r_shutdown:
                if (status >= 200) su_root_break(root);
                return;
            case nua_i_invite:
                if (!d) return on_new_invite(nh, sip);
                if (d->state == DialogState::kEstablished) {
                    events.on_reinvite(d->id, payload_str(sip));
                } else {
                    nua_respond(nh, SIP_491_REQUEST_PENDING, TAG_END());
                }
                return;
            case nua_i_ack:
                if (d) events.on_ack(d->id, d->offer_in_answer ? payload_str(sip) : std::string());
                if (d) d->offer_in_answer = false;
                return;
            case nua_i_bye:
                if (d) d->remote_bye = true;
                return;
            case nua_i_cancel:
                if (d) d->cancelled = true;
                return;
            case nua_r_invite:
                if (d) on_invite_response(*d, status, phrase, sip);
                return;
            case nua_r_bye:
                return;
            case nua_r_refer:
                // NUA reports 100 at once (the REFER is on its way), then the final response.
                if (d && status >= 200) {
                    PLOG_DEBUG("event=sip_refer_response dialog={} status={}", d->id, status);
                    events.on_refer_result(d->id, status, phrase ? phrase : "");
                }
                return;
            case nua_i_notify:
                // In-dialog NOTIFY for our REFER's implicit subscription: NUA matched it to the subscription
                // usage and answered it (200) before reporting it here.
                if (d) {
                    on_notify(*d, status, sip, tags);
                    return;
                }
                if (!line && nh) nua_handle_destroy(nh);
                return;
            case nua_i_info:
                if (d) on_info(*d, sip);
                else if (nh) nua_handle_destroy(nh);
                return;
            case nua_i_options:
                // NUA has already answered 200 with Allow/Accept (we do not list OPTIONS in
                // NUTAG_APPL_METHOD: responding and destroying in one go races and yields a 500).
                if (!d && !line && nh) nua_handle_destroy(nh);
                return;
            case nua_i_state: {
                if (!d) return;
                int callstate = nua_callstate_init;
                tl_gets(tags, NUTAG_CALLSTATE_REF(callstate), TAG_END());
                if (callstate == nua_callstate_ready && d->state != DialogState::kTerminated)
                    d->state = DialogState::kEstablished;
                if (callstate == nua_callstate_terminated && d->state != DialogState::kTerminated) {
                    d->state = DialogState::kTerminated;
                    terminated(*d, status, phrase);
                }
                return;
            }
            case nua_i_message:
            case nua_i_subscribe:
            case nua_i_publish:
            case nua_i_method:
            case nua_i_refer:
            case nua_i_register:
            case nua_i_update:
            case nua_i_prack:
                // NUA has answered (405/501/200 for in-dialog NOTIFY); an unbound handle is ours to free.
                if (!d && !line && nh) nua_handle_destroy(nh);
                return;
            case nua_i_error:
                PLOG_WARN("event=sip_error status={} phrase=\"{}\"", status, phrase ? phrase : "");
                return;
            default:
                return;
        }
    }

    // SIP over TLS: whether the request being handled came over a TLS connection. NUA does not expose the
    // receiving transport: the last hop's Via (SIP/2.0/TLS) says it, and the message must have come over a
    // stream socket (a UDP datagram claiming TLS is not believed). docs/tls.md discusses the limit.
    bool arrived_over_tls(const sip_t* sip) {
        if (!options.tls.enabled() || !sip || !sip->sip_via || !sip->sip_via->v_protocol) return false;
        if (strcasecmp(sip->sip_via->v_protocol, "SIP/2.0/TLS") != 0) return false;
        msg_t* msg = nua_current_request(nua);
        su_addrinfo_t* ai = msg ? msg_addrinfo(msg) : nullptr;
        return ai && ai->ai_protocol == IPPROTO_TCP;
    }

    void on_new_invite(nua_handle_t* nh, const sip_t* sip) {
        if (shutting_down) {
            nua_respond(nh, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
            nua_handle_destroy(nh);
            return;
        }
        auto owned = std::make_unique<Dialog>();
        Dialog& d = *owned;
        d.id = next_id++;
        d.nh = nh;
        d.state = DialogState::kIncoming;
        d.incoming = true;
        nua_handle_bind(nh, reinterpret_cast<nua_hmagic_t*>(&d));
        InviteInfo info;
        info.id = d.id;
        if (sip) {
            if (sip->sip_call_id && sip->sip_call_id->i_id) info.call_id = sip->sip_call_id->i_id;
            if (sip->sip_from) {
                info.from = url_str(sip->sip_from->a_url);
                if (sip->sip_from->a_display) info.from_display = sip->sip_from->a_display;
            }
            if (sip->sip_to) info.to = url_str(sip->sip_to->a_url);
            d.local_uri = info.to;
            if (sip->sip_via)
                info.source_ip = sip->sip_via->v_received ? sip->sip_via->v_received
                                                         : (sip->sip_via->v_host ? sip->sip_via->v_host : "");
            if (sip->sip_request && sip->sip_request->rq_url->url_user) {
                std::string user = sip->sip_request->rq_url->url_user;
                for (auto& l : lines)
                    if (l->cfg.user == user) info.line = l->cfg.name;
            }
            if (sip->sip_content_type && sip->sip_content_type->c_type)
                info.content_type = sip->sip_content_type->c_type;
            info.body = payload_str(sip);
            info.secure = arrived_over_tls(sip);
            if (info.secure) PLOG_INFO("event=sip_invite_secure dialog={} call_id={} transport=tls", d.id, info.call_id);
        }
        d.line = info.line;
        if (Line* l = line_by_name(info.line)) d.contact_user = l->cfg.user;
        else if (sip && sip->sip_request && sip->sip_request->rq_url->url_user)
            d.contact_user = sip->sip_request->rq_url->url_user;
        if (info.secure && sip->sip_request)
            d.tls_contact = tls::answer_contact(d.contact_user, url_str(sip->sip_request->rq_url));
        d.offer_in_answer = info.body.empty();
        d.contact = nat_contact(info.source_ip, d.line, d.contact_user, via_transport(sip));
        dialogs.emplace(d.id, std::move(owned));
        events.on_invite(info);
    }

    void on_invite_response(Dialog& d, int status, const char* phrase, const sip_t* sip) {
        if (status < 100) return;
        if (status == 100) return;
        if (status < 200) {
            events.on_progress(d.id, status, phrase ? phrase : "");
            return;
        }
        if (status < 300) {
            d.state = DialogState::kEstablished;
            events.on_answered(d.id, payload_str(sip));
            return;
        }
        if ((status == 401 || status == 407) && !d.auth_tried) {
            d.auth_tried = true;
            if (Line* l = line_by_name(d.line); l && authenticate(d.nh, sip, l->cfg)) return;
            if (d.line.empty() && !lines.empty() && authenticate(d.nh, sip, lines.front()->cfg)) return;
        }
        d.final_status = status;
        d.final_phrase = phrase ? phrase : "";
    }

    void on_info(Dialog& d, const sip_t* sip) {
        std::string body = payload_str(sip);
        // application/dtmf-relay: "Signal=5\r\nDuration=160"
        auto pos = body.find("Signal=");
        if (pos != std::string::npos) {
            pos += 7;
            while (pos < body.size() && body[pos] == ' ') ++pos;
            if (pos < body.size()) {
                char c = static_cast<char>(std::toupper(static_cast<unsigned char>(body[pos])));
                if (std::isdigit(static_cast<unsigned char>(c)) || c == '*' || c == '#' || (c >= 'A' && c <= 'D'))
                    events.on_info_dtmf(d.id, c);
            }
        }
        nua_respond(d.nh, SIP_200_OK, TAG_END());
    }

    void on_notify(Dialog& d, int status, const sip_t* sip, tagi_t tags[]) {
        if (status >= 300 || !sip) return;  // NUA refused it (e.g. 481: no such subscription)
        if (!sip->sip_event || !sip->sip_event->o_type || std::string(sip->sip_event->o_type) != "refer") return;
        int substate = nua_substate_active;
        tl_gets(tags, NUTAG_SUBSTATE_REF(substate), TAG_END());
        bool terminated = substate == nua_substate_terminated;
        if (sip->sip_subscription_state && sip->sip_subscription_state->ss_substate &&
            std::string(sip->sip_subscription_state->ss_substate) == "terminated")
            terminated = true;
        // message/sipfrag body: "SIP/2.0 200 OK\r\n..."
        int frag = 0;
        std::string body = payload_str(sip);
        if (body.rfind("SIP/2.0 ", 0) == 0 && body.size() >= 11) {
            frag = std::atoi(body.c_str() + 8);
            if (frag < 100 || frag > 699) frag = 0;
        }
        PLOG_DEBUG("event=sip_refer_notify dialog={} sipfrag={} terminated={}", d.id, frag, terminated);
        events.on_refer_notify(d.id, frag, terminated);
    }

    void terminated(Dialog& d, int status, const char* phrase) {
        EndCause cause;
        if (shutting_down) cause = EndCause::kShutdown;
        else if (d.remote_bye) cause = EndCause::kRemoteBye;
        else if (d.cancelled) cause = EndCause::kCancelled;
        else if (d.local_bye) cause = EndCause::kLocalBye;
        else if (d.rejected) cause = EndCause::kRejected;
        else if (!d.incoming && d.final_status >= 300) cause = EndCause::kFailed;
        else if (status == 408) cause = EndCause::kTimeout;
        else cause = d.incoming ? EndCause::kTimeout : EndCause::kFailed;
        int st = d.final_status ? d.final_status : status;
        std::string ph = d.final_status ? d.final_phrase : (phrase ? phrase : "");
        events.on_terminated(d.id, cause, st, ph);
    }

    // ---- NAT (docs/nat.md) ------------------------------------------------------------------------
    // The Contact to send to `peer` (an IP, or a host name = outside local networks) for `line`, or "" to
    // let NUA use its own (local) Contact: no NAT handling, a peer in local_networks, or no external
    // address known yet.
    std::string nat_contact(const std::string& peer, const std::string& line, const std::string& user,
                            const std::string& transport) const {
        if (!options.nat || peer.empty()) return {};
        uint16_t port = options.listen_port ? options.listen_port : 5060;
        auto addr = options.nat->sip_address_for(peer, line, port);
        // SIP over TLS: the Contact names our TLS listener (its port, ;transport=tls: sips: would break peers
        // without sips: support, such as baresip 1.0, and RFC 3261 12.1.1 does not ask for it unless the
        // request was sips:). An rport mapping is of the UDP flow and says nothing of a TLS port, so only the
        // external IP is used: inbound TLS through NAT needs the listener's port forwarded (or 1:1 NAT).
        const bool tls = transport == "tls";
        if (tls) {
            port = options.tls.listen_port ? options.tls.listen_port : 5061;
            if (addr) addr->second = port;
        }
        if (!addr) {
            // A local peer while an external address is in use: NUA would reuse a line's (external)
            // registration Contact for this dialog too, so name the local address explicitly.
            if (!options.nat->is_local(peer) || !options.nat->any_external()) return {};
            std::string local = options.listen_host != "0.0.0.0" && options.listen_host != "::"
                                    ? options.listen_host
                                    : net::route_source(peer);
            if (local.empty()) return {};
            addr = std::make_pair(local, port);
        }
        std::string host = addr->first.find(':') != std::string::npos ? "[" + addr->first + "]" : addr->first;
        return fmt::format("<sip:{}{}{}:{}{}>", user, user.empty() ? "" : "@", host, addr->second,
                           transport.empty() || transport == "udp" ? "" : ";transport=" + transport);
    }

    // A configured external address goes into Via too (Asterisk's external_signaling_address): sofia binds
    // the maddr= address of its URL and advertises the host part ("sip:EXT:port;maddr=LOCAL", as
    // FreeSWITCH's ext-sip-ip does). Discovered addresses cannot: the transport is bound once, at start.
    std::string nat_listen_url(const std::string& url) const {
        if (!options.nat || !options.nat->configured() || options.listen_port == 0) return url;
        std::string ext = options.nat->external_sip_ip();
        std::string bind = options.listen_host.find(':') != std::string::npos ? "[" + options.listen_host + "]"
                                                                               : options.listen_host;
        if (ext.find(':') != std::string::npos) ext = "[" + ext + "]";
        return fmt::format("sip:{}:{};maddr={}", ext, options.listen_port, bind);
    }

    // "udp", "tcp", ... of a request's top Via ("SIP/2.0/TCP"), or of a URI's transport= parameter.
    static std::string via_transport(const sip_t* sip) {
        if (!sip || !sip->sip_via || !sip->sip_via->v_protocol) return "udp";
        std::string p = sip->sip_via->v_protocol;
        p = p.substr(p.rfind('/') + 1);
        for (auto& c : p) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return p;
    }
    static std::string uri_transport(const std::string& uri) {
        auto pos = uri.find("transport=");
        if (pos == std::string::npos) return "udp";
        std::string t = uri.substr(pos + 10, uri.find_first_of(";>?", pos + 10) - pos - 10);
        for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return t;
    }

    // RFC 3581: the registrar's view of our address is the received/rport of our Via in its response. When
    // it is not what our Contact says (and the registrar is outside local_networks, and no external address
    // is configured), remember it for this line, un-REGISTER the stale Contact and REGISTER the right one.
    // true when that re-registration has started. Bounded: only when the address changed.
    bool nat_check_register_response(Line& l, const sip_t* sip) {
        if (!options.nat || options.nat->configured() || !sip || !sip->sip_via) return false;
        std::string peer = l.registrar_ip.empty() ? host_of(l.cfg.registrar) : l.registrar_ip;
        if (options.nat->is_local(peer)) return false;
        const sip_via_t* v = sip->sip_via;
        if (!v->v_received && !(v->v_rport && *v->v_rport)) return false;
        std::string ip = v->v_received ? v->v_received : (v->v_host ? v->v_host : "");
        int port = v->v_rport && *v->v_rport ? std::atoi(v->v_rport) : (v->v_port ? std::atoi(v->v_port) : 5060);
        if (ip.empty() || port <= 0 || port > 65535) return false;
        std::string via_host = v->v_host ? v->v_host : "";
        int via_port = v->v_port ? std::atoi(v->v_port) : 5060;
        if (ip == via_host && port == via_port) return false;  // no NAT between us and the registrar
        std::string seen = fmt::format("{}:{}", ip.find(':') != std::string::npos ? "[" + ip + "]" : ip, port);
        std::string local = fmt::format("{}:{}", via_host, via_port);
        options.nat->set_rport_mapped(l.cfg.name, ip, static_cast<uint16_t>(port));
        if (l.contact.find("@" + seen + ">") != std::string::npos ||
            l.contact.find("@" + seen + ";") != std::string::npos) {
            l.nat_reregisters = 0;
            return false;  // our Contact already says what the registrar sees
        }
        if (++l.nat_reregisters > 3) return false;  // the mapping keeps changing: keep what we have
        std::string advertised = l.contact.empty() ? local : l.contact;
        PLOG_INFO("event=nat_rport_mapped line={} registrar={} local={} external={} advertised=\"{}\"", l.cfg.name,
                  l.cfg.registrar, local, seen, advertised);
        l.nat_reregister = true;
        l.auth_pending = false;
        nua_unregister(l.nh, TAG_END());
        return true;
    }

    void do_refresh_nat() {
        if (!options.nat || shutting_down) return;
        for (auto& l : lines) {
            bool registered;
            {
                std::lock_guard lk(lines_mu);
                registered = line_status[l->index].state == LineState::kRegistered;
            }
            if (!registered || l->nat_reregister) continue;
            std::string now = nat_contact(l->registrar_ip.empty() ? host_of(l->cfg.registrar) : l->registrar_ip,
                                          l->cfg.name, l->cfg.user, l->cfg.transport);
            if (now == l->contact) continue;
            PLOG_INFO("event=nat_contact_changed line={} old=\"{}\" new=\"{}\"", l->cfg.name,
                      l->contact.empty() ? "local" : l->contact, now.empty() ? "local" : now);
            l->nat_reregister = true;
            l->auth_pending = false;
            nua_unregister(l->nh, TAG_END());
        }
    }

    void start_keepalive(Line& l) {
        if (l.cfg.keepalive_s <= 0 || !l.ka_timer) return;
        if (!l.ka_nh) {
            const std::string aor = aor_of(l.cfg);
            l.ka_nh = nua_handle(nua, nullptr, SIPTAG_TO_STR(aor.c_str()), SIPTAG_FROM_STR(aor.c_str()), TAG_END());
            PLOG_INFO("event=line_keepalive line={} method=OPTIONS interval_s={} target={}", l.cfg.name,
                      l.cfg.keepalive_s, l.cfg.registrar);
        }
        su_timer_reset(l.ka_timer);
        su_timer_set_interval(l.ka_timer, &Impl::on_keepalive_timer, reinterpret_cast<su_timer_arg_t*>(&l),
                              l.cfg.keepalive_s * 1000);
    }

    static void on_keepalive_timer(su_root_magic_t* magic, su_timer_t*, su_timer_arg_t* arg) {
        auto* self = reinterpret_cast<Impl*>(magic);
        auto& l = *reinterpret_cast<Line*>(arg);
        if (self->shutting_down || !l.ka_nh) return;
        bool registered;
        {
            std::lock_guard lk(self->lines_mu);
            registered = self->line_status[l.index].state == LineState::kRegistered;
        }
        if (registered) {
            // The same target as the line's REGISTERs: a tls line's keep-alives go over TLS too.
            const std::string target = registrar_target(l.cfg);
            nua_options(l.ka_nh, NUTAG_URL(target.c_str()),
                        TAG_IF(!l.contact.empty(), SIPTAG_CONTACT_STR(l.contact.c_str())), TAG_END());
        }
        su_timer_set_interval(l.ka_timer, &Impl::on_keepalive_timer, arg, l.cfg.keepalive_s * 1000);
    }

    // Any response means the path (and the NAT binding) is alive; 408/503 from sofia itself mean no answer.
    void on_keepalive_response(Line& l, int status, const char* phrase) {
        if (status < 200) return;
        bool dead = status == 408 || status == 503;
        if (dead && !l.ka_failing)
            PLOG_WARN("event=line_keepalive_failed line={} status={} phrase=\"{}\"", l.cfg.name, status,
                      phrase ? phrase : "");
        if (!dead && l.ka_failing) PLOG_INFO("event=line_keepalive_ok line={} status={}", l.cfg.name, status);
        l.ka_failing = dead;
    }

    // ---- commands (run on the SIP thread) ----
    void do_respond(DialogId id, int status, const std::string& phrase, const std::string& sdp) {
        Dialog* d = dialog(id);
        if (!d || d->state == DialogState::kTerminated) return;
        if (status >= 300) d->rejected = true;
        if (status >= 200 && status < 300 && d->state == DialogState::kIncoming) d->state = DialogState::kEstablished;
        // The Contact of our answer names the line that was called (NUA would otherwise reuse the user
        // of whichever line registered last).
        nua_respond(d->nh, status, intern_phrase(phrase),
                    // Contact: NAT's (an external peer) wins; else, over TLS, the sip:...;transport=tls one.
                    TAG_IF(d->contact.empty() && d->tls_contact.empty() && !d->contact_user.empty(),
                           NUTAG_M_USERNAME(d->contact_user.c_str())),
                    TAG_IF(!d->contact.empty(), SIPTAG_CONTACT_STR(d->contact.c_str())),
                    TAG_IF(d->contact.empty() && !d->tls_contact.empty(), SIPTAG_CONTACT_STR(d->tls_contact.c_str())),
                    TAG_IF(!sdp.empty(), SIPTAG_CONTENT_TYPE_STR("application/sdp")),
                    TAG_IF(!sdp.empty(), SIPTAG_PAYLOAD_STR(sdp.c_str())), TAG_END());
    }

    void do_hangup(DialogId id) {
        Dialog* d = dialog(id);
        if (!d || d->state == DialogState::kTerminated) return;
        switch (d->state) {
            case DialogState::kIncoming:
                d->rejected = true;
                nua_respond(d->nh, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
                break;
            case DialogState::kOutgoing:
                d->local_bye = true;
                nua_cancel(d->nh, TAG_END());
                break;
            case DialogState::kEstablished:
                d->local_bye = true;
                nua_bye(d->nh, TAG_END());
                break;
            case DialogState::kTerminated:
                break;
        }
    }

    void do_release(DialogId id) {
        auto it = dialogs.find(id);
        if (it == dialogs.end()) return;
        nua_handle_bind(it->second->nh, nullptr);
        nua_handle_destroy(it->second->nh);
        dialogs.erase(it);
    }

    void do_invite(DialogId id, const std::string& uri, const std::string& sdp, const std::string& line_name) {
        auto owned = std::make_unique<Dialog>();
        Dialog& d = *owned;
        d.id = id;
        d.state = DialogState::kOutgoing;
        d.incoming = false;
        d.line = line_name;
        Line* l = line_name.empty() ? (lines.empty() ? nullptr : lines.front().get()) : line_by_name(line_name);
        std::string from;
        if (l) {
            d.local_uri = aor_of(l->cfg);
            from = l->cfg.display_name.empty() ? d.local_uri
                                               : fmt::format("\"{}\" <{}>", l->cfg.display_name, d.local_uri);
        }
        // SIP over TLS: a tls line's calls go over TLS or not at all.
        std::string target = uri;
        if (l && l->cfg.transport == "tls") {
            if (tls::uri_names_clear_transport(uri)) {
                PLOG_WARN("event=call_refused_clear uri={} line={} reason=\"the line uses TLS; the URI names "
                          "another transport\"", uri, l->cfg.name);
                d.nh = nullptr;
                dialogs.emplace(id, std::move(owned));
                d.state = DialogState::kTerminated;
                d.final_status = 400;
                d.final_phrase = "Line requires TLS";
                events.on_terminated(id, EndCause::kFailed, 400, "Line requires TLS");
                return;
            }
            target = tls::to_header(tls::force_tls(uri));
        }
        d.nh = nua_handle(nua, reinterpret_cast<nua_hmagic_t*>(&d), SIPTAG_TO_STR(target.c_str()),
                          TAG_IF(!from.empty(), SIPTAG_FROM_STR(from.c_str())), TAG_END());
        dialogs.emplace(id, std::move(owned));
        if (!d.nh) {
            d.state = DialogState::kTerminated;
            d.final_status = 400;
            d.final_phrase = "Bad target URI";
            events.on_terminated(id, EndCause::kFailed, 400, "Bad target URI");
            return;
        }
        d.contact = nat_contact(host_of(uri), line_name.empty() && l ? l->cfg.name : line_name,
                                l ? l->cfg.user : std::string(), uri_transport(uri));
        nua_invite(d.nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(sdp.c_str()),
                   TAG_IF(l != nullptr && d.contact.empty(), NUTAG_M_USERNAME(l ? l->cfg.user.c_str() : "")),
                   TAG_IF(!d.contact.empty(), SIPTAG_CONTACT_STR(d.contact.c_str())), TAG_END());
    }

    void do_refer(DialogId id, const std::string& target) {
        Dialog* d = dialog(id);
        if (!d || d->state != DialogState::kEstablished) {
            events.on_refer_result(id, 481, "Call/Transaction Does Not Exist");
            return;
        }
        // NUA would put a bare "<sip:HOST:PORT>" in Referred-By: name the side of the dialog we are.
        std::string by = d->local_uri.empty() ? std::string() : "<" + d->local_uri + ">";
        nua_refer(d->nh, SIPTAG_REFER_TO_STR(target.c_str()),
                  TAG_IF(!by.empty(), SIPTAG_REFERRED_BY_STR(by.c_str())),
                  TAG_IF(!d->contact_user.empty(), NUTAG_M_USERNAME(d->contact_user.c_str())), TAG_END());
    }

    void do_info_dtmf(DialogId id, char digit) {
        Dialog* d = dialog(id);
        if (!d || d->state != DialogState::kEstablished) return;
        std::string body = fmt::format("Signal={}\r\nDuration=160\r\n", digit);
        nua_info(d->nh, SIPTAG_CONTENT_TYPE_STR("application/dtmf-relay"), SIPTAG_PAYLOAD_STR(body.c_str()),
                 TAG_END());
    }

    void begin_shutdown() {
        if (shutting_down) return;
        shutting_down = true;
        for (auto& l : lines) {
            su_timer_reset(l->retry);
            su_timer_reset(l->ka_timer);
            bool registered;
            {
                std::lock_guard lk(lines_mu);
                registered = line_status[l->index].state == LineState::kRegistered;
            }
            if (l->tls_watch) su_timer_reset(l->tls_watch);
            if (l->nh && registered) {
                l->unregistering = true;
                l->auth_pending = false;
                ++unregisters_pending;
                nua_unregister(l->nh, TAG_END());
            } else if (l->nh && l->cfg.transport == "tls") {
                // A REGISTER stuck on a refused TLS connection would hold nua_shutdown until timer F.
                nua_handle_destroy(l->nh);
                l->nh = nullptr;
            }
        }
        shutdown_timer = su_timer_create(su_root_task(root), 0);
        if (unregisters_pending == 0) {
            finish_shutdown();
        } else {
            su_timer_set_interval(shutdown_timer, &Impl::on_unregister_timeout, nullptr,
                                  options.unregister_timeout_ms);
        }
    }

    static void on_unregister_timeout(su_root_magic_t* magic, su_timer_t*, su_timer_arg_t*) {
        auto* self = reinterpret_cast<Impl*>(magic);
        PLOG_WARN("event=unregister_timeout pending={}", self->unregisters_pending);
        self->unregisters_pending = 0;
        self->finish_shutdown();
    }

    static void on_shutdown_timeout(su_root_magic_t* magic, su_timer_t*, su_timer_arg_t*) {
        auto* self = reinterpret_cast<Impl*>(magic);
        PLOG_WARN("event=sip_shutdown_timeout");
        su_root_break(self->root);
    }

    bool shutdown_started = false;
    void finish_shutdown() {
        if (shutdown_started) return;
        shutdown_started = true;
        // NUA sends BYE/CANCEL for what is left and answers nua_r_shutdown; bounded by a 3 s timer (with the
        // runtime's 2 s for calls to end and the 3 s un-REGISTER bound, SIGTERM to exit stays under 10 s).
        su_timer_reset(shutdown_timer);
        su_timer_set_interval(shutdown_timer, &Impl::on_shutdown_timeout, nullptr, 3000);
        nua_shutdown(nua);
    }

    void run_thread(std::promise<std::string>& started) {
        std::string error;
        if (!start_nua(&error)) {
            teardown();
            started.set_value(error.empty() ? "SIP stack failed to start" : error);
            return;
        }
        started.set_value("");
        su_root_run(root);
        teardown();
    }

    void teardown() {
        for (auto& l : lines) {
            if (l->retry) su_timer_destroy(l->retry);
            l->retry = nullptr;
            if (l->ka_timer) su_timer_destroy(l->ka_timer);
            l->ka_timer = nullptr;
            if (l->tls_watch) su_timer_destroy(l->tls_watch);
            l->tls_watch = nullptr;
        }
        if (shutdown_timer) su_timer_destroy(shutdown_timer);
        shutdown_timer = nullptr;
        // Events may still be owed for dialogs the owner never released: tell it they are over.
        for (auto& [id, d] : dialogs) {
            if (d->state != DialogState::kTerminated) {
                d->state = DialogState::kTerminated;
                events.on_terminated(id, EndCause::kShutdown, 0, "shutdown");
            }
        }
        if (nua) nua_destroy(nua);  // destroys remaining handles
        nua = nullptr;
        if (options.tls.enabled()) ::unlink((options.tls.dir + "/agent.pem").c_str());  // our key's copy
        dialogs.clear();
        lines.clear();
        if (root && wake_index > 0) su_root_deregister(root, wake_index);
        if (root) su_root_destroy(root);
        root = nullptr;
    }
};

// -------------------------------------------------------------------------------------------------

SipStack::SipStack(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<SipStack> SipStack::start(const SipStackOptions& options, SipEvents& events, std::string* error) {
    static std::once_flag su_once;
    std::call_once(su_once, [] {
        su_init();  // process-wide; never su_deinit while threads may use it
        redirect_sofia_logs();
    });

    auto impl = std::make_unique<Impl>(options, events);
    impl->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (impl->wake_fd < 0) {
        if (error) *error = "eventfd failed";
        return nullptr;
    }
    impl->line_status.resize(options.lines.size());
    if (options.nat) {  // NAT policy needs registrar IPs; resolved here, once, never on the SIP thread
        for (auto& l : options.lines) {
            std::string host = host_of(l.registrar);
            if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
            std::string ip;
            addrinfo hints{};
            hints.ai_socktype = SOCK_DGRAM;
            addrinfo* res = nullptr;
            if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0 && res) {
                char buf[NI_MAXHOST];
                if (::getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) == 0)
                    ip = buf;
                ::freeaddrinfo(res);
            }
            impl->registrar_ips.push_back(ip);
        }
    }
    for (size_t i = 0; i < options.lines.size(); ++i) impl->line_status[i].name = options.lines[i].name;

    std::promise<std::string> started;
    auto fut = started.get_future();
    Impl* raw = impl.get();
    impl->thread = std::thread([raw, &started] { raw->run_thread(started); });
    std::string err = fut.get();
    if (!err.empty()) {
        impl->thread.join();
        ::close(impl->wake_fd);
        if (error) *error = err;
        return nullptr;
    }
    PLOG_INFO("event=sip_started listen={}:{} lines={}", options.listen_host, options.listen_port,
              options.lines.size());
    return std::unique_ptr<SipStack>(new SipStack(std::move(impl)));
}

SipStack::~SipStack() {
    stop();
    ::close(impl_->wake_fd);
}

void SipStack::stop() {
    if (impl_->stopped.exchange(true)) return;
    Impl* impl = impl_.get();
    impl->post([impl] { impl->begin_shutdown(); });
    if (impl->thread.joinable()) impl->thread.join();
    PLOG_INFO("event=sip_stopped");
}

void SipStack::respond(DialogId id, int status, const std::string& phrase, const std::string& sdp) {
    Impl* impl = impl_.get();
    impl->post([impl, id, status, phrase, sdp] { impl->do_respond(id, status, phrase, sdp); });
}

void SipStack::hangup(DialogId id) {
    Impl* impl = impl_.get();
    impl->post([impl, id] { impl->do_hangup(id); });
}

void SipStack::release(DialogId id) {
    Impl* impl = impl_.get();
    impl->post([impl, id] { impl->do_release(id); });
}

DialogId SipStack::invite(const std::string& uri, const std::string& sdp, const std::string& line) {
    Impl* impl = impl_.get();
    DialogId id = impl->next_id++;
    impl->post([impl, id, uri, sdp, line] { impl->do_invite(id, uri, sdp, line); });
    return id;
}

void SipStack::send_info_dtmf(DialogId id, char digit) {
    Impl* impl = impl_.get();
    impl->post([impl, id, digit] { impl->do_info_dtmf(id, digit); });
}

void SipStack::refer(DialogId id, const std::string& target) {
    Impl* impl = impl_.get();
    impl->post([impl, id, target] { impl->do_refer(id, target); });
}

void SipStack::refresh_nat() {
    Impl* impl = impl_.get();
    impl->post([impl] { impl->do_refresh_nat(); });
}

bool SipStack::invite_secure(const std::string& uri, const std::string& line) const {
    if (tls::uri_is_tls(uri)) return true;
    const auto& lines = impl_->options.lines;
    const LineConfig* l = nullptr;
    if (line.empty()) {
        l = lines.empty() ? nullptr : &lines.front();
    } else {
        for (auto& c : lines)
            if (c.name == line) l = &c;
    }
    return l && l->transport == "tls" && !tls::uri_names_clear_transport(uri);
}

std::vector<LineStatus> SipStack::lines() const {
    std::lock_guard lk(impl_->lines_mu);
    return impl_->line_status;
}

std::string SipStack::contact_host() const {
    return fmt::format("{}:{}", impl_->options.listen_host, impl_->options.listen_port);
}

}  // namespace parley::sip
