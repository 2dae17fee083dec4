// Job bookkeeping: queue order, attempts, and which result counts.
#include "job_table.hpp"

#include <algorithm>

#include <kiln/plugin.h>

namespace kiln {

const char *job_state_name(JobState state)
{
    switch (state) {
    case JobState::queued: return "queued";
    case JobState::assigned: return "assigned";
    case JobState::done: return "done";
    }
    return "?";
}

Job *JobTable::get(uint64_t job_id)
{
    auto it = jobs_.find(job_id);
    return it == jobs_.end() ? nullptr : &it->second;
}

const Job *JobTable::find(uint64_t job_id) const
{
    auto it = jobs_.find(job_id);
    return it == jobs_.end() ? nullptr : &it->second;
}

std::pair<const Job *, bool> JobTable::add(const JobSpec &spec, int64_t now)
{
    std::string key = spec.repo + "\n" + spec.commit;
    auto known = by_commit_.find(key);
    if (known != by_commit_.end())
        return {find(known->second), false};
    uint64_t id = next_id_++;
    Job &job = jobs_[id];
    job.id = id;
    job.spec = spec;
    job.created_unix_ms = now;
    by_commit_[key] = id;
    queue_.push_back(id);
    return {&job, true};
}

const Job *JobTable::next_queued() const { return queue_.empty() ? nullptr : find(queue_.front()); }

void JobTable::assign(uint64_t job_id, const std::string &runner, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::queued)
        return;
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job_id), queue_.end());
    job->state = JobState::assigned;
    job->attempt++;
    job->runner = runner;
    job->assigned_unix_ms = now;
}

JobTable::Verdict JobTable::record(const Result &result, const std::string &runner, int64_t now)
{
    Job *job = get(result.job_id);
    if (!job)
        return Verdict::unknown;
    // Job ids restart with the dispatcher (the table lives in memory): a
    // result a runner held across a restart may name an id that now belongs
    // to another commit.  It is never this job's result.
    if (result.commit != job->spec.commit)
        return Verdict::stale;
    if (job->state == JobState::done)
        return job->result.attempt == result.attempt && job->runner == runner ? Verdict::duplicate
                                                                              : Verdict::stale;
    if (job->state != JobState::assigned || job->attempt != result.attempt ||
        job->runner != runner)
        return Verdict::stale;
    job->state = JobState::done;
    job->result = result;
    job->finished_unix_ms = now;
    return Verdict::recorded;
}

std::vector<const Job *> JobTable::release_runner(const std::string &runner,
                                                  uint32_t max_attempts, int64_t now)
{
    std::vector<const Job *> finished;
    std::vector<uint64_t> requeued;
    for (auto &[id, job] : jobs_) {
        if (job.state != JobState::assigned || job.runner != runner)
            continue;
        if (job.attempt >= max_attempts) {
            job.state = JobState::done;
            job.finished_unix_ms = now;
            job.result = Result{};
            job.result.job_id = id;
            job.result.attempt = job.attempt;
            job.result.commit = job.spec.commit;
            job.result.outcome = kiln_outcome_name(KILN_ERROR);
            job.result.error = "runner " + runner + " was lost during attempt " +
                               std::to_string(job.attempt) + " of " + std::to_string(max_attempts);
            finished.push_back(&job);
        } else {
            job.state = JobState::queued;
            requeued.push_back(id);
        }
    }
    // Back at the front, oldest first: a lost job should not wait behind
    // everything that arrived while it ran.
    for (auto it = requeued.rbegin(); it != requeued.rend(); ++it)
        queue_.push_front(*it);
    return finished;
}

const Job *JobTable::find_commit(const std::string &prefix) const
{
    if (prefix.size() < 4)
        return nullptr;
    const Job *best = nullptr;
    for (const auto &[id, job] : jobs_) {
        if (job.spec.commit.compare(0, prefix.size(), prefix) != 0)
            continue;
        if (best && best->spec.commit != job.spec.commit)
            return nullptr; // ambiguous prefix
        best = &job;        // ids grow: the newest wins
    }
    return best;
}

size_t JobTable::count(JobState state) const
{
    size_t n = 0;
    for (const auto &entry : jobs_)
        n += entry.second.state == state;
    return n;
}

} // namespace kiln
