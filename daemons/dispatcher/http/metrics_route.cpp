// GET /metrics: gather the parts, render them (metrics.cpp).
#include "http_server.hpp"
#include "metrics.hpp"

#include <kiln/daemon.hpp>

namespace kiln {

void add_metrics_route(HttpServer &server, std::function<MetricsSources()> gather)
{
    server.route("GET", "/metrics",
                 [gather = std::move(gather)](const HttpRequest &req, HttpResponder &out) {
                     if (req.path != "/metrics") {
                         out.send(404, "text/plain; charset=utf-8", "not found\n");
                         return;
                     }
                     out.send(200, kMetricsContentType, render_metrics(gather(), unix_ms()));
                 });
}

} // namespace kiln
