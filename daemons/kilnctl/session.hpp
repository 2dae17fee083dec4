#pragma once
// One kilnctl request: connect to the dispatcher, say hello as "ctl" (and
// authenticate when the dispatcher wants it), send the request, wait for its Reply or Error, close.
#include <cstdint>
#include <functional>
#include <string>

#include <kiln/messages.hpp>

namespace kiln {

// Called with the packed msgpack body of the Reply; returns the exit status.
using ReplyHandler = std::function<int(const std::string &body)>;

// Runs its own loop until the answer, a disconnection or `timeout_ms`.
// Returns on_reply's status for a Reply; 1 (with "kilnctl: why" on stderr)
// for an Error from the dispatcher, an unreachable dispatcher or no answer
// in time.  `request` is a Query or a Notify; its id is the one answered.
// `secret`: the key to prove (empty: none; see auth.hpp).
int ask_dispatcher(const std::string &address, const std::string &secret, const Message &request,
                   uint64_t timeout_ms, const ReplyHandler &on_reply);

// Asks `request`, then again for as long as `next` says, on one
// connection: `next` gets each Reply's body and either sets the next
// request (its id 2) and returns true — it is sent `pause_ms` later — or
// returns false after setting the exit status.  A dropped connection is
// made again (a dispatcher that restarts) and the pending request asked
// again; only `timeout_ms` without a Reply, or an Error, ends it with 1.
using NextRequest = std::function<bool(const std::string &body, Message &request, int &status)>;
int poll_dispatcher(const std::string &address, const std::string &secret, Message request,
                    uint64_t timeout_ms, uint64_t pause_ms, const NextRequest &next);

} // namespace kiln
