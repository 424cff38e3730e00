// parley_metrics.h — the metric families Parley exposes on /metrics (docs/api.md "Operations"), declared in
// one place for the runtime (apps/parley/ops.cpp), which updates them, and bench/ops_bench, which renders a
// realistic registry. parley_http_requests_total is declared by the HTTP server itself.
#pragma once

#include "metrics/metrics.h"

namespace parley::metrics {

void describe_parley(Registry& registry);

}  // namespace parley::metrics
