// The dispatcher's HTTP side: which routes it serves, starting the server,
// and job state changes published as server-sent events.
#include "dispatcher.hpp"

#include <nlohmann/json.hpp>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "http/api.hpp"
#include "http/log_routes.hpp"
#include "http/metrics.hpp"
#include "http/pages_routes.hpp"
#include "http/webhooks.hpp"

namespace kiln {

// Each part adds its own routes; the one list of them is here.
void Dispatcher::add_http_routes()
{
    add_api_routes(
        http_,
        [this](const std::string &what, const std::string &arg, std::string &error) {
            return query(what, arg, error);
        },
        events_, commit_log_handler(jobs_, live_logs_),
        [this](const std::string &prefix, std::function<void()> then) {
            recall(prefix, std::move(then));
        });
    // The pages show a running job's live tail; the script follows the rest.
    add_page_routes(http_, PageSources{jobs_, runners_, [this](uint64_t job_id) {
                                           const LiveLogs::Tail *tail = live_logs_.find(job_id);
                                           return tail ? LiveLogView{tail->start, tail->bytes}
                                                       : LiveLogView{};
                                       },
                                       [this] { return deliveries_.status(unix_ms()); },
                                       [this](const std::string &prefix,
                                              std::function<void()> then) {
                                           recall(prefix, std::move(then));
                                       }});
    // (/api/v1/commits/<id>/log is served through the API's commits route.)
    add_metrics_route(http_, [this] {
        return MetricsSources{jobs_, runners_, counters_, connections_by_role(),
                              deliveries_.status(unix_ms())};
    });
    add_webhook_routes(http_, config_.webhooks, [this](const Notify &n) { return relay_notify(n); });
}

bool Dispatcher::start_http()
{
    if (config_.http.listen.empty()) {
        log_info("http: off ([http] listen = \"\")");
        return true;
    }
    std::string error;
    if (!http_.start(error)) {
        log_err("%s", error.c_str());
        return false;
    }
    return true;
}

// The event's data: what a page or a script needs to update one job.
void Dispatcher::publish_job(const char *event, const Job &job)
{
    if (!events_.subscribers())
        return;
    nlohmann::json data = {
        {"job", job.id},           {"repo", job.spec.repo},      {"branch", job.spec.branch},
        {"commit", job.spec.commit}, {"state", job_state_name(job.state)},
        {"attempt", job.attempt},  {"runner", job.runner},       {"unix_ms", unix_ms()},
    };
    if (job.parent) {
        data["parent"] = job.parent;
        data["shard"] = job.shard;
        data["shards"] = job.shards;
    }
    if (job.state == JobState::done) {
        data["outcome"] = kiln_outcome_name(job.result.outcome);
        data["error"] = job.result.error;
    }
    events_.publish(event, data);
}

} // namespace kiln
