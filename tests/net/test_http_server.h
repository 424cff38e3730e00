// test_http_server.h — an in-process HTTP server for tests (cpp-httplib as vendored by llama.cpp), bound to
// 127.0.0.1 on a free port, listening on its own thread; stopped and joined by the destructor.
#pragma once

#include <cpp-httplib/httplib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace parley::testing {

class TestHttpServer {
public:
    httplib::Server server;

    // Call after registering the routes. Returns false when the server did not start within 5 s.
    bool start() {
        port_ = server.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) return false;
        thread_ = std::thread([this] { server.listen_after_bind(); });
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!server.is_running() && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return server.is_running();
    }
    ~TestHttpServer() { stop(); }
    void stop() {
        stopping.store(true);
        server.stop();
        if (thread_.joinable()) thread_.join();
    }
    int port() const { return port_; }
    std::string url(const std::string& path = "") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }

    std::atomic<bool> stopping{false};  // slow handlers poll this so stop() never waits long

private:
    int port_ = 0;
    std::thread thread_;
};

// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
inline int dead_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// Sleeps up to `ms`, returning early (false) once `stop` is set.
inline bool nap(int ms, const std::atomic<bool>& stop) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
        if (stop.load()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

}  // namespace parley::testing
