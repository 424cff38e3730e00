// sip_tls.cpp — SIP over TLS helpers of sip_stack.cpp: sofia-sip's certificate directory, the reasons
// sofia-sip logs for refused connections, and URI rules (see sip_tls.h and docs/tls.md).
#include "sip/sip_tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fmt/format.h>
#include <mutex>

#include "common/log.h"

namespace parley::sip::tls {
namespace {

// Reasons are queued in the order connections failed (at most 16, none older than 40 s); a failed TLS
// registration takes one that may concern its host (take_diagnostic).
struct TlsDiagnostics {
    struct Entry {
        std::string text;
        std::chrono::steady_clock::time_point at;
        std::string host;  // the peer's host when sofia names it (subject mismatch), else ""
    };
    std::deque<Entry> queue;
    int depth = -1;       // of the certificate being reported by tls_verify_cb
    std::string subject;
};
std::mutex tls_diag_mu;
TlsDiagnostics tls_diag;  // guarded by tls_diag_mu

void push_diagnostic(std::string text, std::chrono::steady_clock::time_point now, std::string host = "") {
    while (!tls_diag.queue.empty() &&
           (tls_diag.queue.size() >= 16 || now - tls_diag.queue.front().at > std::chrono::seconds(40)))
        tls_diag.queue.pop_front();
    tls_diag.queue.push_back({std::move(text), now, std::move(host)});
}

bool iequals_prefix(const std::string& s, const char* prefix) {
    for (size_t i = 0; prefix[i]; ++i)
        if (i >= s.size() || std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool read_file(const std::string& path, std::string* out, std::string* error) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        *error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
        return false;
    }
    out->clear();
    char buf[8192];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && out->size() < (16u << 20)) out->append(buf, n);
    std::fclose(f);
    return true;
}

// Writes `data` to `path` with mode 0600 (created or truncated).
bool write_private_file(const std::string& path, const std::string& data, std::string* error) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::fchmod(fd, 0600) != 0) {
        *error = fmt::format("cannot write {}: {}", path, std::strerror(errno));
        if (fd >= 0) ::close(fd);
        return false;
    }
    size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd, data.data() + off, data.size() - off);
        if (w <= 0) {
            *error = fmt::format("cannot write {}: {}", path, std::strerror(errno));
            ::close(fd);
            return false;
        }
        off += static_cast<size_t>(w);
    }
    ::close(fd);
    return true;
}

// A P-256 key and a self-signed certificate (CN=parley-self-signed, one year), as PEM: cert then key.
// Used when a TLS listener is needed and sip.tls_cert is not set. Returns "" on failure.
std::string make_self_signed_pem(std::string* fingerprint) {
    std::string out;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    BIO* bio = BIO_new(BIO_s_mem());
    if (key && x && bio) {
        ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(std::time(nullptr)));
        X509_set_version(x, 2);
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
        X509_set_pubkey(x, key);
        X509_NAME* name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("parley-self-signed"), -1, -1, 0);
        X509_set_issuer_name(x, name);
        if (X509_sign(x, key, EVP_sha256()) > 0 && PEM_write_bio_X509(bio, x) &&
            PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr)) {
            char* data = nullptr;
            long n = BIO_get_mem_data(bio, &data);
            if (n > 0) out.assign(data, static_cast<size_t>(n));
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int len = 0;
            if (X509_digest(x, EVP_sha256(), md, &len)) {
                for (unsigned i = 0; i < len; ++i) *fingerprint += fmt::format("{}{:02X}", i ? ":" : "", md[i]);
            }
        }
    }
    if (bio) BIO_free(bio);
    if (x) X509_free(x);
    if (key) EVP_PKEY_free(key);
    return out;
}

}  // namespace

void note_diagnostic(const std::string& msg) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(tls_diag_mu);
    // tport_tls.c tls_verify_cb: "-Error with certificate at depth: 0", "  issuer   = /CN=...",
    // "  subject  = /CN=...", "  err 20:unable to get local issuer certificate"
    if (auto p = msg.find("Error with certificate at depth:"); p != std::string::npos) {
        tls_diag.depth = std::atoi(msg.c_str() + p + 32);
        tls_diag.subject.clear();
        return;
    }
    if (auto p = msg.find("subject  = "); p != std::string::npos && tls_diag.depth >= 0) {
        tls_diag.subject = msg.substr(p + 11);
        return;
    }
    if (msg.rfind("  err ", 0) == 0 && tls_diag.depth >= 0) {
        std::string why = msg.substr(6);
        if (auto colon = why.find(':'); colon != std::string::npos) why = why.substr(colon + 1);
        push_diagnostic(fmt::format("certificate verify failed: {} (depth {}{}{})", why, tls_diag.depth,
                                        tls_diag.subject.empty() ? "" : ", subject ", tls_diag.subject),
                            now);
        tls_diag.depth = -1;
        return;
    }
    // tls_post_connection_check: "tls_post_connection_check(0x...): Peer Subject Mismatch (pbx.example.com)"
    if (auto p = msg.find("Peer Subject Mismatch ("); p != std::string::npos) {
        std::string host = msg.substr(p + 23);
        if (!host.empty() && host.back() == ')') host.pop_back();
        push_diagnostic(fmt::format("certificate does not name the host {} (sofia-sip matches the CN or a "
                                        "DNS subjectAltName exactly)", host),
                            now, host);
        return;
    }
    // tls_read after the handshake: "tls_read: SSL_read: 0a000418:SSL routines:(null):tlsv1 alert unknown ca":
    // the peer sent an alert: with TLS 1.3 that is how a server refuses our client certificate (or its absence).
    if (auto p = msg.find("SSL_read: "); p != std::string::npos && msg.find("alert") != std::string::npos) {
        std::string why = msg.substr(msg.rfind(':') + 1);
        std::string hint;
        if (why.find("unknown ca") != std::string::npos || why.find("bad certificate") != std::string::npos ||
            why.find("certificate required") != std::string::npos)
            hint = " (the peer refused our client certificate or its absence: sip.tls_cert)";
        push_diagnostic(fmt::format("the peer ended the connection: {}{}", why, hint), now);
        return;
    }
    // tls_connect: "tls_connect(0x...): TLS setup failed (error:00000001:...)": the handshake itself failed
    // (alert from the peer, e.g. it wanted a client certificate it could verify, or no common protocol).
    if (msg.find("TLS setup failed") != std::string::npos)
        push_diagnostic("handshake failed (the peer ended it: no common protocol or cipher, or it refused "
                            "our client certificate or its absence)",
                            now);
}

std::string take_diagnostic(const std::string& host, std::chrono::steady_clock::time_point since,
                                bool newest) {
    std::lock_guard lk(tls_diag_mu);
    auto& q = tls_diag.queue;
    auto fits = [&](const TlsDiagnostics::Entry& e) { return e.at >= since && (e.host.empty() || e.host == host); };
    auto it = q.end();
    if (newest) {
        for (auto r = q.rbegin(); r != q.rend(); ++r)
            if (fits(*r)) {
                it = std::prev(r.base());
                break;
            }
    } else {
        it = std::find_if(q.begin(), q.end(), fits);
    }
    if (it == q.end()) return "";
    std::string text = std::move(it->text);
    q.erase(it);
    return text;
}

bool uri_is_tls(const std::string& uri) {
    return iequals_prefix(uri, "sips:") || lower(uri).find(";transport=tls") != std::string::npos;
}

bool uri_names_clear_transport(const std::string& uri) {
    std::string l = lower(uri);
    auto p = l.find(";transport=");
    return p != std::string::npos && l.compare(p + 11, 3, "tls") != 0;
}

std::string force_tls(const std::string& uri) {
    if (uri_is_tls(uri)) return uri;
    auto lt = uri.find('<');
    auto gt = lt == std::string::npos ? std::string::npos : uri.find('>', lt);
    size_t end = gt != std::string::npos ? gt : uri.size();
    auto q = uri.find('?', lt == std::string::npos ? 0 : lt);
    size_t at = q != std::string::npos && q < end ? q : end;
    return uri.substr(0, at) + ";transport=tls" + uri.substr(at);
}

std::string to_header(const std::string& uri) {
    return uri.find('<') == std::string::npos ? "<" + uri + ">" : uri;
}

std::string prepare_dir(const SipTlsConfig& tls, std::string* error) {
    const std::string& dir = tls.dir;
    std::string err;
    // Create each missing component; only the last one (ours) is forced to 0700.
    for (size_t p = 1; p <= dir.size(); ++p) {
        if (p != dir.size() && dir[p] != '/') continue;
        std::string part = dir.substr(0, p);
        if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
            *error = fmt::format("sip.tls_dir: cannot create {}: {}", part, std::strerror(errno));
            return "";
        }
    }
    struct stat st {};
    if (::chmod(dir.c_str(), 0700) != 0 || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        *error = fmt::format("sip.tls_dir: {} is not a directory we can make private (0700)", dir);
        return "";
    }
    std::string agent;
    if (!tls.cert.empty()) {
        std::string cert, key;
        if (!read_file(tls.cert, &cert, &err)) return *error = "sip.tls_cert: " + err, "";
        if (cert.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
            return *error = fmt::format("sip.tls_cert: {} holds no PEM certificate", tls.cert), "";
        if (!tls.key.empty() && !read_file(tls.key, &key, &err)) return *error = "sip.tls_key: " + err, "";
        const std::string& k = tls.key.empty() ? cert : key;
        if (k.find("PRIVATE KEY-----") == std::string::npos)
            return *error = fmt::format("{}: {} holds no PEM private key", tls.key.empty() ? "sip.tls_cert"
                                                                                          : "sip.tls_key",
                                        tls.key.empty() ? tls.cert : tls.key), "";
        agent = cert;
        if (!agent.empty() && agent.back() != '\n') agent += '\n';
        if (!tls.key.empty()) agent += key;
        PLOG_INFO("event=sip_tls_cert cert={} key={}", tls.cert, tls.key.empty() ? tls.cert : tls.key);
    } else {
        std::string fp;
        agent = make_self_signed_pem(&fp);
        if (agent.empty()) return *error = "TLS: cannot generate a self-signed certificate", "";
        PLOG_WARN("event=sip_tls_self_signed sha256={} note=\"sip.tls_cert is not set: the TLS listener uses a "
                  "certificate made at start; peers that verify it will refuse it\"", fp);
    }
    std::string ca;
    if (!read_file(tls.ca_file, &ca, &err)) return *error = "sip.tls_ca_file: " + err, "";
    if (ca.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
        return *error = fmt::format("sip.tls_ca_file: {} holds no PEM certificate", tls.ca_file), "";
    if (!write_private_file(dir + "/agent.pem", agent, &err) || !write_private_file(dir + "/cafile.pem", ca, &err))
        return *error = "sip.tls_dir: " + err, "";
    return dir;
}

}  // namespace parley::sip::tls
