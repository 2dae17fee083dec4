// The JSON API (see api.hpp).
#include "api.hpp"

#include <nlohmann/json.hpp>

#include "log_routes.hpp"

namespace kiln {

namespace {

template <class Answer> void send_json(Answer &r, int status, const nlohmann::json &body)
{
    // kilnctl --json's rendering: invalid UTF-8 from a test's output replaced.
    r.send(status, "application/json",
           body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
           {{"cache-control", "no-cache"}});
}

// A query's answer as JSON; a refused query (unknown commit) is a 404.
template <class Answer>
void send_answer(Answer &r, const std::string &packed, const std::string &error)
{
    if (!error.empty())
        return send_json(r, 404, {{"error", error}});
    send_json(r, 200, nlohmann::json::from_msgpack(packed));
}

template <class Answer>
void answer_query(Answer &r, const QueryFn &query, const std::string &what,
                  const std::string &arg)
{
    std::string error;
    std::string packed = query(what, arg, error);
    send_answer(r, packed, error);
}

} // namespace

void add_api_routes(HttpServer &http, QueryFn query, EventHub &events, HttpHandler commit_log,
                    RecallFn recall)
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
    http.route("GET", "/api/v1/commits/", [query, commit_log, recall](const HttpRequest &req,
                                                                      HttpResponder &r) {
        if (commit_log && is_commit_log_path(req.path))
            return commit_log(req, r);
        std::string id = req.path.substr(std::string("/api/v1/commits/").size());
        // A commit id is hex: anything else (a '/', "..", '%') names no commit.
        bool hex = !id.empty() && id.size() <= 64 &&
                   id.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
        if (!hex)
            return send_json(r, 404, {{"error", "not a commit id: '" + id + "'"}});
        std::string error;
        std::string packed = query("result", id, error);
        if (error.empty() || !recall)
            return send_answer(r, packed, error);
        // Not in memory: read back from the store (off the loop), answered then.
        auto later = r.later();
        recall(id, [query, id, later] {
            if (!later->gone())
                answer_query(*later, query, "result", id);
        });
    });
    http.route("GET", "/api/v1/events", event_stream_handler(events));
}

} // namespace kiln
