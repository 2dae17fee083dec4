// Job bookkeeping: queues, attempts, shards, and which result counts.
#include "job_table.hpp"

#include <algorithm>
#include <set>

#include <kiln/plugin.h>

#include "shard_planner.hpp"

namespace kiln {

namespace {

// by_commit_'s key: one job per (repository, commit).
std::string commit_key(const JobSpec &spec) { return spec.repo + "\n" + spec.commit; }

} // namespace

const char *job_state_name(JobState state)
{
    switch (state) {
    case JobState::queued: return "queued";
    case JobState::assigned: return "assigned";
    case JobState::split: return "split";
    case JobState::done: return "done";
    }
    return "?";
}

JobState job_state_from_name(const std::string &name)
{
    if (name == "assigned")
        return JobState::assigned;
    if (name == "split")
        return JobState::split;
    if (name == "done")
        return JobState::done;
    return JobState::queued;
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
    std::string key = commit_key(spec);
    auto known = by_commit_.find(key);
    if (known != by_commit_.end())
        return {find(known->second), false};
    uint64_t id = next_id_++;
    Job &job = jobs_[id];
    job.id = id;
    job.spec = spec;
    job.created_unix_ms = now;
    by_commit_[key] = id;
    by_commit_id_.emplace(spec.commit, id);
    queues_[spec.repo].push_back(id);
    return {&job, true};
}

size_t JobTable::queued(const std::string &repo) const
{
    auto it = queues_.find(repo);
    return it == queues_.end() ? 0 : it->second.size();
}

JobTable::Admission JobTable::admit(const JobSpec &spec, size_t max_queued) const
{
    if (by_commit_.count(commit_key(spec)))
        return Admission::known;
    return queued(spec.repo) < max_queued ? Admission::admitted : Admission::refused;
}

void JobTable::dequeue(const Job &job)
{
    auto it = queues_.find(job.spec.repo);
    if (it == queues_.end())
        return;
    auto &q = it->second;
    q.erase(std::remove(q.begin(), q.end(), job.id), q.end());
    if (q.empty())
        queues_.erase(it);
}

// A job that was already under way goes ahead of the repository's waiting
// ones: it should not wait behind everything that arrived while it ran.
void JobTable::enqueue_front(const Job &job) { queues_[job.spec.repo].push_front(job.id); }

void JobTable::hold(Job &job, const std::string &runner)
{
    job.state = JobState::assigned;
    job.runner = runner;
    by_runner_[runner].insert(job.id);
}

void JobTable::unhold(const Job &job)
{
    auto it = by_runner_.find(job.runner);
    if (it == by_runner_.end())
        return;
    it->second.erase(job.id);
    if (it->second.empty())
        by_runner_.erase(it);
}

const std::set<uint64_t> &JobTable::held_by(const std::string &runner) const
{
    static const std::set<uint64_t> none;
    auto it = by_runner_.find(runner);
    return it == by_runner_.end() ? none : it->second;
}

void JobTable::end_with(Job &job, kiln_outcome outcome, const std::string &error,
                        int64_t now)
{
    unhold(job);
    job.state = JobState::done;
    job.finished_unix_ms = now;
    job.result = Result{};
    job.result.job_id = job.id;
    job.result.attempt = job.attempt ? job.attempt : 1;
    job.result.commit = job.spec.commit;
    job.result.outcome = outcome;
    job.result.error = error;
    note_done(job);
}

void JobTable::assign(uint64_t job_id, const std::string &runner, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::queued)
        return;
    dequeue(*job);
    job->attempt++;
    hold(*job, runner);
    job->assigned_unix_ms = now;
}

JobTable::Verdict JobTable::record(const Result &result, const std::string &runner, int64_t now)
{
    Job *job = get(result.job_id);
    if (!job)
        return Verdict::unknown;
    // Job ids are never reused, but a result must still be for this commit.
    if (result.commit != job->spec.commit)
        return Verdict::stale;
    if (job->state == JobState::done)
        return job->result.attempt == result.attempt && job->runner == runner ? Verdict::duplicate
                                                                              : Verdict::stale;
    if (job->state != JobState::assigned || job->attempt != result.attempt ||
        job->runner != runner)
        return Verdict::stale;
    unhold(*job);
    job->state = JobState::done;
    job->result = result;
    job->finished_unix_ms = now;
    note_done(*job);
    return Verdict::recorded;
}

JobTable::Verdict JobTable::split(const TestList &list, const std::string &runner,
                                  const std::vector<std::vector<std::string>> &plan, int64_t now,
                                  std::vector<uint64_t> &children)
{
    Job *job = get(list.job_id);
    if (!job || job->parent != 0)
        return Verdict::unknown;
    if (list.commit != job->spec.commit)
        return Verdict::stale;
    if (job->state == JobState::split || job->state == JobState::done ||
        (job->state == JobState::queued && !job->listing()))
        return job->attempt == list.attempt && job->runner == runner ? Verdict::duplicate
                                                                     : Verdict::stale;
    if (job->state != JobState::assigned || job->attempt != list.attempt ||
        job->runner != runner || !job->listing())
        return Verdict::stale;
    if (job->cancel_requested) {
        end_with(*job, KILN_CANCELLED, "superseded by a newer commit", now);
        return Verdict::recorded;
    }
    unhold(*job);
    if (plan.size() < 2) {
        // Nothing to split (or the list failed): run it whole.
        job->spec.shards = 1;
        job->state = JobState::queued;
        enqueue_front(*job);
        return Verdict::recorded;
    }
    job->state = JobState::split;
    job->children.clear();
    for (size_t i = 0; i < plan.size(); i++) {
        uint64_t cid = next_id_++;
        Job &child = jobs_[cid];
        child.id = cid;
        child.spec = job->spec;
        child.spec.shards = 1;
        child.parent = job->id;
        child.shard = static_cast<uint32_t>(i);
        child.shards = static_cast<uint32_t>(plan.size());
        child.tests = plan[i];
        child.created_unix_ms = now;
        job->children.push_back(cid);
    }
    // Shards of a started commit go first, shard 0 at the very front.
    for (auto it = job->children.rbegin(); it != job->children.rend(); ++it)
        enqueue_front(jobs_[*it]);
    children = job->children;
    return Verdict::recorded;
}

bool JobTable::finish_if_complete(uint64_t parent_id, int64_t now)
{
    Job *parent = get(parent_id);
    if (!parent || parent->state != JobState::split)
        return false;
    std::vector<const Result *> results;
    std::vector<std::string> runners;
    std::set<std::string> distinct;
    std::string runner_list;
    for (uint64_t cid : parent->children) {
        const Job *child = find(cid);
        if (!child || child->state != JobState::done)
            return false;
        results.push_back(&child->result);
        runners.push_back(child->runner);
        if (distinct.insert(child->runner).second)
            runner_list += (runner_list.empty() ? "" : ",") + child->runner;
    }
    Result merged = merge_shard_results(results, runners);
    merged.job_id = parent->id;
    merged.attempt = parent->attempt;
    merged.commit = parent->spec.commit;
    parent->state = JobState::done;
    parent->result = std::move(merged);
    parent->runner = runner_list;
    parent->finished_unix_ms = now;
    note_done(*parent);
    return true;
}

bool JobTable::release_job(uint64_t job_id, uint32_t max_attempts, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::assigned)
        return false;
    if (job->cancel_requested) {
        end_with(*job, KILN_CANCELLED, "superseded by a newer commit", now);
        return true;
    }
    if (job->attempt - job->round_start >= max_attempts) {
        end_with(*job, KILN_ERROR,
                 "runner " + job->runner + " was lost during attempt " +
                     std::to_string(job->attempt - job->round_start) + " of " +
                     std::to_string(max_attempts),
                 now);
        return true;
    }
    unhold(*job);
    job->state = JobState::queued;
    enqueue_front(*job);
    return false;
}

JobTable::Released JobTable::release_runner(const std::string &runner, uint32_t max_attempts,
                                            int64_t now)
{
    Released released;
    std::vector<uint64_t> held(held_by(runner).begin(), held_by(runner).end());
    // Requeued in reverse so the oldest ends up first.
    for (auto it = held.rbegin(); it != held.rend(); ++it)
        (release_job(*it, max_attempts, now) ? released.ended : released.requeued)
            .push_back(*it);
    return released;
}

bool JobTable::cancel(uint64_t job_id, const std::string &why, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state == JobState::done)
        return false;
    job->cancel_requested = true;
    if (job->state == JobState::queued) {
        dequeue(*job);
        end_with(*job, KILN_CANCELLED, why, now);
        return true;
    }
    if (job->state == JobState::split)
        for (uint64_t cid : job->children)
            cancel(cid, why, now);
    return false;
}

bool JobTable::end_in_error(uint64_t job_id, const std::string &why, int64_t now)
{
    Job *job = get(job_id);
    if (!job || job->state == JobState::done)
        return false;
    if (job->state == JobState::queued)
        dequeue(*job);
    if (job->state == JobState::split)
        for (uint64_t cid : job->children)
            end_in_error(cid, why, now);
    end_with(*job, KILN_ERROR, why, now);
    return true;
}

bool JobTable::retry(uint64_t job_id)
{
    Job *job = get(job_id);
    if (!job || job->state != JobState::done || job->parent != 0)
        return false;
    if (auto it = recent_outcomes_.find({job->spec.repo, job->spec.branch});
        it != recent_outcomes_.end())
        it->second.erase(job->id); // no longer a finished commit
    job->state = JobState::queued;
    job->round_start = job->attempt;
    job->result = Result{};
    job->reported = false;
    job->cancel_requested = false;
    job->finished_unix_ms = 0;
    job->children.clear(); // a sharded commit is listed and split afresh
    queues_[job->spec.repo].push_back(job_id);
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
    if (job.parent == 0) {
        by_commit_[commit_key(job.spec)] = id;
        by_commit_id_.emplace(job.spec.commit, id);
    } else if (Job *parent = get(job.parent); parent && parent->state == JobState::split)
        parent->children.push_back(id);
    if (id >= next_id_)
        next_id_ = id + 1;
    if (job.state == JobState::queued)
        queues_[job.spec.repo].push_back(id);
    Job &stored = jobs_[id] = std::move(job);
    if (stored.state == JobState::assigned)
        hold(stored, stored.runner);
    if (stored.state == JobState::done && stored.parent == 0) {
        // Counted in the table from now on, no longer among the stored.
        if (auto it = stored_.find(stored.spec.repo); it != stored_.end()) {
            it->second.done -= std::min<uint64_t>(it->second.done, 1);
            if (stored.result.outcome == KILN_PASSED)
                it->second.passed -= std::min<uint64_t>(it->second.passed, 1);
        }
        note_done(stored);
    }
}

const Job *JobTable::find_commit(const std::string &prefix) const
{
    if (prefix.size() < 4)
        return nullptr;
    const Job *best = nullptr;
    for (auto it = by_commit_id_.lower_bound(prefix);
         it != by_commit_id_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        const Job *job = find(it->second);
        if (best && best->spec.commit != job->spec.commit)
            return nullptr; // ambiguous prefix
        if (!best || job->id > best->id)
            best = job; // the newest of the repositories that share it
    }
    return best;
}

size_t JobTable::count(JobState state) const
{
    size_t n = 0;
    for (const auto &entry : jobs_)
        n += entry.second.state == state && entry.second.parent == 0;
    return n;
}

} // namespace kiln
