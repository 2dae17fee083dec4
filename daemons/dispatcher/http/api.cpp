// The JSON API (see api.hpp).
#include "api.hpp"

#include <nlohmann/json.hpp>

#include "log_routes.hpp"

namespace kiln {

namespace {

void send_json(HttpResponder &r, int status, const nlohmann::json &body)
{
    // kilnctl --json's rendering: invalid UTF-8 from a test's output replaced.
    r.send(status, "application/json",
           body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
           {{"cache-control", "no-cache"}});
}

// A query's answer as JSON; a refused query (unknown commit) is a 404.
void answer_query(HttpResponder &r, const QueryFn &query, const std::string &what,
                  const std::string &arg)
{
    std::string error;
    std::string packed = query(what, arg, error);
    if (!error.empty()) {
        send_json(r, 404, {{"error", error}});
        return;
    }
    send_json(r, 200, nlohmann::json::from_msgpack(packed));
}

} // namespace

void add_api_routes(HttpServer &http, QueryFn query, EventHub &events, HttpHandler commit_log)
{
    for (const char *what : {"status", "runners", "jobs"}) {
        std::string path = std::string("/api/v1/") + what;
        http.route("GET", path, [query, what, path](const HttpRequest &req, HttpResponder &r) {
            if (req.path != path)
                send_json(r, 404, {{"error", "not found: " + req.path}});
            else
                answer_query(r, query, what, "");
        });
    }
    http.route("GET", "/api/v1/commits/", [query, commit_log](const HttpRequest &req,
                                                              HttpResponder &r) {
        if (commit_log && is_commit_log_path(req.path))
            return commit_log(req, r);
        std::string id = req.path.substr(std::string("/api/v1/commits/").size());
        // A commit id is hex: anything else (a '/', "..", '%') names no commit.
        bool hex = !id.empty() && id.size() <= 64 &&
                   id.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
        if (!hex)
            send_json(r, 404, {{"error", "not a commit id: '" + id + "'"}});
        else
            answer_query(r, query, "result", id);
    });
    http.route("GET", "/api/v1/events", event_stream_handler(events));
}

} // namespace kiln
