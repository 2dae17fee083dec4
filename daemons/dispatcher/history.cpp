// History out of memory (issue 13): a finished commit's job leaves the
// JobTable once its report is queued and delivered and keep_finished newer
// ones have finished; what asks for it later is answered from the store,
// read off the loop (Store::read): kilnctl result, log and retry recall it
// into the table for a while, and the intake asks the store whether a commit
// is known before it queues a job for it.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

void Dispatcher::retire(uint64_t job_id)
{
    finished_.push_back(job_id);
    trim_finished();
}

// Oldest first.  Not while the intake reads: a commit the store did not
// have when the read began may have been in the table only (see intake_next).
void Dispatcher::trim_finished()
{
    while (!intake_reading_ && finished_.size() > config_.keep_finished) {
        uint64_t id = finished_.front();
        finished_.pop_front();
        const Job *job = jobs_.find(id);
        if (!job || job->state != JobState::done || job->parent)
            continue; // gone already, or retried: retired again when done
        if (deliveries_.holds(id))
            awaiting_delivery_.insert(id); // its reports are built from it
        else
            jobs_.evict(id);
    }
}

// Heartbeat timer: commits whose reports have all gone out.
void Dispatcher::evict_delivered()
{
    if (intake_reading_)
        return;
    for (auto it = awaiting_delivery_.begin(); it != awaiting_delivery_.end();) {
        const Job *job = jobs_.find(*it);
        if (!job || job->state != JobState::done) {
            it = awaiting_delivery_.erase(it);
        } else if (!deliveries_.holds(*it)) {
            jobs_.evict(*it);
            it = awaiting_delivery_.erase(it);
        } else {
            ++it;
        }
    }
}

void Dispatcher::recall(const std::string &prefix, std::function<void()> then)
{
    auto found = std::make_shared<std::vector<Job>>();
    store_.read([prefix, found](sqlite3 *db) { *found = Store::read_commit_jobs(db, prefix); },
                [this, found, then = std::move(then)](const std::string &error) {
                    if (!error.empty())
                        log_err("store: reading commit jobs: %s", error.c_str());
                    // Only finished commits: anything else the table has.
                    std::vector<uint64_t> recalled;
                    for (Job &job : *found)
                        if (job.state == JobState::done && !jobs_.find(job.id) &&
                            jobs_.admit(job.spec, SIZE_MAX) != JobTable::Admission::known) {
                            recalled.push_back(job.id);
                            jobs_.restore(std::move(job));
                        }
                    then(); // before they may leave again (keep_finished = 0)
                    for (uint64_t id : recalled)
                        retire(id);
                });
}

// The commits waiting here go in arrival order, in batches: one read asks
// the store which of them it knows (a finished commit that left memory
// gets no second job), then each is admitted on the loop.  Memory is asked
// again at that point: what the table knows wins.
void Dispatcher::intake_next()
{
    if (intake_reading_ || intake_queue_.empty() || stopping_)
        return;
    intake_reading_ = true;
    auto batch = std::make_shared<std::vector<PendingCommit>>(
        std::make_move_iterator(intake_queue_.begin()), std::make_move_iterator(intake_queue_.end()));
    intake_queue_.clear();
    auto keys = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
    for (const auto &p : *batch)
        keys->emplace_back(p.commit.spec.repo, p.commit.spec.commit);
    auto ids = std::make_shared<std::vector<uint64_t>>();
    store_.read([keys, ids](sqlite3 *db) { *ids = Store::read_known(db, *keys); },
                [this, batch, ids](const std::string &error) {
                    intake_reading_ = false;
                    if (!error.empty())
                        log_err("commit intake: %s", error.c_str());
                    for (size_t i = 0; i < batch->size(); i++) {
                        auto conn = (*batch)[i].conn.lock();
                        if (!conn || stopping_)
                            continue; // the observer offers it again
                        const Commit &commit = (*batch)[i].commit;
                        if (!error.empty()) {
                            conn->send(Error{commit.id, "dispatcher: cannot tell whether the "
                                                        "commit is known; offer it again later"});
                            continue;
                        }
                        admit_commit(*conn, commit, i < ids->size() ? (*ids)[i] : 0);
                    }
                    trim_finished();
                    intake_next();
                });
}

} // namespace kiln
