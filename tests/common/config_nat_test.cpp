// The NAT keys (docs/nat.md): defaults, valid values and a table of mistakes with their messages.
#include <gtest/gtest.h>

#include "common/config.h"

namespace parley {
namespace {

TEST(ConfigNat, Defaults) {
    std::string err;
    auto cfg = load_config("", {}, &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->sip.external_address, "");
    EXPECT_EQ(cfg->sip.stun_server, "");
    EXPECT_EQ(cfg->sip.stun_interval_s, 60);
    EXPECT_EQ(cfg->media.external_address, "");
    ASSERT_FALSE(cfg->sip.local_networks.empty());
    EXPECT_EQ(cfg->sip.local_networks[0], "10.0.0.0/8");
}

TEST(ConfigNat, ValidValues) {
    std::string err;
    auto cfg = load_config(
        "",
        {"sip.external_address=sip.example.com", "media.external_address=203.0.113.2",
         "sip.local_networks=10.1.0.0/16,fd00::/8", "sip.stun_server=stun.example.com:3478",
         "sip.stun_interval_s=0", "line.0.registrar=sip:pbx", "line.0.user=1", "line.0.keepalive_s=0"},
        &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->sip.external_address, "sip.example.com");
    EXPECT_EQ(cfg->media.external_address, "203.0.113.2");
    EXPECT_EQ(cfg->sip.local_networks, (std::vector<std::string>{"10.1.0.0/16", "fd00::/8"}));
    EXPECT_EQ(cfg->lines[0].keepalive_s, 0);
    auto def = load_config("", {"line.0.registrar=sip:pbx", "line.0.user=1"}, &err);
    ASSERT_TRUE(def) << err;
    EXPECT_EQ(def->lines[0].keepalive_s, 15);  // well under the common 30 s UDP NAT timeout
}

TEST(ConfigNat, Mistakes) {
    struct Row {
        std::vector<std::string> sets;
        const char* expect;
    };
    for (auto& r : std::vector<Row>{
             {{"sip.external_address=not an address"},
              "sip.external_address: expected an IP address or host"},
             {{"sip.local_networks=10.0.0.0/33"}, "sip.local_networks: expected CIDRs"},
             {{"sip.local_networks=office"}, "sip.local_networks: expected CIDRs"},
             {{"sip.stun_server=stun:x:y"}, "sip.stun_server: expected"},
             {{"sip.stun_server=host:0"}, "sip.stun_server: expected"},
             {{"sip.stun_interval_s=-1"}, "sip.stun_interval_s: expected an integer from 0"},
             {{"media.external_address=media.example.com"}, "media.external_address: expected an IP address"},
             {{"line.0.registrar=sip:pbx", "line.0.user=1", "line.0.keepalive_s=-5"},
              "line.0.keepalive_s"}}) {
        std::string err;
        EXPECT_FALSE(load_config("", r.sets, &err)) << r.sets[0];
        EXPECT_NE(err.find(r.expect), std::string::npos) << "error was: " << err;
    }
}

}  // namespace
}  // namespace parley
