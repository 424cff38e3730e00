// Config loading: defaults, overrides, and a table of bad configs with the message a user would see.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/config.h"

namespace parley {
namespace {

std::string write_temp(const std::string& text) {
    char name[] = "/tmp/parley-config-XXXXXX.toml";
    int fd = mkstemps(name, 5);
    EXPECT_GE(fd, 0);
    ::close(fd);
    std::ofstream(name) << text;
    return name;
}

TEST(Config, DefaultsWithoutFile) {
    std::string err;
    auto cfg = load_config("", {}, &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->sip.listen_host, "0.0.0.0");
    EXPECT_EQ(cfg->sip.listen_port, 5060);
    EXPECT_EQ(cfg->media.rtp_port_min, 20000);
    EXPECT_EQ(cfg->media.rtp_port_max, 29999);
    EXPECT_EQ(cfg->call.handler, "echo");
    EXPECT_EQ(cfg->call.max_concurrent, 32);
    EXPECT_TRUE(cfg->lines.empty());
}

TEST(Config, TheReadmeExampleLoads) {
    auto path = write_temp(R"(
[sip]
listen = "0.0.0.0:5060"
[media]
rtp_ports = "20000-29999"
[call]
handler = "echo"
max_concurrent = 32
[[line]]
name = "office"
registrar = "sip:pbx.example.com"
user = "1001"
password = "secret"
)");
    std::string err;
    auto cfg = load_config(path, {}, &err);
    ASSERT_TRUE(cfg) << err;
    ASSERT_EQ(cfg->lines.size(), 1u);
    EXPECT_EQ(cfg->lines[0].name, "office");
    EXPECT_EQ(cfg->lines[0].auth_user, "1001");  // defaults to user
    EXPECT_EQ(cfg->lines[0].transport, "udp");
    std::remove(path.c_str());
}

TEST(Config, DefaultConfigTextIsValid) {
    auto path = write_temp(default_config_text());
    std::string err;
    auto cfg = load_config(path, {}, &err);
    ASSERT_TRUE(cfg) << err;
    std::remove(path.c_str());
}

TEST(Config, OverridesSetAnyKeyAndCreateLines) {
    std::string err;
    auto cfg = load_config("",
                           {"sip.listen=127.0.0.1:5070", "call.max_concurrent=4", "media.symmetric_rtp=false",
                            "media.codecs=G722,PCMA", "line.0.user=1001", "line.0.registrar=sip:127.0.0.1:5080",
                            "line.0.expires=60", "line.1.user=1002", "line.1.registrar=sip:pbx"},
                           &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->sip.listen_host, "127.0.0.1");
    EXPECT_EQ(cfg->sip.listen_port, 5070);
    EXPECT_EQ(cfg->call.max_concurrent, 4);
    EXPECT_FALSE(cfg->media.symmetric_rtp);
    EXPECT_EQ(cfg->media.codecs, (std::vector<std::string>{"G722", "PCMA"}));
    ASSERT_EQ(cfg->lines.size(), 2u);
    EXPECT_EQ(cfg->lines[0].user, "1001");
    EXPECT_EQ(cfg->lines[0].expires, 60);
    EXPECT_EQ(cfg->lines[0].name, "line0");
    EXPECT_EQ(cfg->lines[1].user, "1002");
}

TEST(Config, AgentSectionAndItsOverrides) {
    std::string err;
    auto cfg = load_config("", {"call.handler=conversation", "agent.greeting=Hi there.", "agent.barge_in=false",
                                "agent.dtmf_actions=0=transfer,#=hang_up", "agent.transfer_target=sip:op@pbx",
                                "agent.vad_threshold=0.6"}, &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->call.handler, "conversation");
    EXPECT_EQ(cfg->agent.greeting, "Hi there.");
    EXPECT_FALSE(cfg->agent.barge_in);
    EXPECT_EQ(cfg->agent.dtmf_actions, (std::vector<std::string>{"0=transfer", "#=hang_up"}));
    EXPECT_DOUBLE_EQ(cfg->agent.vad_threshold, 0.6);
    EXPECT_EQ(cfg->agent.end_of_turn_short_ms, 250);
}

// SIP over TLS: where the listener goes, and what a sips: registrar means.
TEST(Config, TlsListenerFollowsTheLines) {
    std::string err;
    auto none = load_config("", {"sip.listen=127.0.0.1:5070", "line.0.user=1", "line.0.registrar=sip:a"}, &err);
    ASSERT_TRUE(none) << err;
    EXPECT_FALSE(none->sip.tls.enabled());  // no TLS line, no certificate: no TLS listener
    EXPECT_EQ(none->sip.tls.ca_file, "/etc/ssl/certs/ca-certificates.crt");

    auto path = write_temp("[sip]\nlisten = \"127.0.0.1:5070\"\n[[line]]\nuser = \"1\"\nregistrar = \"sips:pbx\"\n");
    auto tls = load_config(path, {}, &err);
    ASSERT_TRUE(tls) << err;
    EXPECT_EQ(tls->lines[0].transport, "tls");  // sips: means TLS
    ASSERT_TRUE(tls->sip.tls.enabled());
    EXPECT_EQ(tls->sip.tls.listen_host, "127.0.0.1");
    EXPECT_EQ(tls->sip.tls.listen_port, 5071);  // sip.listen's port + 1

    auto any = load_config(path, {"sip.listen=127.0.0.1:0"}, &err);
    ASSERT_TRUE(any) << err;
    EXPECT_EQ(any->sip.tls.listen_port, 0);  // any free port, like sip.listen

    auto given = load_config(path, {"sip.tls_listen=0.0.0.0:5999", "sip.tls_cert=/c.pem"}, &err);
    ASSERT_TRUE(given) << err;
    EXPECT_EQ(given->sip.tls.listen_host, "0.0.0.0");
    EXPECT_EQ(given->sip.tls.listen_port, 5999);
    std::remove(path.c_str());
}

TEST(Config, OverrideBeatsFile) {
    auto path = write_temp("[call]\nmax_concurrent = 10\n[[line]]\nuser = \"1\"\nregistrar = \"sip:a\"\n");
    std::string err;
    auto cfg = load_config(path, {"call.max_concurrent=3", "line.0.user=2000"}, &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->call.max_concurrent, 3);
    EXPECT_EQ(cfg->lines[0].user, "2000");
    std::remove(path.c_str());
}

// A table of mistakes: each must fail with a message naming the key and what was expected.
struct BadCase {
    const char* name;
    const char* file;                       // TOML text ("" = no file)
    std::vector<std::string> overrides;
    const char* expect;                     // substring of the error
};

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, FailsWithAClearMessage) {
    const auto& c = GetParam();
    std::string path = *c.file ? write_temp(c.file) : "";
    std::string err;
    auto cfg = load_config(path, c.overrides, &err);
    EXPECT_FALSE(cfg) << c.name;
    EXPECT_NE(err.find(c.expect), std::string::npos) << "error was: " << err;
    if (!path.empty()) {
        EXPECT_NE(err.find(path), std::string::npos) << "error must name the file: " << err;
        std::remove(path.c_str());
    }
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadConfig,
    ::testing::Values(
        BadCase{"syntax", "[sip\nlisten=1", {}, "line 1"},
        BadCase{"unknown_section", "[sipp]\nlisten=\"a:1\"\n", {}, "sipp: unknown section"},
        BadCase{"unknown_key", "[call]\nhandlr = \"echo\"\n", {}, "call.handlr: unknown key"},
        BadCase{"wrong_type", "[call]\nmax_concurrent = \"many\"\n", {}, "call.max_concurrent: expected an integer"},
        BadCase{"out_of_range", "[call]\nmax_concurrent = 0\n", {}, "call.max_concurrent: expected an integer from 1"},
        BadCase{"bad_listen", "[sip]\nlisten = \"5060\"\n", {}, "sip.listen: expected \"host:port\""},
        BadCase{"bad_port", "[sip]\nlisten = \"0.0.0.0:70000\"\n", {}, "sip.listen"},
        BadCase{"bad_rtp_range", "[media]\nrtp_ports = \"30000-20000\"\n", {}, "media.rtp_ports"},
        BadCase{"bad_codec", "[media]\ncodecs = [\"OPUS\"]\n", {}, "unknown codec \"OPUS\""},
        BadCase{"bad_handler", "[call]\nhandler = \"llm\"\n", {}, "call.handler: expected"},
        BadCase{"playback_without_file", "[call]\nhandler = \"playback\"\n", {}, "call.playback_file: required"},
        BadCase{"line_without_user", "[[line]]\nregistrar = \"sip:pbx\"\n", {}, "line.0.user: required"},
        BadCase{"line_bad_registrar", "[[line]]\nuser = \"1\"\nregistrar = \"pbx\"\n", {}, "line.0.registrar"},
        BadCase{"line_bad_transport", "[[line]]\nuser=\"1\"\nregistrar=\"sip:a\"\ntransport=\"sctp\"\n", {},
                "line.0.transport: expected \"udp\", \"tcp\" or \"tls\""},
        BadCase{"sips_registrar_over_tcp", "[[line]]\nuser=\"1\"\nregistrar=\"sips:a\"\ntransport=\"tcp\"\n", {},
                "line.0.transport: a sips: registrar needs \"tls\""},
        BadCase{"tls_line_with_tls_off", "[sip]\ntls_listen=\"off\"\n[[line]]\nuser=\"1\"\nregistrar=\"sip:a\"\n"
                "transport=\"tls\"\n", {}, "line.0.transport: \"tls\" needs SIP over TLS"},
        BadCase{"bad_tls_listen", "", {"sip.tls_listen=5061"}, "sip.tls_listen: expected \"host:port\""},
        BadCase{"tls_key_without_cert", "", {"sip.tls_listen=127.0.0.1:5061", "sip.tls_key=/k.pem"},
                "sip.tls_key: set without sip.tls_cert"},
        BadCase{"tls_without_ca", "", {"sip.tls_listen=127.0.0.1:5061", "sip.tls_ca_file="},
                "sip.tls_ca_file: required"},
        BadCase{"duplicate_line_names",
                "[[line]]\nname=\"a\"\nuser=\"1\"\nregistrar=\"sip:a\"\n[[line]]\nname=\"a\"\nuser=\"2\"\n"
                "registrar=\"sip:a\"\n",
                {}, "used by two lines"},
        BadCase{"set_without_equals", "", {"call.handler"}, "expected section.key=value"},
        BadCase{"set_bad_int", "", {"call.max_concurrent=lots"}, "call.max_concurrent: expected an integer"},
        BadCase{"set_skips_line_index", "", {"line.1.user=7"}, "the next one is line.0"},
        BadCase{"set_unknown_key", "", {"media.colour=blue"}, "media.colour: unknown key"},
        BadCase{"bad_log_level", "[log]\nlevel = \"loud\"\n", {}, "log.level"},
        BadCase{"agent_unknown_tool", "[agent]\ntools = [\"launch\"]\n", {}, "agent.tools: unknown tool \"launch\""},
        BadCase{"agent_long_before_short", "", {"agent.end_of_turn_short_ms=500", "agent.end_of_turn_long_ms=300"},
                "agent.end_of_turn_long_ms: expected at least end_of_turn_short_ms"},
        BadCase{"agent_bad_dtmf_action", "", {"agent.dtmf_actions=5=dance"}, "agent.dtmf_actions: expected"},
        BadCase{"agent_transfer_without_target", "", {"agent.dtmf_actions=0=transfer"}, "needs agent.transfer_target"},
        BadCase{"agent_bad_target", "", {"agent.transfer_target=operator"}, "agent.transfer_target: expected a sip: URI"},
        BadCase{"agent_threshold_range", "[agent]\nvad_threshold = 1.5\n", {}, "agent.vad_threshold"}),
    [](const auto& p) { return std::string(p.param.name); });

// ---- SRTP (docs/srtp.md) ----
TEST(Config, SrtpModesGlobalAndPerLine) {
    std::string err;
    auto defaults = load_config("", {}, &err);
    ASSERT_TRUE(defaults) << err;
    EXPECT_EQ(defaults->media.srtp, "off");
    EXPECT_FALSE(defaults->media.srtp_insecure_signalling);

    auto cfg = load_config("", {"media.srtp=optional", "media.srtp_insecure_signalling=true", "line.0.user=1001",
                                "line.0.registrar=sip:pbx", "line.0.srtp=required"},
                           &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->media.srtp, "optional");
    EXPECT_TRUE(cfg->media.srtp_insecure_signalling);
    EXPECT_EQ(cfg->lines.at(0).srtp, "required");

    EXPECT_FALSE(load_config("", {"media.srtp=mandatory"}, &err));
    EXPECT_NE(err.find("media.srtp: expected \"off\", \"optional\" or \"required\", got \"mandatory\""),
              std::string::npos) << err;
    EXPECT_FALSE(load_config("", {"line.0.user=1001", "line.0.registrar=sip:pbx", "line.0.srtp=yes"}, &err));
    EXPECT_NE(err.find("line.0.srtp: expected"), std::string::npos) << err;
}

}  // namespace
}  // namespace parley
