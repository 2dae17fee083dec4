#pragma once
// A commit's log over HTTP:
//   GET /api/v1/commits/<id>/log            text/plain: the result's log, or
//                                           while it runs, the tail held so far
//   GET /api/v1/commits/<id>/log?follow=1   server-sent events: `event: log`
//       with data {"offset":N,"text":"...","attempt":A} for what is held, then
//       for each chunk as it arrives; `event: end` with {"outcome":...,
//       "state":...} once the result is in (after a last `log` event with
//       the rest of the result's log), then the stream closes.
// <id> is a full commit id or a unique prefix of 4 or more hex digits; an
// unknown one is 404.
#include "http_server.hpp"
#include "job_table.hpp"
#include "live_logs.hpp"

namespace kiln {

// The handler for GET /api/v1/commits/<id>/log, given the path's <id>/log
// part as the request's path (the API's commits route hands it over).
HttpHandler commit_log_handler(const JobTable &jobs, LiveLogs &logs);

// True for a path under /api/v1/commits/ that names a commit's log.
bool is_commit_log_path(const std::string &path);

} // namespace kiln
