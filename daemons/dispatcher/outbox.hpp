#pragma once
// The report outbox's rows: one per (receiver, event) not yet delivered
// (pending) or refused for good (rejected).  The Store keeps them (table
// deliveries), the Deliveries engine works through them; a delivered row
// is deleted.
#include <cstdint>
#include <string>

namespace kiln {

struct OutboxRow {
    uint64_t id = 0;      // the delivery_id plugins see: never reused, across restarts
    std::string receiver; // the [[report]] table's identity ("forge", "forge#2")
    uint64_t job_id = 0;  // the commit's (top-level) job
    uint32_t attempt = 0; // the job's attempt when the event happened
    int kind = 0;         // enum kiln_event_kind
    int64_t event_unix_ms = 0;
    uint32_t retries = 0;              // attempts that failed so far
    int64_t next_attempt_unix_ms = 0;  // not before this (back-off); 0: at once
    bool rejected = false;             // refused for good: kept for the record, never sent
    std::string last_error;
};

// One receiver as `kilnctl reports`, the pages and /metrics show it.
struct ReceiverStatus {
    std::string receiver;   // identity: "forge", "forge#2"
    std::string plugin;
    bool configured = true; // false: rows wait for a [[report]] table of this identity
    size_t pending = 0;     // rows not delivered yet (in flight included)
    size_t in_flight = 0;
    size_t rejected = 0;    // rows refused for good, kept in the outbox
    uint64_t delivered = 0; // since the start
    uint64_t failed = 0;    // failed attempts since the start (each retried later)
    uint64_t refused = 0;   // rejections since the start
    int64_t next_attempt_unix_ms = 0; // when a waiting receiver tries again; 0: not waiting
    std::string last_error;
};

const char *event_kind_name(int kind);  // "queued", "started", "failing", "finished"
int event_kind_from_name(const std::string &name); // 0 when unknown

} // namespace kiln
