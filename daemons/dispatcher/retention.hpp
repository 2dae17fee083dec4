#pragma once
// [retention] in dispatcher.toml: what garbage collection deletes and cuts.
// See kiln.toml(5) and kiln-dispatcher(8), GARBAGE COLLECTION.
#include <cstdint>
#include <string>

#include <kiln/config.hpp>

namespace kiln {

struct RetentionPolicy {
    // Finished results older than this are deleted; 0: no age limit.
    uint64_t max_age_ms = 0;
    // The newest N finished results of every repository and branch (by job
    // id, the order their commits arrived in) are kept whatever their age
    // and their logs stay whole.  1 by default: a branch's last result is
    // its status and never disappears.
    uint32_t keep_per_branch = 1;
    // Logs of results beyond keep_per_branch are cut to their head and tail
    // (with a marker in between) to at most this many bytes; 0: whole.
    uint64_t max_log_bytes = 0;
    uint64_t interval_ms = 3600000; // gc_interval
    uint32_t batch = 500;           // gc_batch: jobs (and logs) per transaction

    // Anything to do at all?
    bool active() const { return max_age_ms > 0 || max_log_bytes > 0; }

    // The [retention] table; throws ConfigError naming file, key and why.
    static RetentionPolicy from(const ConfigTable &table);
};

// Cut `log` to at most `max` bytes: its head and tail with a line saying
// how much was cut between them.  Returns the bytes removed (0: it fitted).
uint64_t cut_log(std::string &log, uint64_t max);

} // namespace kiln
