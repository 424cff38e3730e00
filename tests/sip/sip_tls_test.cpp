// SIP over TLS helpers (src/sip/sip_tls.h): sofia-sip's log lines -> the reason a line shows, URI rules,
// and the certificate directory. Tables: adding a case is adding a row.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sip/sip_tls.h"

namespace parley::sip::tls {
namespace {

using Clock = std::chrono::steady_clock;

struct DiagCase {
    const char* name;
    std::vector<const char*> log;  // sofia-sip log lines, in order (as tport_tls.c prints them)
    const char* host;              // the line's registrar host
    const char* expect;            // the reason it gets ("" = none)
};

class Diagnostics : public ::testing::TestWithParam<DiagCase> {};

TEST_P(Diagnostics, ReasonFromSofiaLog) {
    const auto& c = GetParam();
    auto since = Clock::now();
    for (auto* line : c.log) note_diagnostic(line);
    EXPECT_EQ(take_diagnostic(c.host, since, false), c.expect);
    EXPECT_EQ(take_diagnostic(c.host, since, false), "") << "a reason is handed out once";
}

INSTANTIATE_TEST_SUITE_P(
    Table, Diagnostics,
    ::testing::Values(
        DiagCase{"unknown_ca",
                 {"-Error with certificate at depth: 0", "  issuer   = /CN=Unknown Test CA",
                  "  subject  = /CN=pbx.example.com", "  err 20:unable to get local issuer certificate"},
                 "pbx.example.com",
                 "certificate verify failed: unable to get local issuer certificate (depth 0, subject "
                 "/CN=pbx.example.com)"},
        DiagCase{"expired",
                 {"-Error with certificate at depth: 0", "  subject  = /CN=a", "  err 10:certificate has expired"},
                 "a", "certificate verify failed: certificate has expired (depth 0, subject /CN=a)"},
        DiagCase{"name_mismatch", {"tls_post_connection_check(0x7f0a78081810): Peer Subject Mismatch (pbx.example.com)"},
                 "pbx.example.com",
                 "certificate does not name the host pbx.example.com (sofia-sip matches the CN or a DNS "
                 "subjectAltName exactly)"},
        DiagCase{"mismatch_of_another_host", {"tls_post_connection_check(0x1): Peer Subject Mismatch (other.example)"},
                 "pbx.example.com", ""},
        DiagCase{"client_cert_refused", {"tls_read: SSL_read: 00000001:(null):(null):(null)",
                                         "tls_read: SSL_read: 0a000418:SSL routines:(null):tlsv1 alert unknown ca"},
                 "a",
                 "the peer ended the connection: tlsv1 alert unknown ca (the peer refused our client certificate "
                 "or its absence: sip.tls_cert)"},
        DiagCase{"handshake", {"tls_connect(0x1): TLS setup failed (error:00000001:lib(0)::reason(1))"}, "a",
                 "handshake failed (the peer ended it: no common protocol or cipher, or it refused our client "
                 "certificate or its absence)"},
        DiagCase{"err_without_header_is_not_tls", {"  err 5:something else"}, "a", ""},
        DiagCase{"unrelated", {"tport_udp_error: Connection refused"}, "a", ""}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(Diagnostics, OldestForTheWatchNewestForAnImmediateFailure) {
    auto since = Clock::now();
    note_diagnostic("-Error with certificate at depth: 0");
    note_diagnostic("  err 20:unable to get local issuer certificate");
    note_diagnostic("tls_read: SSL_read: 0a000418:SSL routines:(null):tlsv1 alert unknown ca");
    EXPECT_NE(take_diagnostic("h", since, true).find("alert unknown ca"), std::string::npos);
    EXPECT_NE(take_diagnostic("h", since, false).find("unable to get local issuer"), std::string::npos);
    note_diagnostic("-Error with certificate at depth: 0");
    note_diagnostic("  err 20:unable to get local issuer certificate");
    EXPECT_EQ(take_diagnostic("h", Clock::now() + std::chrono::seconds(1), false), "")
        << "reasons from before the attempt are not its";
    EXPECT_NE(take_diagnostic("h", since, false), "");  // (drain for the next test)
}

struct UriCase {
    const char* uri;
    bool is_tls;
    bool names_clear;
    const char* forced;     // force_tls(uri)
    const char* to;         // to_header(force_tls(uri))
};

class Uris : public ::testing::TestWithParam<UriCase> {};

TEST_P(Uris, Rules) {
    const auto& c = GetParam();
    EXPECT_EQ(uri_is_tls(c.uri), c.is_tls) << c.uri;
    EXPECT_EQ(uri_names_clear_transport(c.uri), c.names_clear) << c.uri;
    EXPECT_EQ(force_tls(c.uri), c.forced) << c.uri;
    EXPECT_EQ(to_header(force_tls(c.uri)), c.to) << c.uri;
}

INSTANTIATE_TEST_SUITE_P(
    Table, Uris,
    ::testing::Values(
        UriCase{"sip:1002@pbx.example.com", false, false, "sip:1002@pbx.example.com;transport=tls",
                "<sip:1002@pbx.example.com;transport=tls>"},
        UriCase{"sips:1002@pbx.example.com", true, false, "sips:1002@pbx.example.com", "<sips:1002@pbx.example.com>"},
        UriCase{"SIPS:1002@pbx", true, false, "SIPS:1002@pbx", "<SIPS:1002@pbx>"},
        UriCase{"sip:1002@pbx;transport=TLS", true, false, "sip:1002@pbx;transport=TLS", "<sip:1002@pbx;transport=TLS>"},
        UriCase{"sip:1002@pbx;transport=udp", false, true, "sip:1002@pbx;transport=udp;transport=tls",
                "<sip:1002@pbx;transport=udp;transport=tls>"},  // (invite() refuses it before this)
        UriCase{"sip:1002@pbx:5061?Subject=hi", false, false, "sip:1002@pbx:5061;transport=tls?Subject=hi",
                "<sip:1002@pbx:5061;transport=tls?Subject=hi>"},
        UriCase{"\"Desk\" <sip:1002@pbx>", false, false, "\"Desk\" <sip:1002@pbx;transport=tls>",
                "\"Desk\" <sip:1002@pbx;transport=tls>"}));

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

TEST(CertificateDir, SelfSignedWhenNoCertificateIsConfigured) {
    char tmpl[] = "/tmp/parley-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string root = tmpl;
    std::ofstream(root + "/ca.pem") << slurp("/etc/ssl/certs/ca-certificates.crt").substr(0, 1 << 20);
    SipTlsConfig cfg;
    cfg.dir = root + "/var/tls";
    cfg.ca_file = root + "/ca.pem";
    std::string err;
    std::string dir = prepare_dir(cfg, &err);
    ASSERT_EQ(dir, cfg.dir) << err;
    struct stat st {};
    ASSERT_EQ(stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_EQ(stat((dir + "/agent.pem").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::string agent = slurp(dir + "/agent.pem");
    EXPECT_NE(agent.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
    EXPECT_NE(agent.find("PRIVATE KEY-----"), std::string::npos);
    EXPECT_EQ(slurp(dir + "/cafile.pem"), slurp(cfg.ca_file));

    // The configured certificate and key are used (agent.pem = cert then key).
    std::ofstream(root + "/c.pem") << agent.substr(0, agent.find("-----BEGIN PRIVATE KEY-----"));
    std::ofstream(root + "/k.pem") << agent.substr(agent.find("-----BEGIN PRIVATE KEY-----"));
    cfg.cert = root + "/c.pem";
    cfg.key = root + "/k.pem";
    ASSERT_EQ(prepare_dir(cfg, &err), cfg.dir) << err;
    EXPECT_EQ(slurp(dir + "/agent.pem"), slurp(cfg.cert) + slurp(cfg.key));
    std::filesystem::remove_all(root);
}

struct DirCase {
    const char* name;
    const char* cert;     // file content ("" = no file configured, nullptr content = missing file)
    const char* key;
    const char* ca;
    const char* expect;   // substring of the error
};

class BadDir : public ::testing::TestWithParam<DirCase> {};

TEST_P(BadDir, NamesTheKey) {
    const auto& c = GetParam();
    char tmpl[] = "/tmp/parley-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string root = tmpl;
    SipTlsConfig cfg;
    cfg.dir = root + "/tls";
    auto put = [&](const char* content, const char* name) -> std::string {
        if (!content) return root + "/missing-" + name;
        if (!*content) return "";
        std::ofstream(root + "/" + name) << content;
        return root + "/" + name;
    };
    cfg.cert = put(c.cert, "cert.pem");
    cfg.key = put(c.key, "key.pem");
    cfg.ca_file = put(c.ca, "ca.pem");
    std::string err;
    EXPECT_EQ(prepare_dir(cfg, &err), "");
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    std::filesystem::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadDir,
    ::testing::Values(
        DirCase{"missing_cert", nullptr, "", "-----BEGIN CERTIFICATE-----\n", "sip.tls_cert: cannot read"},
        DirCase{"cert_not_pem", "hello", "", "-----BEGIN CERTIFICATE-----\n", "sip.tls_cert: "},
        DirCase{"no_key_anywhere", "-----BEGIN CERTIFICATE-----\n", "", "-----BEGIN CERTIFICATE-----\n",
                "holds no PEM private key"},
        DirCase{"missing_ca", "", "", nullptr, "sip.tls_ca_file: cannot read"},
        DirCase{"ca_not_pem", "", "", "nothing", "sip.tls_ca_file: "}),
    [](const auto& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace parley::sip::tls
