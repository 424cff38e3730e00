// metrics.h — Parley's Prometheus metrics: counters, gauges and histograms with labels, rendered in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.
//
// Every family is declared once (describe) before use; updates are thread-safe and short (one mutex, no
// I/O), so SIP, media and turn threads may update directly. Collectors run at render time to read values
// that live elsewhere (queue depths, active calls, registration states).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace parley::metrics {

using Labels = std::map<std::string, std::string>;  // label name -> value (escaped on render)

enum class Type { kCounter, kGauge, kHistogram };

class Registry {
public:
    // Declares a family. `buckets` (upper bounds, increasing; +Inf added) only for histograms. Declaring the
    // same name twice with the same type is a no-op.
    void describe(const std::string& name, Type type, const std::string& help, std::vector<double> buckets = {});

    void add(const std::string& name, const Labels& labels = {}, double v = 1);   // counter (v >= 0)
    void set(const std::string& name, const Labels& labels, double v);             // gauge
    void observe(const std::string& name, const Labels& labels, double v);         // histogram
    // Drops every series of a gauge family (before a collector sets the current ones).
    void clear(const std::string& name);

    // Called (in order) at the start of render(), outside the registry's lock.
    void add_collector(std::function<void(Registry&)> fn);

    std::string render();

    // Value of one series (tests): a counter or gauge value, or a histogram's count. 0 when absent.
    double value(const std::string& name, const Labels& labels = {});

private:
    struct Series {
        double value = 0;                  // counter/gauge; histogram: sum
        std::vector<std::uint64_t> counts; // histogram: per bucket (not cumulative), last = +Inf
        std::uint64_t count = 0;
    };
    struct Family {
        Type type = Type::kCounter;
        std::string help;
        std::vector<double> buckets;
        std::map<Labels, Series> series;
    };
    std::mutex mu_;
    std::map<std::string, Family> families_;
    std::mutex collectors_mu_;
    std::vector<std::function<void(Registry&)>> collectors_;
};

}  // namespace parley::metrics
