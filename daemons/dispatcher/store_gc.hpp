#pragma once
// Garbage collection's SQL (blocking: the thread pool, or start-up).  It
// runs on a connection of its own (WAL: the Store's writer and GC take turns
// at the write lock, readers never wait), one batch per transaction, so a
// kill half-way leaves every batch either done or not started.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "retention.hpp"

struct sqlite3;

namespace kiln {

// What a run did or, dry, would do.
struct GcTally {
    struct Branch {
        uint64_t jobs = 0, logs_cut = 0, log_bytes_cut = 0;
    };
    uint64_t jobs = 0;           // commits' jobs deleted
    uint64_t shards = 0;         // their shard jobs, deleted with them
    uint64_t stored_bytes = 0;   // results' stored (compressed) bytes deleted
    uint64_t logs_cut = 0;       // results whose log was cut to max_log_bytes
    uint64_t log_bytes_cut = 0;  // bytes of log cut from them
    std::map<std::string, Branch> branches; // by "repo branch"

    void add(const GcTally &other);
};

struct GcBatch {
    GcTally tally;
    std::vector<uint64_t> deleted; // job ids, shards included
    bool more = false;             // a full batch: call again
};

// At open, before migrations: switch the database to auto_vacuum =
// INCREMENTAL (a one-time VACUUM of one made before; start-up is blocking
// by design).  Nothing to do when it already is; true when it switched.
bool use_incremental_vacuum(sqlite3 *db);
// GC's own connection to the Store's database.  Throws StoreError.
sqlite3 *open_gc_connection(const std::string &path);

// One batch in one transaction: delete up to policy.batch commits' jobs
// that the policy no longer keeps (with their shards and results), then cut
// up to policy.batch logs.  `before_commit`, when set, runs just before
// COMMIT (a test's SIGKILL).  Throws StoreError, having rolled back.
GcBatch gc_batch(sqlite3 *db, const RetentionPolicy &policy, int64_t now_unix_ms,
                 const std::function<void()> &before_commit = {});
// What a run would do now, changing nothing.
GcTally gc_plan(sqlite3 *db, const RetentionPolicy &policy, int64_t now_unix_ms);
// Give up to `pages` free pages back to the file system (0: all).
void gc_vacuum(sqlite3 *db, int pages);

} // namespace kiln
