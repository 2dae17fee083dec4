#pragma once
// /metrics: the dispatcher's state in the Prometheus text exposition format
// (version 0.0.4).  Rendering is a pure function of the parts, so it is
// tested without a server; the route only gathers them.
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "counters.hpp"
#include "job_table.hpp"
#include "outbox.hpp"
#include "runner_registry.hpp"

namespace kiln {

class HttpServer;

// Everything /metrics shows, borrowed for one rendering.
struct MetricsSources {
    const JobTable &jobs;
    const RunnerRegistry &runners;
    const Counters &counters;
    // Open connections by role ("runner", "observer", "ctl"; "" before the
    // handshake ends).
    std::map<std::string, size_t> connections_by_role;
    // The report receivers: backlog and deliveries (Deliveries::status()).
    std::vector<ReceiverStatus> receivers = {};
};

inline constexpr const char *kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// The exposition text; `now_unix_ms` dates the oldest queued job.
std::string render_metrics(const MetricsSources &sources, int64_t now_unix_ms);

// GET /metrics, answered with render_metrics(gather()).
void add_metrics_route(HttpServer &server, std::function<MetricsSources()> gather);

} // namespace kiln
