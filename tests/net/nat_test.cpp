// NAT policy: which address a peer gets (tables of peers), and what discoveries change.
#include <gtest/gtest.h>

#include "net/nat.h"

namespace parley::net {
namespace {

std::vector<std::string> rfc1918() {
    return {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7"};
}

TEST(Cidr, ParsesAndMatches) {
    struct Row {
        const char* cidr;
        const char* ip;
        bool in;
    };
    for (auto r : std::vector<Row>{{"10.0.0.0/8", "10.255.1.2", true},
                                   {"10.0.0.0/8", "11.0.0.1", false},
                                   {"172.16.0.0/12", "172.31.255.255", true},
                                   {"172.16.0.0/12", "172.32.0.1", false},
                                   {"192.168.1.0/25", "192.168.1.127", true},
                                   {"192.168.1.0/25", "192.168.1.128", false},
                                   {"203.0.113.7", "203.0.113.7", true},
                                   {"203.0.113.7", "203.0.113.8", false},
                                   {"0.0.0.0/0", "198.51.100.1", true},
                                   {"fc00::/7", "fd12::1", true},
                                   {"fc00::/7", "10.0.0.1", false},
                                   {"10.0.0.0/8", "pbx.example.com", false}}) {
        auto c = Cidr::parse(r.cidr);
        ASSERT_TRUE(c) << r.cidr;
        EXPECT_EQ(c->contains(r.ip), r.in) << r.cidr << " " << r.ip;
    }
    for (auto bad : {"", "10.0.0.0/33", "10.0.0/8", "fc00::/129", "10.0.0.0/", "10.0.0.0/x", "host/8"})
        EXPECT_FALSE(Cidr::parse(bad)) << bad;
}

TEST(NatAddresses, NothingKnownMeansLocalEverywhere) {
    NatAddresses nat({"", "", rfc1918()});
    EXPECT_FALSE(nat.sip_address_for("203.0.113.10", "l", 5060));
    EXPECT_EQ(nat.media_address_for("203.0.113.10"), "");
}

TEST(NatAddresses, ConfiguredAddressForOutsidersOnly) {
    NatAddresses nat({"203.0.113.2", "", rfc1918()});
    auto a = nat.sip_address_for("203.0.113.10", "l", 5070);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->first, "203.0.113.2");
    EXPECT_EQ(a->second, 5070);
    EXPECT_EQ(nat.media_address_for("203.0.113.10"), "203.0.113.2");
    EXPECT_FALSE(nat.sip_address_for("10.0.3.1", "l", 5070));  // a local PBX keeps the private address
    EXPECT_EQ(nat.media_address_for("192.168.1.20"), "");
    EXPECT_EQ(nat.media_address_for("pbx.example.com"), "203.0.113.2");  // names count as outside
    // configured beats discovered
    nat.set_rport_mapped("l", "198.51.100.1", 1234);
    EXPECT_EQ(nat.sip_address_for("203.0.113.10", "l", 5070)->first, "203.0.113.2");
}

TEST(NatAddresses, SeparateMediaAddress) {
    NatAddresses nat({"sip.example.com", "198.51.100.3", rfc1918()});
    EXPECT_EQ(nat.media_address_for("203.0.113.10"), "198.51.100.3");
    EXPECT_EQ(nat.sip_address_for("203.0.113.10", "", 5060)->first, "sip.example.com");
}

TEST(NatAddresses, DiscoveriesRportPerLineThenStun) {
    NatAddresses nat({"", "", rfc1918()});
    EXPECT_TRUE(nat.set_stun_mapped("203.0.113.1"));
    EXPECT_FALSE(nat.set_stun_mapped("203.0.113.1"));  // unchanged: nothing to do
    auto a = nat.sip_address_for("203.0.113.10", "office", 5060);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->first, "203.0.113.1");
    EXPECT_EQ(a->second, 5060);  // STUN knows the IP only: our SIP port is assumed kept
    EXPECT_TRUE(nat.set_rport_mapped("office", "203.0.113.1", 1029));
    EXPECT_FALSE(nat.set_rport_mapped("office", "203.0.113.1", 1029));
    a = nat.sip_address_for("203.0.113.10", "office", 5060);
    EXPECT_EQ(a->second, 1029);  // what the registrar saw wins for its line
    a = nat.sip_address_for("203.0.113.10", "other", 5060);
    EXPECT_EQ(a->first, "203.0.113.1");
    EXPECT_EQ(a->second, 5060);
    EXPECT_EQ(nat.media_address_for("203.0.113.99"), "203.0.113.1");
    EXPECT_EQ(nat.media_address_for("10.1.1.1"), "");
}

TEST(NatAddresses, ANewStunAddressForgetsStaleRportMappings) {
    NatAddresses nat({"", "", rfc1918()});
    nat.set_stun_mapped("203.0.113.1");
    nat.set_rport_mapped("office", "203.0.113.1", 1029);
    EXPECT_TRUE(nat.set_stun_mapped("203.0.113.3"));  // the router got a new public address
    auto a = nat.sip_address_for("203.0.113.10", "office", 5060);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->first, "203.0.113.3");
    EXPECT_EQ(a->second, 5060);
}

TEST(NatAddresses, EmptyLocalNetworksMeansEveryPeerIsOutside) {
    NatAddresses nat({"203.0.113.2", "", {}});
    EXPECT_EQ(nat.media_address_for("10.0.0.1"), "203.0.113.2");
}

}  // namespace
}  // namespace parley::net
