#pragma once
// The dispatcher's jobs: one per (repository, commit), queued per
// repository in arrival order, assigned to a runner with an attempt number,
// done with one recorded result.  A commit whose repository asks for shards
// is first assigned to list its tests; it is then split into shard jobs
// (children) and done once every shard is, with their results merged.
// Pure logic without I/O, so the rules for late, duplicate and stale
// results are testable, and a persistent store sits behind the same calls.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

namespace kiln {

enum class JobState { queued, assigned, split, done };
const char *job_state_name(JobState state);
JobState job_state_from_name(const std::string &name);

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

    uint64_t parent = 0;            // for a shard: its commit's job
    uint32_t shard = 0;             // for a shard: its index, of `shards`
    uint32_t shards = 0;
    std::vector<std::string> tests; // for a shard: the tests it runs
    std::vector<uint64_t> children; // for a split job: its shards, in order
    bool cancel_requested = false;  // superseded: its result will be "cancelled"

    // Assigned to list its tests rather than run them.
    bool listing() const { return parent == 0 && spec.shards != 1; }
};

class JobTable {
  public:
    // Record a commit.  An already known (repo, commit) is not queued again:
    // the observer resends until acknowledged.  Returns the job and whether
    // it is new.
    std::pair<const Job *, bool> add(const JobSpec &spec, int64_t now);

    // Queued job ids per repository, oldest (or requeued) first.
    const std::map<std::string, std::deque<uint64_t>> &queues() const { return queues_; }
    // Jobs of one repository waiting for a runner (a queued shard counts as one).
    size_t queued(const std::string &repo) const;

    // max_queued_per_repo: may this commit be added?  A known commit always
    // may (add() only finds it again); a new one when its repository has
    // fewer than `max_queued` jobs queued.
    enum class Admission { known, admitted, refused };
    Admission admit(const JobSpec &spec, size_t max_queued) const;
    // Hand a queued job to a runner: state assigned, attempt + 1.
    void assign(uint64_t job_id, const std::string &runner, int64_t now);

    enum class Verdict {
        recorded,  // first result of the current attempt by its runner
        duplicate, // this result was already recorded: acknowledge again, change nothing
        stale,     // for an attempt, runner or commit that no longer holds the job: discard
        unknown,   // no such job
    };
    Verdict record(const Result &result, const std::string &runner, int64_t now);

    // A listing job's tests arrived: split it into the planned shards, queued
    // ahead of other work, or — with fewer than two groups — queue it again to
    // run unsplit.  `children` gets the new shard ids.
    Verdict split(const TestList &list, const std::string &runner,
                  const std::vector<std::vector<std::string>> &plan, int64_t now,
                  std::vector<uint64_t> &children);
    // After a shard is done: when all its siblings are too, finish the
    // parent with their merged result and return true.
    bool finish_if_complete(uint64_t parent_id, int64_t now);

    // A runner is gone: its assigned jobs go back to the queue, or after
    // max_attempts (or when cancelled) end with a result.
    struct Released {
        std::vector<uint64_t> requeued, ended;
    };
    Released release_runner(const std::string &runner, uint32_t max_attempts, int64_t now);
    // One assigned job back to the queue (or ended with an error after
    // max_attempts, or "cancelled" if that was asked); true when it ended.
    bool release_job(uint64_t job_id, uint32_t max_attempts, int64_t now);

    // Supersede: a queued job ends as cancelled at once (true); an assigned
    // one is marked, its runner must be told (false).  Shards alike.
    bool cancel(uint64_t job_id, const std::string &why, int64_t now);

    // Something went wrong while the dispatcher worked on this job: it ends
    // now with outcome error and `why` (a split job's unfinished shards too).
    // False when it was already done or is unknown.
    bool end_in_error(uint64_t job_id, const std::string &why, int64_t now);

    // Run a done job again (kilnctl retry): queued, its old result dropped,
    // a fresh round of max_attempts.  False unless the job is done and not a shard.
    bool retry(uint64_t job_id);

    void set_reported(uint64_t job_id);

    // Put back a job as stored (start-up, in id order; or a finished commit
    // read back from the store, after its shards' parent).
    void restore(Job job);
    // Garbage collection deleted these jobs from the store: drop them here
    // too.  Only done jobs go; an absent or live id is left alone.
    void forget(const std::vector<uint64_t> &job_ids);

    // ---- history (issue 13): finished commits leave memory ----
    // A finished commit's job and its shards leave the table; the store
    // keeps them.  Its outcome stays counted in stored() and in its branch's
    // recent outcomes.  False unless it is a done commit job.
    bool evict(uint64_t job_id);
    // Job ids continue above every stored one (start-up).
    void reserve_ids(uint64_t last_stored) { next_id_ = std::max(next_id_, last_stored + 1); }
    // Finished commits counted per repository that are not in the table.
    struct Tally {
        uint64_t done = 0, passed = 0;
    };
    const std::map<std::string, Tally> &stored() const { return stored_; }
    // Start-up: the stored history's facts (before restore() of the live
    // jobs: a finished one restored is then counted in the table instead).
    void restore_finished(const std::string &repo, const std::string &branch, int outcome,
                          uint64_t count, uint64_t newest);
    // The final outcome of the newest finished commit of `job`'s repository
    // and branch before it (a lower id), or KILN_OUTCOME_NONE: from the
    // last kRecentPerBranch finished commits of each branch, so it costs
    // neither memory per job nor a walk back through history.
    static constexpr size_t kRecentPerBranch = 8;
    int previous_outcome(const Job &job) const;

    const Job *find(uint64_t job_id) const;
    // A commit's job (not a shard) by full commit id or a unique prefix (at
    // least 4 hex digits); the newest when several repositories share it.
    const Job *find_commit(const std::string &prefix) const;
    const std::map<uint64_t, Job> &jobs() const { return jobs_; }
    size_t count(JobState state) const;
    // The jobs assigned to a runner now (the one record of what a runner
    // holds: its busy slots, what a lost runner gives back).
    const std::set<uint64_t> &held_by(const std::string &runner) const;

  private:
    // A commit's job and its shards leave the table and its indexes.
    void drop(const Job &job);
    Job *get(uint64_t job_id);
    void enqueue_front(const Job &job);
    void dequeue(const Job &job);
    void end_with(Job &job, kiln_outcome outcome, const std::string &error, int64_t now);
    // Keep by_runner_ in step with a job entering or leaving `assigned`.
    void hold(Job &job, const std::string &runner);
    void unhold(const Job &job);
    // A commit's job is done (or its outcome changed): its branch's facts.
    void note_done(const Job &job);

    std::map<uint64_t, Job> jobs_;
    std::map<std::string, uint64_t> by_commit_;              // "repo\ncommit" → job
    // Commit id → its jobs (one per repository): find_commit looks up a
    // prefix in it instead of walking every job.
    std::multimap<std::string, uint64_t> by_commit_id_;
    std::map<std::string, std::deque<uint64_t>> queues_;     // per repository
    std::map<std::string, std::set<uint64_t>> by_runner_;    // assigned jobs per runner
    uint64_t next_id_ = 1;
    std::map<std::string, Tally> stored_; // per repository
    // (repository, branch) → its newest finished commits' job id → outcome.
    std::map<std::pair<std::string, std::string>, std::map<uint64_t, int>> recent_outcomes_;
};

} // namespace kiln
