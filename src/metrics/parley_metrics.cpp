// parley_metrics.cpp — see parley_metrics.h.
#include "metrics/parley_metrics.h"

namespace parley::metrics {

void describe_parley(Registry& r) {
    const std::vector<double> latency = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0};
    r.describe("parley_calls_active", Type::kGauge, "Calls Parley has now (ringing or up).");
    r.describe("parley_calls_total", Type::kCounter, "Calls ended, by direction and outcome.");
    r.describe("parley_line_registered", Type::kGauge, "1 when the line is registered with its registrar.");
    r.describe("parley_turns_total", Type::kCounter, "Conversation turns completed, by what started them.");
    r.describe("parley_voice_to_voice_seconds", Type::kHistogram,
               "From the end of the caller's speech to the first RTP packet of the reply.", latency);
    r.describe("parley_stage_seconds", Type::kHistogram,
               "Per-stage time after the end of the caller's speech (overhead: Parley's own time).",
               {0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0});
    r.describe("parley_engine_queue_depth", Type::kGauge, "Requests waiting for or running on an engine.");
    r.describe("parley_rtp_packets_received_total", Type::kCounter, "RTP packets received, all calls.");
    r.describe("parley_rtp_packets_lost_total", Type::kCounter, "RTP packets lost (sequence gaps), all calls.");
    r.describe("parley_rtp_jitter_seconds", Type::kHistogram, "RFC 3550 interarrival jitter at each call's end.",
               {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16});
    r.describe("parley_srtp_auth_failed_total", Type::kCounter,
               "SRTP packets that failed authentication (tampered or wrong key) and were dropped, all calls.");
    r.describe("parley_store_dropped_total", Type::kCounter, "Store writes dropped because its queue was full.");
}

}  // namespace parley::metrics
