// The JobTable's part in keeping history out of memory (issue 13): a
// finished commit leaves the table once reported; what the dispatcher still
// needs of the history is small and per repository or branch.
#include "job_table.hpp"

#include <kiln/plugin.h>

namespace kiln {

namespace {

std::string commit_key(const JobSpec &spec) { return spec.repo + "\n" + spec.commit; }

} // namespace

void JobTable::note_done(const Job &job)
{
    if (job.parent != 0)
        return;
    auto &recent = recent_outcomes_[{job.spec.repo, job.spec.branch}];
    recent[job.id] = job.result.outcome;
    while (recent.size() > kRecentPerBranch)
        recent.erase(recent.begin());
}

int JobTable::previous_outcome(const Job &job) const
{
    auto it = recent_outcomes_.find({job.spec.repo, job.spec.branch});
    if (it == recent_outcomes_.end())
        return KILN_OUTCOME_NONE;
    auto before = it->second.lower_bound(job.id);
    return before == it->second.begin() ? KILN_OUTCOME_NONE : std::prev(before)->second;
}

void JobTable::restore_finished(const std::string &repo, const std::string &branch, int outcome,
                                uint64_t count, uint64_t newest)
{
    Tally &tally = stored_[repo];
    tally.done += count;
    if (outcome == KILN_PASSED)
        tally.passed += count;
    auto &recent = recent_outcomes_[{repo, branch}];
    recent[newest] = outcome;
    while (recent.size() > kRecentPerBranch)
        recent.erase(recent.begin());
}

bool JobTable::evict(uint64_t job_id)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::done || job->parent != 0)
        return false;
    Tally &tally = stored_[job->spec.repo];
    tally.done++;
    tally.passed += job->result.outcome == KILN_PASSED;
    drop(*job);
    return true;
}

void JobTable::forget(const std::vector<uint64_t> &job_ids)
{
    for (uint64_t id : job_ids) {
        Job *job = get(id);
        if (!job || job->state != JobState::done)
            continue;
        if (job->parent == 0)
            drop(*job); // and the shards it lists
        else
            jobs_.erase(id); // a shard the store deleted with its commit
    }
}

void JobTable::drop(const Job &job)
{
    uint64_t job_id = job.id;
    auto known = by_commit_.find(commit_key(job.spec));
    if (known != by_commit_.end() && known->second == job_id)
        by_commit_.erase(known);
    for (auto [it, end] = by_commit_id_.equal_range(job.spec.commit); it != end; ++it)
        if (it->second == job_id) {
            by_commit_id_.erase(it);
            break;
        }
    for (uint64_t cid : job.children)
        jobs_.erase(cid);
    jobs_.erase(job_id);
}

} // namespace kiln
