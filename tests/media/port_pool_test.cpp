// port_pool_test.cpp — RTP/RTCP port pairs from a range, checked against real sockets on 127.0.0.1.
//
// Port ranges (this binary owns 32000-32199, below the kernel's ephemeral range (32768+) so no
// socket another test opens can take them; port pool tests use 32000-32079, ten ports per test so tests
// can run in parallel under ctest without stepping on each other).
#include "media/port_pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace parley::media {
namespace {

// A UDP socket bound to 127.0.0.1:port, or -1 if the port is taken.
int bind_loopback(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

bool can_bind(uint16_t port) {
    int fd = bind_loopback(port);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

uint16_t bound_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return ntohs(a.sin_port);
}

TEST(PortPool, AcquiresEvenRtpAndOddRtcpBothBound) {
    PortPool pool("127.0.0.1", 32000, 32009);
    EXPECT_EQ(pool.capacity(), 5u);
    EXPECT_EQ(pool.in_use(), 0u);
    std::string err;
    auto s = pool.acquire(&err);
    ASSERT_TRUE(s) << err;
    const uint16_t p = s->rtp_port();
    EXPECT_EQ(p % 2, 0) << p;
    EXPECT_GE(p, 32000);
    EXPECT_LE(p, 32008);
    EXPECT_EQ(bound_port(s->rtp_fd()), p);
    EXPECT_EQ(bound_port(s->rtcp_fd()), p + 1);
    // Both are really bound: nobody else can take them.
    EXPECT_FALSE(can_bind(p));
    EXPECT_FALSE(can_bind(static_cast<uint16_t>(p + 1)));
    // Non-blocking and close-on-exec.
    for (int fd : {s->rtp_fd(), s->rtcp_fd()}) {
        EXPECT_TRUE(::fcntl(fd, F_GETFL) & O_NONBLOCK);
        EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
    }
    EXPECT_EQ(pool.in_use(), 1u);

    s.reset();
    EXPECT_EQ(pool.in_use(), 0u);
    EXPECT_TRUE(can_bind(p));
    EXPECT_TRUE(can_bind(static_cast<uint16_t>(p + 1)));
}

TEST(PortPool, ExhaustedRangeFailsWithMessageAndReleasedPairComesBack) {
    PortPool pool("127.0.0.1", 32010, 32015);  // 3 pairs
    ASSERT_EQ(pool.capacity(), 3u);
    std::string err;
    std::vector<std::unique_ptr<RtpSockets>> held;
    std::set<uint16_t> ports;
    for (int i = 0; i < 3; ++i) {
        auto s = pool.acquire(&err);
        ASSERT_TRUE(s) << "pair " << i << ": " << err;
        ports.insert(s->rtp_port());
        held.push_back(std::move(s));
    }
    EXPECT_EQ(ports, (std::set<uint16_t>{32010, 32012, 32014}));
    EXPECT_EQ(pool.in_use(), 3u);

    err.clear();
    EXPECT_EQ(pool.acquire(&err), nullptr);
    EXPECT_FALSE(err.empty());
    EXPECT_NE(err.find("32010"), std::string::npos) << err;  // names the range
    EXPECT_EQ(pool.acquire(nullptr), nullptr);               // a null error pointer is fine
    EXPECT_EQ(pool.in_use(), 3u);

    const uint16_t released = held[1]->rtp_port();
    held[1].reset();
    EXPECT_EQ(pool.in_use(), 2u);
    err.clear();
    auto again = pool.acquire(&err);
    ASSERT_TRUE(again) << err;
    EXPECT_EQ(again->rtp_port(), released);  // the only free pair
    EXPECT_EQ(pool.in_use(), 3u);
}

TEST(PortPool, RoundRobinDoesNotHandBackTheJustReleasedPort) {
    PortPool pool("127.0.0.1", 32020, 32025);  // 3 pairs
    std::string err;
    std::vector<uint16_t> order;
    for (int i = 0; i < 6; ++i) {
        auto s = pool.acquire(&err);
        ASSERT_TRUE(s) << err;
        order.push_back(s->rtp_port());
    }  // each released at the end of its iteration
    for (size_t i = 1; i < order.size(); ++i) EXPECT_NE(order[i], order[i - 1]) << "acquire " << i;
    // The first three cover the whole range before any port is reused.
    EXPECT_EQ(std::set<uint16_t>(order.begin(), order.begin() + 3), (std::set<uint16_t>{32020, 32022, 32024}));

    // With one held and one just released, the third (still free) pair is preferred.
    auto a = pool.acquire(&err);
    auto b = pool.acquire(&err);
    ASSERT_TRUE(a && b) << err;
    const uint16_t pb = b->rtp_port();
    b.reset();
    auto c = pool.acquire(&err);
    ASSERT_TRUE(c) << err;
    EXPECT_NE(c->rtp_port(), pb);
    EXPECT_NE(c->rtp_port(), a->rtp_port());
}

TEST(PortPool, SkipsPortsBoundBySomebodyElse) {
    PortPool pool("127.0.0.1", 32030, 32035);  // 3 pairs
    int other_rtp = bind_loopback(32030);
    ASSERT_GE(other_rtp, 0) << "port 32030 busy on this machine";
    std::string err;
    auto a = pool.acquire(&err);
    ASSERT_TRUE(a) << err;
    EXPECT_EQ(a->rtp_port(), 32032);
    EXPECT_EQ(pool.in_use(), 1u);

    // The odd (RTCP) port of the last pair is taken: that pair is unusable too, and its RTP port is not
    // left bound. Every other pair is busy, so acquire fails cleanly and reserves nothing.
    int other_rtcp = bind_loopback(32035);
    ASSERT_GE(other_rtcp, 0);
    err.clear();
    EXPECT_EQ(pool.acquire(&err), nullptr);
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(pool.in_use(), 1u);
    EXPECT_TRUE(can_bind(32034));

    ::close(other_rtp);
    err.clear();
    auto b = pool.acquire(&err);
    ASSERT_TRUE(b) << err;
    EXPECT_EQ(b->rtp_port(), 32030);
    EXPECT_EQ(pool.in_use(), 2u);
    ::close(other_rtcp);
}

TEST(PortPool, PoolDestroyedBeforeItsLeasesIsSafe) {
    auto pool = std::make_unique<PortPool>("127.0.0.1", 32040, 32045);
    std::string err;
    auto a = pool->acquire(&err);
    auto b = pool->acquire(&err);
    ASSERT_TRUE(a && b) << err;
    const uint16_t pa = a->rtp_port();
    const uint16_t pb = b->rtp_port();
    pool.reset();

    // The leases still work: a datagram from a's RTP socket reaches b's.
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(pb);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char msg[] = "hello";
    ASSERT_EQ(::sendto(a->rtp_fd(), msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(sizeof msg));
    pollfd pfd{b->rtp_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 1000), 1);
    char buf[16] = {};
    EXPECT_EQ(::recv(b->rtp_fd(), buf, sizeof buf, 0), static_cast<ssize_t>(sizeof msg));
    EXPECT_STREQ(buf, "hello");

    a.reset();  // after the pool: must not touch freed memory (ASan)
    b.reset();
    EXPECT_TRUE(can_bind(pa));
    EXPECT_TRUE(can_bind(pb));
    EXPECT_TRUE(can_bind(static_cast<uint16_t>(pb + 1)));
}

TEST(PortPool, ConcurrentAcquireHandsOutDistinctPairs) {
    PortPool pool("127.0.0.1", 32050, 32065);  // 8 pairs
    ASSERT_EQ(pool.capacity(), 8u);
    std::mutex mu;
    std::vector<std::unique_ptr<RtpSockets>> held;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2; ++i) {
                std::string e;
                auto s = pool.acquire(&e);
                std::lock_guard lk(mu);
                if (s) held.push_back(std::move(s));
            }
        });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(held.size(), 8u);
    std::set<uint16_t> ports;
    for (auto& s : held) ports.insert(s->rtp_port());
    EXPECT_EQ(ports.size(), 8u);
    EXPECT_EQ(pool.in_use(), 8u);
    EXPECT_EQ(pool.acquire(nullptr), nullptr);
    held.clear();
    EXPECT_EQ(pool.in_use(), 0u);
}

TEST(PortPool, OddBoundsUseOnlyWholeEvenOddPairs) {
    PortPool pool("127.0.0.1", 32071, 32076);  // pairs 32072/3 and 32074/5; 32076 has no odd partner
    EXPECT_EQ(pool.capacity(), 2u);
    std::string err;
    auto a = pool.acquire(&err);
    auto b = pool.acquire(&err);
    ASSERT_TRUE(a && b) << err;
    EXPECT_EQ((std::set<uint16_t>{a->rtp_port(), b->rtp_port()}), (std::set<uint16_t>{32072, 32074}));
    EXPECT_EQ(pool.acquire(&err), nullptr);
}

TEST(PortPool, EmptyRangeFailsWithMessage) {
    PortPool pool("127.0.0.1", 32078, 32078);
    EXPECT_EQ(pool.capacity(), 0u);
    std::string err;
    EXPECT_EQ(pool.acquire(&err), nullptr);
    EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace parley::media
