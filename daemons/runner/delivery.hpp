#pragma once
// What the runner owes the dispatcher for one assign: the Result of the
// job, or — for an assign with `list` — its TestList.  Both are spooled,
// sent, resent after a reconnect and acked by request id in the same way;
// these helpers let the Runner and the Spool treat them alike.
#include <cstddef>
#include <cstdint>
#include <variant>

#include <kiln/messages.hpp>

namespace kiln {

using Delivery = std::variant<Result, TestList>;

uint64_t delivery_job_id(const Delivery &d);
uint32_t delivery_attempt(const Delivery &d);
inline bool is_test_list(const Delivery &d) { return std::holds_alternative<TestList>(d); }
// The request id the ack will carry.
void set_request_id(Delivery &d, uint64_t id);
Message to_message(const Delivery &d);

// "result" or "test list", for log lines.
inline const char *what_of(const Delivery &d) { return is_test_list(d) ? "test list" : "result"; }

// Make it fit in one frame of max_frame bytes, or the dispatcher would
// refuse it and the runner resend it forever: a Result loses test messages
// and log bytes step by step, and its tests as a last resort (outcome
// error); a TestList too long becomes an error (the commit runs unsharded).
void fit_in_frame(Delivery &d, size_t max_frame);

} // namespace kiln
