#pragma once
// The pages' one script, served as /static/kiln.js: no framework, no build
// step, nothing fetched from elsewhere.  The pages are complete without it;
// it only keeps them current:
// - it subscribes to /api/v1/events (server-sent events) and, for each job
//   event, recolours that job's rows at once (tr[data-job]) and
//   then fetches the same page again and swaps in its sections marked
//   data-live (at most one fetch at a time, coalesced);
// - on a running commit's page it follows the log stream named by
//   <pre id="log" data-follow> (`event: log` chunks) and appends what
//   arrives, from the offset the page already shows (data-offset).
// Without the event stream or the log stream the page simply stays as
// rendered, with a note saying it is not live.
#include <string_view>

namespace kiln {

extern const std::string_view kPageScript;
// Its content type and the path it is served at.
constexpr std::string_view kPageScriptPath = "/static/kiln.js";
constexpr std::string_view kPageScriptType = "text/javascript; charset=utf-8";

} // namespace kiln
