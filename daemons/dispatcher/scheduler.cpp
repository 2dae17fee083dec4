// Fair, label-aware assignment of queued jobs to free runner slots.
#include "scheduler.hpp"

#include <algorithm>

namespace kiln {

namespace {
// How far into one repository's queue to look for a job a free runner can
// take: far enough to pass a few jobs needing labels no free runner has,
// bounded so scheduling stays cheap with long queues.
constexpr size_t kLookahead = 64;
} // namespace

bool labels_match(const std::vector<std::string> &need, const std::vector<std::string> &have)
{
    return std::all_of(need.begin(), need.end(), [&](const std::string &label) {
        return std::find(have.begin(), have.end(), label) != have.end();
    });
}

std::optional<Scheduler::Pick> Scheduler::next(const JobTable &jobs,
                                               const std::vector<Runner> &runners)
{
    bool any_free = std::any_of(runners.begin(), runners.end(),
                                [](const Runner &r) { return r.busy < r.slots; });
    const auto &queues = jobs.queues();
    if (!any_free || queues.empty())
        return std::nullopt;
    // Repositories in turn, starting after the one served last.
    auto start = queues.upper_bound(last_repo_);
    for (size_t turn = 0; turn < queues.size(); turn++, start++) {
        if (start == queues.end())
            start = queues.begin();
        const auto &[repo, queue] = *start;
        size_t looked = 0;
        for (uint64_t id : queue) {
            if (looked++ == kLookahead)
                break;
            const Job *job = jobs.find(id);
            if (!job)
                continue;
            std::optional<size_t> best;
            for (size_t i = 0; i < runners.size(); i++) {
                const Runner &r = runners[i];
                if (r.busy >= r.slots || !r.labels || !labels_match(job->spec.labels, *r.labels))
                    continue;
                // Least busy relative to its size: busy/slots smallest.
                if (!best || uint64_t(r.busy) * runners[*best].slots <
                                 uint64_t(runners[*best].busy) * r.slots)
                    best = i;
            }
            if (best) {
                last_repo_ = repo;
                return Pick{id, *best};
            }
        }
    }
    return std::nullopt;
}

} // namespace kiln
