// Shard planning (longest processing time first) and result merging.
#include "shard_planner.hpp"

#include <algorithm>
#include <set>

#include <kiln/plugin.h>

namespace kiln {

std::vector<std::vector<std::string>> plan_shards(std::vector<std::string> tests,
                                                  const std::map<std::string, uint64_t> &durations,
                                                  uint32_t shards)
{
    std::sort(tests.begin(), tests.end());
    tests.erase(std::unique(tests.begin(), tests.end()), tests.end());
    size_t n = std::min<size_t>(shards ? shards : 1, tests.size());
    if (n == 0)
        return {};
    std::vector<std::vector<std::string>> groups(n);
    std::vector<uint64_t> load(n, 0);
    std::vector<size_t> unknown(n, 0);

    std::vector<std::pair<uint64_t, std::string>> known;
    std::vector<std::string> rest;
    for (const auto &t : tests) {
        auto it = durations.find(t);
        if (it != durations.end())
            known.emplace_back(it->second, t);
        else
            rest.push_back(t);
    }
    // Longest first; equal durations in name order, so the plan is deterministic.
    std::sort(known.begin(), known.end(), [](const auto &a, const auto &b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (const auto &[ms, name] : known) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (load[i] < load[best])
                best = i;
        groups[best].push_back(name);
        load[best] += ms;
    }
    for (const auto &name : rest) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (unknown[i] < unknown[best] || (unknown[i] == unknown[best] && load[i] < load[best]))
                best = i;
        groups[best].push_back(name);
        unknown[best]++;
    }
    // A group can only be empty when there are fewer tests than groups, which n rules out.
    return groups;
}

namespace {
int severity(kiln_outcome outcome)
{
    switch (outcome) {
    case KILN_ERROR: return 5;
    case KILN_TIMEOUT: return 4;
    case KILN_CANCELLED: return 3;
    case KILN_FAILED: return 2;
    case KILN_SKIPPED: return 0;
    default: return 1; // passed (and anything unknown) in between
    }
}
} // namespace

kiln_outcome worse_outcome(kiln_outcome a, kiln_outcome b)
{
    return severity(b) > severity(a) ? b : a;
}

Result merge_shard_results(const std::vector<const Result *> &shards,
                           const std::vector<std::string> &runners)
{
    Result merged;
    merged.outcome = KILN_PASSED;
    // Names reported by an earlier shard are dropped; a name repeated within
    // one shard is kept, as a whole run keeps it (an id the suite holds twice
    // runs twice, both times in the one shard the id was planned into).
    std::set<std::string> seen;
    for (size_t i = 0; i < shards.size(); i++) {
        const Result &r = *shards[i];
        merged.outcome = worse_outcome(merged.outcome, r.outcome);
        std::set<std::string> here;
        for (const auto &t : r.tests)
            if (!seen.count(t.name)) {
                merged.tests.push_back(t);
                here.insert(t.name);
            }
        seen.insert(here.begin(), here.end());
        std::string runner = i < runners.size() ? runners[i] : "?";
        merged.log += "==== shard " + std::to_string(i + 1) + " of " +
                      std::to_string(shards.size()) + " (runner " + runner + ") ====\n" + r.log;
        if (!merged.log.empty() && merged.log.back() != '\n')
            merged.log += '\n';
        if (!r.error.empty())
            merged.error += (merged.error.empty() ? "" : "; ") + std::string("shard ") +
                            std::to_string(i + 1) + ": " + r.error;
        if (r.started_unix_ms && (!merged.started_unix_ms || r.started_unix_ms < merged.started_unix_ms))
            merged.started_unix_ms = r.started_unix_ms;
        merged.finished_unix_ms = std::max(merged.finished_unix_ms, r.finished_unix_ms);
    }
    if (!shards.empty())
        merged.commit = shards.front()->commit;
    return merged;
}

} // namespace kiln
