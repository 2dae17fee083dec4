#pragma once
// The routes of the web pages on the dispatcher's HTTP server:
//   GET /                the status page;
//   GET /commit/<id>     a commit (full id or a unique prefix, 4–64 hex digits);
//   GET /runner/<name>   a runner;
//   GET /static/kiln.js  the script that keeps them current.
// Anything else under "/" that no other route claims is a 404 page.  Paths
// are matched raw: a commit id or runner name never needs percent-encoding,
// so "/commit/..%2f.." and the like are simply not found.
#include "http_server.hpp"
#include "pages.hpp"

namespace kiln {

// `sources` must outlive the server (the dispatcher's own parts do).
void add_page_routes(HttpServer &server, PageSources sources);

} // namespace kiln
