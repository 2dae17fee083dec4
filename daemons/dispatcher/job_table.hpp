#pragma once
// The dispatcher's jobs: one per (repository, commit), queued in arrival
// order, assigned to a runner with an attempt number, done with one recorded
// result.  Pure logic without I/O, so that the rules for late, duplicate and
// stale results are testable, and so that a persistent store can sit behind
// the same calls.
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

namespace kiln {

enum class JobState { queued, assigned, done };
const char *job_state_name(JobState state);

struct Job {
    uint64_t id = 0;
    JobSpec spec;
    JobState state = JobState::queued;
    uint32_t attempt = 0; // of the current or last assignment; 0 before the first
    uint32_t round_start = 0; // attempts before the last retry: they do not count to max_attempts
    std::string runner;   // holding it (assigned) or that produced the result (done)
    int64_t created_unix_ms = 0;
    int64_t assigned_unix_ms = 0;
    int64_t finished_unix_ms = 0;
    Result result; // valid when done
    bool reported = false; // handed to every report plugin
};

class JobTable {
  public:
    // Record a commit.  An already known (repo, commit) is not queued again:
    // the observer resends until acknowledged.  Returns the job and whether
    // it is new.
    std::pair<const Job *, bool> add(const JobSpec &spec, int64_t now);

    // The oldest queued job, or nullptr.
    const Job *next_queued() const;
    // Hand a queued job to a runner: state assigned, attempt + 1.
    void assign(uint64_t job_id, const std::string &runner, int64_t now);

    enum class Verdict {
        recorded,  // first result of the current attempt by its runner
        duplicate, // this result was already recorded: acknowledge again, change nothing
        stale,     // for an attempt or runner that no longer holds the job: discard
        unknown,   // no such job
    };
    Verdict record(const Result &result, const std::string &runner, int64_t now);

    // A runner is gone: its assigned jobs go back to the queue (at their old
    // place), or, after max_attempts, are finished with an error result.
    // Returns the jobs finished that way, for reporting.
    std::vector<const Job *> release_runner(const std::string &runner, uint32_t max_attempts,
                                            int64_t now);

    // One job back to the queue (or finished with an error after max_attempts);
    // true when it was finished.  Only an assigned job is released.
    bool release_job(uint64_t job_id, uint32_t max_attempts, int64_t now);

    // Run a done job again (kilnctl retry): queued, its old result dropped,
    // a fresh round of max_attempts.  False unless the job is done.
    bool retry(uint64_t job_id);

    void set_reported(uint64_t job_id);

    // Put back a job as stored (start-up): queued ones rejoin the queue in id order.
    void restore(Job job);

    const Job *find(uint64_t job_id) const;
    // By full commit id or a unique prefix (at least 4 hex digits); the
    // newest job when several repositories share it.
    const Job *find_commit(const std::string &prefix) const;
    const std::map<uint64_t, Job> &jobs() const { return jobs_; }
    size_t count(JobState state) const;

  private:
    Job *get(uint64_t job_id);
    std::map<uint64_t, Job> jobs_;
    std::map<std::string, uint64_t> by_commit_; // "repo\ncommit" → job
    std::deque<uint64_t> queue_;                // job ids, oldest first
    uint64_t next_id_ = 1;
};

} // namespace kiln
