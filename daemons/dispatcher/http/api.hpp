#pragma once
// The JSON API under /api/v1/: what `kilnctl --json` prints, from the same
// answers (Queries), so the two never differ.
//   GET /api/v1/status, /api/v1/runners, /api/v1/jobs
//   GET /api/v1/commits/<id>   (a full id or a unique prefix of 4 or more)
//   GET /api/v1/events         (server-sent events: see kiln-dispatcher(8))
// An unknown commit is 404 {"error": "..."}.
#include <functional>
#include <string>

#include "events.hpp"
#include "http_server.hpp"

namespace kiln {

// Queries::answer's signature: packed msgpack, or "" with `error` set.
using QueryFn = std::function<std::string(const std::string &what, const std::string &arg,
                                          std::string &error)>;

// Read the finished commits matching an id prefix back from the store into
// memory, then call `then` on the loop (PageSources::recall's signature).
using RecallFn = std::function<void(const std::string &prefix, std::function<void()> then)>;

// `commit_log`: the handler of /api/v1/commits/<id>/log (log_routes.hpp),
// which shares the commits prefix.  `recall`: how a commit no longer in
// memory is found (the answer then comes once it is read back).
void add_api_routes(HttpServer &http, QueryFn query, EventHub &events,
                    HttpHandler commit_log = nullptr, RecallFn recall = nullptr);

} // namespace kiln
