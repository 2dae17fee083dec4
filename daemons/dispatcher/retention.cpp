// [retention]: reading the policy, and cutting a log to head and tail.
#include "retention.hpp"

namespace kiln {

RetentionPolicy RetentionPolicy::from(const ConfigTable &t)
{
    RetentionPolicy p;
    p.max_age_ms = t.duration_ms("max_age", 0);
    p.keep_per_branch =
        static_cast<uint32_t>(t.integer("keep_per_branch", p.keep_per_branch, 0, 1000000));
    // Below 1 KiB there would be little but the marker left.
    p.max_log_bytes = static_cast<uint64_t>(t.integer("max_log_bytes", 0, 0, int64_t(1) << 40));
    if (p.max_log_bytes != 0 && p.max_log_bytes < 1024)
        throw ConfigError(t.error_at("max_log_bytes", "must be 0 (logs kept whole) or at least 1024"));
    p.interval_ms = t.duration_ms("gc_interval", p.interval_ms);
    if (p.interval_ms < 1000)
        throw ConfigError(t.error_at("gc_interval", "must be at least 1s"));
    p.batch = static_cast<uint32_t>(t.integer("gc_batch", p.batch, 1, 100000));
    t.reject_unknown_keys();
    return p;
}

uint64_t cut_log(std::string &log, uint64_t max)
{
    if (log.size() <= max)
        return 0;
    // The marker's length depends on the count it holds; it is at most this.
    auto marker = [](uint64_t n) {
        return "\n[... kiln retention: " + std::to_string(n) + " bytes cut ...]\n";
    };
    size_t room = max > marker(log.size()).size() ? max - marker(log.size()).size() : 0;
    size_t head = room / 2, tail = room - head;
    uint64_t cut = log.size() - head - tail;
    log = log.substr(0, head) + marker(cut) + log.substr(log.size() - tail);
    return cut;
}

} // namespace kiln
