// metrics.cpp — the Prometheus registry (metrics.h): text exposition format 0.0.4.
#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

namespace parley::metrics {
namespace {

// A sample value or bucket bound: shortest round-trip form, "+Inf", "-Inf", "NaN".
void append_number(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
        return;
    }
    if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
        return;
    }
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_label_value(std::string& out, const std::string& v) {
    for (const char c : v) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '"': out += "\\\""; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
}

void append_help(std::string& out, const std::string& v) {
    for (const char c : v) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
}

// `{a="x",b="y"}` (nothing when there are no labels); `extra` (le) goes last.
void append_labels(std::string& out, const Labels& labels, const char* extra_name = nullptr,
                   const std::string& extra_value = {}) {
    if (labels.empty() && extra_name == nullptr) return;
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) out += ',';
        first = false;
        out += k;
        out += "=\"";
        append_label_value(out, v);
        out += '"';
    }
    if (extra_name != nullptr) {
        if (!first) out += ',';
        out += extra_name;
        out += "=\"";
        append_label_value(out, extra_value);
        out += '"';
    }
    out += '}';
}

const char* type_name(Type t) {
    switch (t) {
        case Type::kCounter: return "counter";
        case Type::kGauge: return "gauge";
        case Type::kHistogram: return "histogram";
    }
    return "untyped";
}

}  // namespace

void Registry::describe(const std::string& name, Type type, const std::string& help, std::vector<double> buckets) {
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it != families_.end()) return;  // declared already (same name twice: a no-op)
    Family f;
    f.type = type;
    f.help = help;
    if (type == Type::kHistogram) {
        std::sort(buckets.begin(), buckets.end());
        buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
        while (!buckets.empty() && std::isinf(buckets.back())) buckets.pop_back();  // +Inf is implicit
        f.buckets = std::move(buckets);
    }
    families_.emplace(name, std::move(f));
}

void Registry::add(const std::string& name, const Labels& labels, double v) {
    if (!(v >= 0)) return;  // counters only go up (also rejects NaN)
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end() || it->second.type != Type::kCounter) return;
    it->second.series[labels].value += v;
}

void Registry::set(const std::string& name, const Labels& labels, double v) {
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end() || it->second.type != Type::kGauge) return;
    it->second.series[labels].value = v;
}

void Registry::observe(const std::string& name, const Labels& labels, double v) {
    if (std::isnan(v)) return;
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end() || it->second.type != Type::kHistogram) return;
    Family& f = it->second;
    Series& s = f.series[labels];
    if (s.counts.empty()) s.counts.assign(f.buckets.size() + 1, 0);
    const auto bucket = std::lower_bound(f.buckets.begin(), f.buckets.end(), v) - f.buckets.begin();  // v <= le
    ++s.counts[static_cast<std::size_t>(bucket)];
    ++s.count;
    s.value += v;
}

void Registry::clear(const std::string& name) {
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end()) return;
    it->second.series.clear();
}

void Registry::add_collector(std::function<void(Registry&)> fn) {
    std::lock_guard lock(collectors_mu_);
    collectors_.push_back(std::move(fn));
}

std::string Registry::render() {
    std::vector<std::function<void(Registry&)>> collectors;
    {
        std::lock_guard lock(collectors_mu_);
        collectors = collectors_;
    }
    for (auto& fn : collectors) fn(*this);

    std::string out;
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) {  // families and series sorted (std::map)
        out += "# HELP ";
        out += name;
        out += ' ';
        append_help(out, f.help);
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type_name(f.type);
        out += '\n';
        for (const auto& [labels, s] : f.series) {
            if (f.type != Type::kHistogram) {
                out += name;
                append_labels(out, labels);
                out += ' ';
                append_number(out, s.value);
                out += '\n';
                continue;
            }
            std::uint64_t cumulative = 0;
            for (std::size_t i = 0; i <= f.buckets.size(); ++i) {
                cumulative += i < s.counts.size() ? s.counts[i] : 0;
                std::string le;
                if (i < f.buckets.size()) {
                    append_number(le, f.buckets[i]);
                } else {
                    le = "+Inf";
                }
                out += name;
                out += "_bucket";
                append_labels(out, labels, "le", le);
                out += ' ';
                out += std::to_string(cumulative);
                out += '\n';
            }
            out += name;
            out += "_sum";
            append_labels(out, labels);
            out += ' ';
            append_number(out, s.value);
            out += '\n';
            out += name;
            out += "_count";
            append_labels(out, labels);
            out += ' ';
            out += std::to_string(s.count);
            out += '\n';
        }
    }
    return out;
}

double Registry::value(const std::string& name, const Labels& labels) {
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end()) return 0;
    auto s = it->second.series.find(labels);
    if (s == it->second.series.end()) return 0;
    return it->second.type == Type::kHistogram ? static_cast<double>(s->second.count) : s->second.value;
}

}  // namespace parley::metrics
