// metrics_test.cpp — Registry: the Prometheus text format 0.0.4 for each type, escaping, cumulative histogram
// buckets, exact totals under concurrent updates, and collectors.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

using parley::metrics::Registry;
using parley::metrics::Type;

TEST(Metrics, CounterRendersHelpTypeAndSortedSeries) {
    Registry r;
    r.describe("parley_calls_total", Type::kCounter, "Calls that ended.");
    r.add("parley_calls_total", {{"direction", "outbound"}, {"outcome", "completed"}});
    r.add("parley_calls_total", {{"direction", "inbound"}, {"outcome", "missed"}}, 2);
    r.add("parley_calls_total", {{"direction", "inbound"}, {"outcome", "completed"}}, 3);
    r.add("parley_calls_total", {{"direction", "inbound"}, {"outcome", "completed"}}, -1);  // ignored
    EXPECT_EQ(r.render(),
              "# HELP parley_calls_total Calls that ended.\n"
              "# TYPE parley_calls_total counter\n"
              "parley_calls_total{direction=\"inbound\",outcome=\"completed\"} 3\n"
              "parley_calls_total{direction=\"inbound\",outcome=\"missed\"} 2\n"
              "parley_calls_total{direction=\"outbound\",outcome=\"completed\"} 1\n");
    EXPECT_EQ(r.value("parley_calls_total", {{"direction", "inbound"}, {"outcome", "missed"}}), 2);
    EXPECT_EQ(r.value("parley_calls_total", {{"direction", "nowhere"}}), 0);
}

TEST(Metrics, GaugeSetClearAndFamiliesSorted) {
    Registry r;
    r.describe("parley_z_gauge", Type::kGauge, "Last.");
    r.describe("parley_calls_active", Type::kGauge, "Calls Parley has now.");
    r.set("parley_calls_active", {}, 4);
    r.set("parley_calls_active", {}, 2.5);
    r.set("parley_z_gauge", {{"line", "a"}}, -1);
    EXPECT_EQ(r.render(),
              "# HELP parley_calls_active Calls Parley has now.\n"
              "# TYPE parley_calls_active gauge\n"
              "parley_calls_active 2.5\n"
              "# HELP parley_z_gauge Last.\n"
              "# TYPE parley_z_gauge gauge\n"
              "parley_z_gauge{line=\"a\"} -1\n");
    r.clear("parley_z_gauge");
    EXPECT_EQ(r.value("parley_z_gauge", {{"line", "a"}}), 0);
    EXPECT_EQ(r.render().find("parley_z_gauge{"), std::string::npos);
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInf) {
    Registry r;
    r.describe("parley_voice_to_voice_seconds", Type::kHistogram, "Voice to voice.", {0.5, 1, 2.5});
    for (const double v : {0.1, 0.5, 0.7, 3.0, 10.0}) r.observe("parley_voice_to_voice_seconds", {}, v);
    EXPECT_EQ(r.render(),
              "# HELP parley_voice_to_voice_seconds Voice to voice.\n"
              "# TYPE parley_voice_to_voice_seconds histogram\n"
              "parley_voice_to_voice_seconds_bucket{le=\"0.5\"} 2\n"
              "parley_voice_to_voice_seconds_bucket{le=\"1\"} 3\n"
              "parley_voice_to_voice_seconds_bucket{le=\"2.5\"} 3\n"
              "parley_voice_to_voice_seconds_bucket{le=\"+Inf\"} 5\n"
              "parley_voice_to_voice_seconds_sum 14.3\n"
              "parley_voice_to_voice_seconds_count 5\n");
    EXPECT_EQ(r.value("parley_voice_to_voice_seconds"), 5);
}

TEST(Metrics, HistogramWithLabelsPutsLeLast) {
    Registry r;
    r.describe("parley_stage_seconds", Type::kHistogram, "Stages.", {0.1});
    r.observe("parley_stage_seconds", {{"stage", "eot"}}, 0.05);
    const std::string out = r.render();
    EXPECT_NE(out.find("parley_stage_seconds_bucket{stage=\"eot\",le=\"0.1\"} 1\n"), std::string::npos) << out;
    EXPECT_NE(out.find("parley_stage_seconds_bucket{stage=\"eot\",le=\"+Inf\"} 1\n"), std::string::npos) << out;
    EXPECT_NE(out.find("parley_stage_seconds_sum{stage=\"eot\"} 0.05\n"), std::string::npos) << out;
    EXPECT_NE(out.find("parley_stage_seconds_count{stage=\"eot\"} 1\n"), std::string::npos) << out;
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
    Registry r;
    r.describe("parley_line_registered", Type::kGauge, "A \\ help\nline.");
    r.set("parley_line_registered", {{"line", "a\"b\\c\nd"}}, 1);
    EXPECT_EQ(r.render(),
              "# HELP parley_line_registered A \\\\ help\\nline.\n"
              "# TYPE parley_line_registered gauge\n"
              "parley_line_registered{line=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(Metrics, UndeclaredAndWrongTypeUpdatesAreIgnored) {
    Registry r;
    r.describe("parley_x_total", Type::kCounter, "x");
    r.describe("parley_x_total", Type::kGauge, "declared twice: the first wins");
    r.set("parley_x_total", {}, 5);  // not a gauge
    r.add("parley_nothing_total");
    r.observe("parley_x_total", {}, 1);
    EXPECT_EQ(r.render(), "# HELP parley_x_total x\n# TYPE parley_x_total counter\n");
}

TEST(Metrics, ConcurrentUpdatesAreExact) {
    Registry r;
    r.describe("parley_http_requests_total", Type::kCounter, "Requests.");
    r.describe("parley_h", Type::kHistogram, "h", {1});
    constexpr int kThreads = 8, kEach = 20000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&r, t] {
            for (int i = 0; i < kEach; ++i) {
                r.add("parley_http_requests_total", {{"code", t % 2 ? "200" : "404"}});
                r.observe("parley_h", {}, 0.5);
                if (i % 1000 == 0) (void)r.render();
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(r.value("parley_http_requests_total", {{"code", "200"}}), kThreads / 2 * kEach);
    EXPECT_EQ(r.value("parley_http_requests_total", {{"code", "404"}}), kThreads / 2 * kEach);
    EXPECT_EQ(r.value("parley_h"), kThreads * kEach);
    EXPECT_NE(r.render().find("parley_h_bucket{le=\"1\"} 160000\n"), std::string::npos);
}

TEST(Metrics, CollectorsRunInOrderAtRender) {
    Registry r;
    r.describe("parley_engine_queue_depth", Type::kGauge, "Queue depth.");
    int depth = 3;
    std::vector<int> order;
    r.add_collector([&](Registry& reg) {
        order.push_back(1);
        reg.clear("parley_engine_queue_depth");
        reg.set("parley_engine_queue_depth", {{"engine", "stt"}}, depth);
    });
    r.add_collector([&](Registry&) { order.push_back(2); });
    EXPECT_NE(r.render().find("parley_engine_queue_depth{engine=\"stt\"} 3\n"), std::string::npos);
    depth = 7;
    EXPECT_NE(r.render().find("parley_engine_queue_depth{engine=\"stt\"} 7\n"), std::string::npos);
    EXPECT_EQ(order, (std::vector<int>{1, 2, 1, 2}));
}
