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

bool JobTable::release_job(uint64_t job_id, uint32_t max_attempts, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::assigned)
        return false;
    if (job->attempt - job->round_start >= max_attempts) {
        std::string runner = job->runner;
        job->state = JobState::done;
        job->finished_unix_ms = now;
        job->result = Result{};
        job->result.job_id = job_id;
        job->result.attempt = job->attempt;
        job->result.commit = job->spec.commit;
        job->result.outcome = kiln_outcome_name(KILN_ERROR);
        job->result.error = "runner " + runner + " was lost during attempt " +
                            std::to_string(job->attempt - job->round_start) + " of " +
                            std::to_string(max_attempts);
        return true;
    }
    job->state = JobState::queued;
    // Back at the front: a lost job should not wait behind everything that
    // arrived while it ran.  Among several, the oldest goes first.
    auto pos = queue_.begin();
    while (pos != queue_.end() && *pos < job_id && get(*pos)->attempt > 0)
        ++pos;
    queue_.insert(pos, job_id);
    return false;
}

std::vector<const Job *> JobTable::release_runner(const std::string &runner,
                                                  uint32_t max_attempts, int64_t now)
{
    std::vector<const Job *> finished;
    for (auto &[id, job] : jobs_)
        if (job.state == JobState::assigned && job.runner == runner &&
            release_job(id, max_attempts, now))
            finished.push_back(&job);
    return finished;
}

bool JobTable::retry(uint64_t job_id)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::done)
        return false;
    job->state = JobState::queued;
    job->round_start = job->attempt;
    job->result = Result{};
    job->reported = false;
    job->finished_unix_ms = 0;
    queue_.push_back(job_id);
    return true;
}

void JobTable::set_reported(uint64_t job_id)
{
    if (Job *job = get(job_id))
        job->reported = true;
}

void JobTable::restore(Job job)
{
    uint64_t id = job.id;
    by_commit_[job.spec.repo + "\n" + job.spec.commit] = id;
    if (id >= next_id_)
        next_id_ = id + 1;
    if (job.state == JobState::queued)
        queue_.push_back(id);
    jobs_[id] = std::move(job);
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
